package simulator_test

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/destinations/pinterest/simulator"
)

// listAnswer is the spec's CustomerList.
type listAnswer struct {
	AdAccountID           string         `json:"ad_account_id"`
	CreatedTime           int64          `json:"created_time"`
	Exceptions            map[string]any `json:"exceptions"`
	ID                    string         `json:"id"`
	Name                  string         `json:"name"`
	NumBatches            int            `json:"num_batches"`
	NumRemovedUserRecords int            `json:"num_removed_user_records"`
	NumUploadedRecords    int            `json:"num_uploaded_user_records"`
	Status                string         `json:"status"`
	Type                  string         `json:"type"`
	UpdatedTime           int64          `json:"updated_time"`
}

// decodeAs decodes a 200 answer strictly into v.
func decodeAs(t *testing.T, a answer, v any) {
	t.Helper()
	require.Equal(t, http.StatusOK, a.status, string(a.body))
	dec := json.NewDecoder(strings.NewReader(string(a.body)))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(v), string(a.body))
}

func createList(t *testing.T, s http.Handler, tok, records string) listAnswer {
	t.Helper()
	b, err := json.Marshal(map[string]string{"name": "cohort", "records": records})
	require.NoError(t, err)
	var l listAnswer
	decodeAs(t, do(t, s, http.MethodPost, "/v5/ad_accounts/"+acct+"/customer_lists", tok, "application/json", b), &l)
	return l
}

func patchList(t *testing.T, s http.Handler, tok, id, op string, records []string) answer {
	b, err := json.Marshal(map[string]string{"operation_type": op, "records": strings.Join(records, ",")})
	require.NoError(t, err)
	return do(t, s, http.MethodPatch, "/v5/ad_accounts/"+acct+"/customer_lists/"+id, tok, "application/json", b)
}

func TestCustomerListUpdates(t *testing.T) {
	s, _, tok := adsSim(t, simulator.Options{})
	l := createList(t, s, tok, "")
	assert.Equal(t, acct, l.AdAccountID)
	assert.Equal(t, "customerlist", l.Type)
	assert.Equal(t, 1, l.NumBatches, "creation is a batch")
	path := "/v5/ad_accounts/" + acct + "/customer_lists/" + l.ID

	a := patchList(t, s, tok, l.ID, "ADD", []string{"email2@pinterest.com", "email6@pinterest.com", sha("x"), "email2@pinterest.com", ""})
	decodeAs(t, a, &l)
	assert.Equal(t, 4, l.NumUploadedRecords, "repeats count")
	assert.Equal(t, 2, l.NumBatches)
	decodeAs(t, patchList(t, s, tok, l.ID, "REMOVE", []string{"email2@pinterest.com", "absent@x.io"}), &l)
	assert.Equal(t, 2, l.NumRemovedUserRecords, "absent ones count")
	added, removed := s.CustomerListRecords(acct, l.ID)
	assert.Equal(t, [2]int{4, 2}, [2]int{added, removed})
	assert.Equal(t, []string{sha("x"), "email6@pinterest.com"}, s.ListMembers(acct, l.ID))
	assert.Equal(t, int64(2), s.Stats(acct).ListUpdates)

	for _, tc := range []struct {
		name, path, token, body, want string
		status                        int
	}{
		{"an unknown operation_type is 400", path, tok, `{"operation_type":"REPLACE","records":"a@b.io"}`, "operation_type", 400},
		{"missing records are 400", path, tok, `{"operation_type":"ADD"}`, "records", 400},
		{"records with no values are 400", path, tok, `{"operation_type":"ADD","records":" , ,"}`, "records", 400},
		{"an invalid record is 400", path, tok, `{"operation_type":"ADD","records":"a@b.io,Bob@B.io"}`, "Bob@B.io", 400},
		{"upper-case hex is 400", path, tok, `{"operation_type":"ADD","records":"` + strings.ToUpper(sha("x")) + `"}`, "records", 400},
		{"an unknown field is 400", path, tok, `{"operation_type":"ADD","records":"a@b.io","x":1}`, "x", 400},
		{"a conversion token is 401", path, token, `{"operation_type":"ADD","records":"a@b.io"}`, "", 401},
		{"a non-numeric list id is 400", "/v5/ad_accounts/" + acct + "/customer_lists/abc", tok, `{"operation_type":"ADD","records":"a@b.io"}`, "customer_list_id", 400},
		{"an unknown list is 404", "/v5/ad_accounts/" + acct + "/customer_lists/643", tok, `{"operation_type":"ADD","records":"a@b.io"}`, "", 404},
		{"an unknown ad account is 404", "/v5/ad_accounts/1/customer_lists/643", tok, `{"operation_type":"ADD","records":"a@b.io"}`, "", 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := do(t, s, http.MethodPatch, tc.path, tc.token, "application/json", []byte(tc.body))
			require.Equal(t, tc.status, a.status, string(a.body))
			assert.Contains(t, decodeErr(t, a).Message, tc.want)
		})
	}
	added, removed = s.CustomerListRecords(acct, l.ID)
	assert.Equal(t, [2]int{4, 2}, [2]int{added, removed}, "failed updates change nothing")
}

