package simulator_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/destinations/pinterest"
	"github.com/cohort-connector/cohort-connector/destinations/pinterest/simulator"
)

const tagID = "2617998078212"

// audienceAnswer is the spec's Audience.
type audienceAnswer struct {
	AdAccountID      string          `json:"ad_account_id"`
	AudienceType     string          `json:"audience_type"`
	CreatedTimestamp int64           `json:"created_timestamp"`
	Description      *string         `json:"description"`
	ID               string          `json:"id"`
	Name             string          `json:"name"`
	Rule             json.RawMessage `json:"rule"`
	Size             *int64          `json:"size"`
	Status           string          `json:"status"`
	Type             string          `json:"type"`
	UpdatedTimestamp int64           `json:"updated_timestamp"`
}

func audiencesPath() string { return "/v5/ad_accounts/" + acct + "/audiences" }

func createAudience(t *testing.T, s http.Handler, tok, body string) audienceAnswer {
	t.Helper()
	var au audienceAnswer
	decodeAs(t, do(t, s, http.MethodPost, audiencesPath(), tok, "application/json", []byte(body)), &au)
	return au
}

func getAudience(t *testing.T, s http.Handler, tok, id string) audienceAnswer {
	t.Helper()
	var au audienceAnswer
	decodeAs(t, do(t, s, http.MethodGet, audiencesPath()+"/"+id, tok, "", nil), &au)
	return au
}

// cohortRule is the VISITOR rule the connector will create for a cohort.
func cohortRule(cohort string, retentionDays int) string {
	return fmt.Sprintf(`{"audience_type":"VISITOR","name":"cohort %s","rule":{"visitor_source_id":%q,`+
		`"retention_days":%d,"event":"custom","ingestion_source":{"=":["conversions_api"]},`+
		`"event_data":{"content_ids":{"=":[%q]},"content_name":{"=":["cohort_enter"]}}}}`,
		cohort, tagID, retentionDays, cohort)
}

func TestAudienceValidation(t *testing.T) {
	s, _, tok := adsSim(t, simulator.Options{})
	s.SetTags(acct, tagID)
	l := createList(t, s, tok, "")
	seed := createAudience(t, s, tok, `{"audience_type":"CUSTOMER_LIST","name":"seed","rule":{"customer_list_id":"`+l.ID+`"}}`)
	visitor := func(rule string) string {
		return `{"audience_type":"VISITOR","name":"v","rule":{"visitor_source_id":"` + tagID + `"` + rule + `}}`
	}
	actalike := func(rule string) string { return `{"audience_type":"ACTALIKE","name":"a","rule":{` + rule + `}}` }
	for _, tc := range []struct{ name, body, want string }{
		{"no audience_type", `{"name":"x","rule":{}}`, "audience_type"},
		{"an audience_type outside the enum", `{"audience_type":"LOOKALIKE","name":"x","rule":{}}`, "audience_type"},
		{"an unmodelled audience_type", `{"audience_type":"ENGAGEMENT","name":"x","rule":{}}`, "audience_type"},
		{"no name", `{"audience_type":"VISITOR","rule":{}}`, "name"},
		{"no rule", `{"audience_type":"VISITOR","name":"x"}`, "rule"},
		{"an unknown field", `{"audience_type":"VISITOR","name":"x","rule":{},"colour":1}`, "colour"},
		{"an unknown rule field", visitor(`,"colour":1`), "colour"},
		{"another ad account", `{"ad_account_id":"1","audience_type":"VISITOR","name":"x","rule":{}}`, "ad_account_id"},
		{"no visitor_source_id", `{"audience_type":"VISITOR","name":"x","rule":{}}`, "visitor_source_id"},
		{"a visitor_source_id that is no tag", `{"audience_type":"VISITOR","name":"x","rule":{"visitor_source_id":"1"}}`, "visitor_source_id"},
		{"a visitor_source_id array", `{"audience_type":"VISITOR","name":"x","rule":{"visitor_source_id":["` + tagID + `"]}}`, "visitor_source_id"},
		{"retention_days 0", visitor(`,"retention_days":0`), "retention_days"},
		{"retention_days 541", visitor(`,"retention_days":541`), "retention_days"},
		{"retention_days as a string", visitor(`,"retention_days":"180"`), "retention_days"},
		{"event_data without event", visitor(`,"event_data":{"content_name":"cohort_enter"}`), "event_data"},
		{"an event_data number", visitor(`,"event":"custom","event_data":{"content_ids":7}`), "event_data.content_ids"},
		{"an ingestion_source outside the list", visitor(`,"ingestion_source":{"=":["email"]}`), "ingestion_source"},
		{"an ingestion_source array", visitor(`,"ingestion_source":["tag"]`), "ingestion_source"},
		{"an empty ingestion_source", visitor(`,"ingestion_source":{"=":[]}`), "ingestion_source"},
		{"an event_source outside the list", visitor(`,"event_source":{"=":["tv"]}`), "event_source"},
		{"a CUSTOMER_LIST field on VISITOR", visitor(`,"customer_list_id":"` + l.ID + `"`), "customer_list_id"},
		{"no customer_list_id", `{"audience_type":"CUSTOMER_LIST","name":"x","rule":{}}`, "customer_list_id"},
		{"an unknown customer_list_id", `{"audience_type":"CUSTOMER_LIST","name":"x","rule":{"customer_list_id":"643"}}`, "customer_list_id"},
		{"no seed_id", actalike(`"country":"US","percentage":1`), "seed_id"},
		{"an unknown seed_id", actalike(`"seed_id":["1"],"country":"US","percentage":1`), "seed_id"},
		{"a country outside US, CA, GB", actalike(`"seed_id":["` + seed.ID + `"],"country":"FR","percentage":1`), "country"},
		{"percentage 0", actalike(`"seed_id":["` + seed.ID + `"],"country":"US","percentage":0`), "percentage"},
		{"percentage 11", actalike(`"seed_id":["` + seed.ID + `"],"country":"US","percentage":11`), "percentage"},
		{"a VISITOR field on ACTALIKE", actalike(`"seed_id":["` + seed.ID + `"],"country":"US","percentage":1,"retention_days":3`), "retention_days"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := do(t, s, http.MethodPost, audiencesPath(), tok, "application/json", []byte(tc.body))
			require.Equal(t, 400, a.status, string(a.body))
			assert.Contains(t, decodeErr(t, a).Message, tc.want)
		})
	}
	assert.Len(t, s.Audiences(acct), 1, "only the seed was created")
	au := createAudience(t, s, tok, visitor(""))
	assert.JSONEq(t, `{"visitor_source_id":"`+tagID+`","retention_days":180}`, string(au.Rule), "retention_days defaults to 180")
	assert.Equal(t, 401, do(t, s, http.MethodPost, audiencesPath(), token, "application/json", []byte(visitor(""))).status,
		"a conversion token is refused")
}