func TestCreatingACustomerListValidates(t *testing.T) {
	s, _, tok := adsSim(t, simulator.Options{})
	path := "/v5/ad_accounts/" + acct + "/customer_lists"
	for _, tc := range []struct{ body, want string }{
		{`{"records":""}`, "name"},
		{`{"name":"x"}`, "records"},
		{`{"name":"x","records":"","list_type":"PHONE"}`, "list_type"},
		{`{"name":"x","records":"not a record"}`, "not a record"},
		{`{"name":"x","records":"","extra":1}`, "extra"},
	} {
		a := do(t, s, http.MethodPost, path, tok, "application/json", []byte(tc.body))
		require.Equal(t, 400, a.status, tc.body)
		assert.Contains(t, decodeErr(t, a).Message, tc.want)
	}
	assert.Empty(t, s.Lists(acct))
	many := strings.TrimSuffix(strings.Repeat(sha("m")[:32]+",", simulator.MaxRecordsPerRequest+1), ",")
	a := do(t, s, http.MethodPost, path, tok, "application/json", []byte(`{"name":"x","records":"`+many+`"}`))
	require.Equal(t, 400, a.status)
	assert.Contains(t, decodeErr(t, a).Message, "100000")
}

func TestListMembershipFollowsRandomAddsAndRemoves(t *testing.T) {
	s, _, tok := adsSim(t, simulator.Options{RateLimitPerMinute: -1})
	l := createList(t, s, tok, "")
	rng := rand.New(rand.NewSource(7))
	pool := make([]string, 60)
	for i := range pool {
		pool[i] = []string{sha(fmt.Sprint(i)), sha(fmt.Sprint(i))[:40], sha(fmt.Sprint(i))[:32], fmt.Sprintf("u%d@example.com", i)}[i%4]
	}
	model := map[string]bool{}
	for step := 0; step < 200; step++ {
		recs := make([]string, 1+rng.Intn(8))
		for i := range recs {
			recs[i] = pool[rng.Intn(len(pool))]
		}
		op := []string{"ADD", "REMOVE"}[rng.Intn(2)]
		require.Equal(t, 200, patchList(t, s, tok, l.ID, op, recs).status)
		for _, r := range recs {
			if op == "ADD" {
				model[r] = true
			} else {
				delete(model, r)
			}
		}
	}
	want := make([]string, 0, len(model))
	for r := range model {
		want = append(want, r)
	}
	slices.Sort(want)
	assert.Equal(t, want, s.ListMembers(acct, l.ID))
	lists := s.Lists(acct)
	require.Len(t, lists, 1)
	assert.Equal(t, len(want), lists[0].Members)
	assert.Equal(t, 201, lists[0].NumBatches)
}