// knownRecords returns n SHA-256 records that are known users (share 0.7)
// and n that are not.
func knownRecords(n int) (knownOnes, unknownOnes []string) {
	for i := 0; len(knownOnes) < n || len(unknownOnes) < n; i++ {
		h := sha(fmt.Sprint("rec", i))
		if known(simulator.DefaultKnownUserShare, h) {
			knownOnes = append(knownOnes, h)
		} else {
			unknownOnes = append(unknownOnes, h)
		}
	}
	return knownOnes[:n], unknownOnes[:n]
}

func TestCustomerListAudienceSizeAndStatus(t *testing.T) {
	s, clk, tok := adsSim(t, simulator.Options{AudienceDelay: time.Hour})
	kn, unk := knownRecords(100)
	l := createList(t, s, tok, strings.Join(slices.Concat(kn[:99], unk), ","))
	au := createAudience(t, s, tok, `{"audience_type":"CUSTOMER_LIST","name":"c","rule":{"customer_list_id":"`+l.ID+`"}}`)
	assert.Equal(t, simulator.StatusInitializing, au.Status)
	assert.Nil(t, au.Size, "no size while initializing")
	assert.Equal(t, "audience", au.Type)

	clk.Advance(59 * time.Minute)
	assert.Equal(t, simulator.StatusInitializing, getAudience(t, s, tok, au.ID).Status)
	clk.Advance(time.Minute)
	au = getAudience(t, s, tok, au.ID)
	assert.Equal(t, simulator.StatusTooSmall, au.Status)
	require.NotNil(t, au.Size)
	assert.Equal(t, int64(99), *au.Size, "only known members count")

	require.Equal(t, 200, patchList(t, s, tok, l.ID, "ADD", kn[99:]).status)
	clk.Advance(59 * time.Minute)
	assert.Equal(t, int64(99), *getAudience(t, s, tok, au.ID).Size, "the size lags")
	clk.Advance(time.Minute)
	au = getAudience(t, s, tok, au.ID)
	assert.Equal(t, simulator.StatusReady, au.Status)
	assert.Equal(t, int64(100), *au.Size)

	act := createAudience(t, s, tok, `{"audience_type":"ACTALIKE","name":"a","rule":{"seed_id":["`+au.ID+`"],"country":"GB","percentage":3}}`)
	assert.Equal(t, simulator.StatusInitializing, act.Status)
	require.Equal(t, 200, patchList(t, s, tok, l.ID, "REMOVE", kn[:1]).status)
	clk.Advance(time.Hour)
	assert.Equal(t, int64(99), *getAudience(t, s, tok, au.ID).Size)
	act = getAudience(t, s, tok, act.ID)
	assert.Equal(t, simulator.StatusTooSmall, act.Status, "its seed is no longer READY")
	assert.Equal(t, int64(0), *act.Size)
}

func TestAnActalikeOfAReadySeedHasItsPercentage(t *testing.T) {
	s, _, tok := adsSim(t, simulator.Options{KnownUserShare: 1})
	kn, _ := knownRecords(100)
	l := createList(t, s, tok, strings.Join(kn, ","))
	seed := createAudience(t, s, tok, `{"audience_type":"CUSTOMER_LIST","name":"c","rule":{"customer_list_id":"`+l.ID+`"}}`)
	assert.Equal(t, simulator.StatusReady, seed.Status)
	act := createAudience(t, s, tok, `{"audience_type":"ACTALIKE","name":"a","rule":{"seed_id":["`+seed.ID+`"],"country":"US","percentage":4}}`)
	assert.Equal(t, simulator.StatusReady, act.Status)
	assert.Equal(t, int64(400_000), *act.Size)
}

// cohortEvent is an event of user u for cohort, sent at now-age.
func cohortEvent(u int, cohort, contentName string, now time.Time, age time.Duration) pinterest.Event {
	return pinterest.Event{
		EventName: pinterest.EventNameCustom, ActionSource: pinterest.ActionSourceOffline,
		EventTime: now.Add(-age).Unix(), EventID: fmt.Sprintf("%s-%d-%s-%d", cohort, u, contentName, age),
		UserData:   pinterest.UserData{Em: []string{sha(fmt.Sprintf("user%d@example.com", u))}},
		CustomData: &pinterest.CustomData{ContentIDs: []string{cohort}, ContentName: contentName},
	}
}

func TestAVisitorAudienceCountsKnownUsersOfItsCohortsEnterEventsWithinRetention(t *testing.T) {
	s, clk, tok := adsSim(t, simulator.Options{RateLimitPerMinute: -1})
	s.SetTags(acct, tagID)
	s.SetRecord(false)
	now := clk.Now()
	isKnown := func(u int) bool {
		return known(simulator.DefaultKnownUserShare, sha(fmt.Sprintf("user%d@example.com", u)))
	}
	var evs []pinterest.Event
	want, wantLater := 0, 0
	for u := 0; u < 200; u++ {
		switch u % 5 {
		case 0: // enter, recent, twice
			evs = append(evs, cohortEvent(u, "c1", pinterest.ContentNameEnter, now, time.Hour),
				cohortEvent(u, "c1", pinterest.ContentNameEnter, now, 2*time.Hour))
			if isKnown(u) {
				want++
				wantLater++
			}
		case 1: // enter, 49 h old: out of a 3-day retention a day later
			evs = append(evs, cohortEvent(u, "c1", pinterest.ContentNameEnter, now, 49*time.Hour))
			if isKnown(u) {
				want++
			}
		case 2: // exit only
			evs = append(evs, cohortEvent(u, "c1", pinterest.ContentNameExit, now, time.Hour))
		case 3: // another cohort
			evs = append(evs, cohortEvent(u, "c2", pinterest.ContentNameEnter, now, time.Hour))
		case 4: // too old
			evs = append(evs, cohortEvent(u, "c1", pinterest.ContentNameEnter, now, 4*24*time.Hour))
		}
	}
	other := cohortEvent(1000, "c1", pinterest.ContentNameEnter, now, time.Hour)
	other.EventName = "lead"
	failed := cohortEvent(1001, "c1", pinterest.ContentNameEnter, now, time.Hour)
	failed.UserData.Em = []string{"not-a-hash"}
	evs = append(evs, other, failed)
	decodeOK(t, postEvents(t, s, body(t, evs)))
	test := []pinterest.Event{cohortEvent(1002, "c1", pinterest.ContentNameEnter, now, time.Hour)}
	decodeOK(t, do(t, s, http.MethodPost, "/v5/ad_accounts/"+acct+"/events?test=true", token, "application/json", body(t, test)))

	au := createAudience(t, s, tok, cohortRule("c1", 3))
	require.NotNil(t, au.Size)
	assert.Equal(t, int64(want), *au.Size)
	assert.Equal(t, simulator.StatusTooSmall, au.Status)
	clk.Advance(24 * time.Hour)
	assert.Equal(t, int64(wantLater), *getAudience(t, s, tok, au.ID).Size, "the 49-hour-old enters left the 3-day retention")

	noCAPI := createAudience(t, s, tok, strings.Replace(cohortRule("c1", 3), "conversions_api", "tag", 1))
	assert.Zero(t, *noCAPI.Size, "events come from conversions_api only")
}