func TestCustomerListStatusFollowsItsKnownMembers(t *testing.T) {
	s, clk, tok := adsSim(t, simulator.Options{KnownUserShare: 1, AudienceDelay: time.Hour})
	l := createList(t, s, tok, "")
	assert.Equal(t, "PROCESSING", l.Status)
	clk.Advance(time.Hour)
	get := func() listAnswer {
		var l2 listAnswer
		decodeAs(t, do(t, s, http.MethodGet, "/v5/ad_accounts/"+acct+"/customer_lists/"+l.ID, tok, "", nil), &l2)
		return l2
	}
	assert.Equal(t, "TOO_SMALL", get().Status)
	recs := make([]string, 100)
	for i := range recs {
		recs[i] = sha(fmt.Sprint(i))
	}
	require.Equal(t, 200, patchList(t, s, tok, l.ID, "ADD", recs).status)
	assert.Equal(t, "PROCESSING", get().Status)
	clk.Advance(time.Hour)
	assert.Equal(t, "READY", get().Status)
}

func TestCustomerListsArePaginated(t *testing.T) {
	s, _, tok := adsSim(t, simulator.Options{RateLimitPerMinute: -1})
	var ids []string
	for i := 0; i < 7; i++ {
		ids = append(ids, createList(t, s, tok, "").ID)
	}
	for _, order := range []string{"ASCENDING", "DESCENDING"} {
		want := slices.Clone(ids)
		if order == "DESCENDING" {
			slices.Reverse(want)
		}
		var got []string
		bookmark := ""
		for pages := 0; ; pages++ {
			require.Less(t, pages, 4)
			var page struct {
				Items    []listAnswer `json:"items"`
				Bookmark *string      `json:"bookmark"`
			}
			path := "/v5/ad_accounts/" + acct + "/customer_lists?page_size=3&order=" + order
			if bookmark != "" {
				path += "&bookmark=" + bookmark
			}
			decodeAs(t, do(t, s, http.MethodGet, path, tok, "", nil), &page)
			require.LessOrEqual(t, len(page.Items), 3)
			for _, l := range page.Items {
				got = append(got, l.ID)
			}
			if page.Bookmark == nil {
				break
			}
			bookmark = *page.Bookmark
		}
		assert.Equal(t, want, got, order)
	}
	for _, q := range []string{"page_size=0", "page_size=251", "order=UP", "bookmark=%21%21"} {
		a := do(t, s, http.MethodGet, "/v5/ad_accounts/"+acct+"/customer_lists?"+q, tok, "", nil)
		assert.Equal(t, 400, a.status, q)
	}
}

func TestTheListArrivalHookIsToldOfEveryRecordApplied(t *testing.T) {
	s, clk, tok := adsSim(t, simulator.Options{RateLimitPerMinute: -1})
	type arrival struct {
		account, list string
		add           bool
		record        string
		at            time.Time
	}
	var mu sync.Mutex
	var got []arrival
	s.SetListArrivalHook(func(adAccountID, listID string, add bool, record string, at time.Time) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, arrival{adAccountID, listID, add, record, at})
	})

	l := createList(t, s, tok, "created@example.com")
	assert.Empty(t, got, "records given at creation are not reported")
	start := clk.Now()
	require.Equal(t, 200, patchList(t, s, tok, l.ID, "ADD", []string{sha("x"), " a@b.io", sha("x")}).status)
	clk.Advance(time.Second)
	require.Equal(t, 200, patchList(t, s, tok, l.ID, "REMOVE", []string{"absent@b.io"}).status)
	assert.Equal(t, []arrival{
		{acct, l.ID, true, sha("x"), start},
		{acct, l.ID, true, "a@b.io", start},
		{acct, l.ID, true, sha("x"), start},
		{acct, l.ID, false, "absent@b.io", start.Add(time.Second)},
	}, got, "every record of a 200 answer, in request order, repeats and absent ones included, trimmed, at its request's time")

	require.Equal(t, 400, patchList(t, s, tok, l.ID, "ADD", []string{"Bad@B.io"}).status)
	require.Equal(t, 404, patchList(t, s, tok, "643", "ADD", []string{"a@b.io"}).status)
	assert.Len(t, got, 4, "an answer other than 200 tells nothing")

	s.SetListArrivalHook(nil)
	require.Equal(t, 200, patchList(t, s, tok, l.ID, "ADD", []string{"c@d.io"}).status)
	assert.Len(t, got, 4, "removed")
}