func TestAVisitorAudienceIsReadyFromAHundredKnownUsers(t *testing.T) {
	s, clk, tok := adsSim(t, simulator.Options{KnownUserShare: 1})
	s.SetTags(acct, tagID)
	var evs []pinterest.Event
	for u := 0; u < 99; u++ {
		evs = append(evs, cohortEvent(u, "c1", pinterest.ContentNameEnter, clk.Now(), time.Minute))
	}
	decodeOK(t, postEvents(t, s, body(t, evs)))
	au := createAudience(t, s, tok, cohortRule("c1", 30))
	assert.Equal(t, simulator.StatusTooSmall, au.Status)
	decodeOK(t, postEvents(t, s, body(t, []pinterest.Event{cohortEvent(99, "c1", pinterest.ContentNameEnter, clk.Now(), 0)})))
	au = getAudience(t, s, tok, au.ID)
	assert.Equal(t, simulator.StatusReady, au.Status)
	assert.Equal(t, int64(100), *au.Size)
}

func TestAudiencesAreListedPaginatedAndPatched(t *testing.T) {
	s, _, tok := adsSim(t, simulator.Options{})
	s.SetTags(acct, tagID)
	var ids []string
	for i := 0; i < 5; i++ {
		ids = append(ids, createAudience(t, s, tok, cohortRule(fmt.Sprint("c", i), 30)).ID)
	}
	var page struct {
		Items    []audienceAnswer `json:"items"`
		Bookmark *string          `json:"bookmark"`
	}
	decodeAs(t, do(t, s, http.MethodGet, audiencesPath()+"?page_size=3", tok, "", nil), &page)
	require.Len(t, page.Items, 3)
	require.NotNil(t, page.Bookmark)
	assert.Equal(t, ids[0], page.Items[0].ID)
	decodeAs(t, do(t, s, http.MethodGet, audiencesPath()+"?page_size=3&bookmark="+*page.Bookmark, tok, "", nil), &page)
	require.Len(t, page.Items, 2)
	assert.Nil(t, page.Bookmark)
	assert.Equal(t, ids[4], page.Items[1].ID)

	var au audienceAnswer
	decodeAs(t, do(t, s, http.MethodPatch, audiencesPath()+"/"+ids[0], tok, "application/json", []byte(`{"name":"renamed"}`)), &au)
	assert.Equal(t, "renamed", au.Name)
	a := do(t, s, http.MethodPatch, audiencesPath()+"/"+ids[0], tok, "application/json", []byte(`{"rule":{"retention_days":999}}`))
	require.Equal(t, 400, a.status)
	assert.Contains(t, decodeErr(t, a).Message, "visitor_source_id", "a rule is replaced whole and validated")
	decodeAs(t, do(t, s, http.MethodPatch, audiencesPath()+"/"+ids[0], tok, "application/json", []byte(`{"operation_type":"REMOVE"}`)), &au)
	assert.Equal(t, 404, do(t, s, http.MethodGet, audiencesPath()+"/"+ids[0], tok, "", nil).status)
	assert.Len(t, s.Audiences(acct), 4)
	assert.Equal(t, 404, do(t, s, http.MethodGet, audiencesPath()+"/643", tok, "", nil).status)
	assert.Equal(t, 400, do(t, s, http.MethodGet, audiencesPath()+"/x1", tok, "", nil).status)
}

func TestTheAudienceSideIsRaceFree(t *testing.T) {
	s, clk, tok := adsSim(t, simulator.Options{RateLimitPerMinute: -1, AudienceDelay: time.Minute})
	s.SetTags(acct, tagID)
	l := createList(t, s, tok, "")
	au := createAudience(t, s, tok, cohortRule("c1", 30))
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				u := g*100 + i
				_ = postEvents(t, s, body(t, []pinterest.Event{cohortEvent(u, "c1", pinterest.ContentNameEnter, clk.Now(), 0)}))
				_ = patchList(t, s, tok, l.ID, "ADD", []string{sha(fmt.Sprint(u))})
				_ = do(t, s, http.MethodGet, audiencesPath()+"/"+au.ID, tok, "", nil)
				_ = do(t, s, http.MethodGet, "/v5/ad_accounts/"+acct+"/conversion_eqs?lookback_period=1d", tok, "", nil)
				_ = s.ListMembers(acct, l.ID)
				_ = s.Audiences(acct)
				clk.Advance(time.Second)
			}
		}()
	}
	wg.Wait()
	assert.Len(t, s.ListMembers(acct, l.ID), 80)
	assert.Equal(t, int64(80), s.Stats(acct).ListUpdates)
}
