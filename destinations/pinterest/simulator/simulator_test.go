package simulator_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/cohort-connector/cohort-connector/destinations/pinterest"
	"github.com/cohort-connector/cohort-connector/destinations/pinterest/simulator"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	acct  = "549756359984"
	token = "secret-token"
)

var baseTime = time.Unix(1_750_000_000, 0)

// clock is a settable clock for Options.Now.
type clock struct{ ns atomic.Int64 }

func newClock() *clock                   { c := &clock{}; c.ns.Store(baseTime.UnixNano()); return c }
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }
func newSim(opts simulator.Options) *simulator.Simulator {
	if opts.Accounts == nil {
		opts.Accounts = map[string]string{acct: token}
	}
	if opts.Now == nil {
		opts.Now = newClock().Now
	}
	return simulator.New(opts)
}

func sha(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }

// known is the documented known-user rule, computed independently.
func known(share float64, h string) bool {
	sum := sha256.Sum256([]byte(h))
	return float64(binary.BigEndian.Uint16(sum[:2])) < share*65536
}

func event(i int) pinterest.Event {
	return pinterest.Event{
		EventName:    pinterest.EventNameCustom,
		ActionSource: pinterest.ActionSourceOffline,
		EventTime:    baseTime.Unix() - 60,
		EventID:      fmt.Sprintf("ev-%d", i),
		UserData:     pinterest.UserData{Em: []string{sha(fmt.Sprintf("user%d@example.com", i))}},
		CustomData:   &pinterest.CustomData{ContentName: pinterest.ContentNameEnter},
		PartnerName:  "ss-cohort-connector",
	}
}

func events(n int) []pinterest.Event {
	out := make([]pinterest.Event, n)
	for i := range out {
		out[i] = event(i)
	}
	return out
}

func body(t testing.TB, evs []pinterest.Event) []byte {
	b, err := json.Marshal(pinterest.EventsRequest{Data: evs})
	require.NoError(t, err)
	return b
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func do(t testing.TB, h http.Handler, method, path, tok, contentType string, b []byte) answer {
	req := httptest.NewRequest(method, path, bytes.NewReader(b))
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return answer{rec.Code, rec.Header(), rec.Body.Bytes()}
}

func postEvents(t testing.TB, h http.Handler, b []byte) answer {
	return do(t, h, http.MethodPost, "/v5/ad_accounts/"+acct+"/events", token, "application/json", b)
}

func decodeOK(t *testing.T, a answer) pinterest.EventsResponse {
	t.Helper()
	require.Equal(t, http.StatusOK, a.status, string(a.body))
	require.Equal(t, "application/json", a.header.Get("Content-Type"))
	var resp pinterest.EventsResponse
	dec := json.NewDecoder(bytes.NewReader(a.body))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&resp))
	return resp
}

func decodeErr(t *testing.T, a answer) pinterest.ErrorResponse {
	t.Helper()
	var e pinterest.ErrorResponse
	require.NoError(t, json.Unmarshal(a.body, &e), string(a.body))
	assert.NotEmpty(t, e.Message)
	return e
}

func TestAValidBatchIsProcessedWhetherItsUsersAreKnownOrNot(t *testing.T) {
	s := newSim(simulator.Options{})
	evs := events(500)
	// Some events identified by MAID or by IP + user agent only.
	for i := 0; i < 50; i++ {
		evs[i].UserData = pinterest.UserData{HashedMaids: []string{sha(fmt.Sprintf("maid-%d", i))}}
	}
	for i := 50; i < 100; i++ {
		evs[i].UserData = pinterest.UserData{ClientIPAddress: fmt.Sprintf("10.0.0.%d", i), ClientUserAgent: "Mozilla/5.0"}
	}
	resp := decodeOK(t, postEvents(t, s, body(t, evs)))

	require.Len(t, resp.Events, len(evs))
	assert.Equal(t, len(evs), resp.NumEventsReceived)
	knownUsers := 0
	for i, ev := range evs {
		u := ev.UserData
		want := false
		for _, h := range append(append([]string(nil), u.Em...), u.HashedMaids...) {
			want = want || known(0.7, h)
		}
		if u.ClientIPAddress != "" {
			want = want || known(0.7, u.ClientIPAddress+"|"+u.ClientUserAgent)
		}
		if want {
			knownUsers++
		}
		// Known or not, a valid event is processed: the events answer
		// never tells whether its user matched.
		assert.Equal(t, pinterest.EventResponse{Status: pinterest.StatusProcessed}, resp.Events[i], "event %d", i)
	}
	assert.Equal(t, len(evs), resp.NumEventsProcessed)
	assert.Greater(t, knownUsers, 0, "the batch has known users")
	assert.Less(t, knownUsers, len(evs), "and unknown ones, which were processed too")

	st := s.Stats(acct)
	assert.Equal(t, simulator.Stats{
		Requests: 1, Accepted200: 1, Events: int64(len(evs)), Processed: int64(len(evs)),
	}, st)
	assert.Equal(t, st, s.Stats(""), "the all-accounts sum equals the only account")

	rec := s.Received(acct)
	require.Len(t, rec, len(evs))
	for i, r := range rec {
		assert.Equal(t, evs[i], r.Event)
		assert.Equal(t, resp.Events[i].Status, r.Status)
		assert.Equal(t, resp.Events[i].ErrorMessage, r.ErrorMessage)
		assert.Equal(t, acct, r.AdAccountID)
		assert.False(t, r.Test)
	}
	ids := s.EventIDs(acct)
	assert.Len(t, ids, len(evs))
	assert.Equal(t, 1, ids["ev-7"])
}

func TestKnownUserShareOverSyntheticEmails(t *testing.T) {
	for _, tc := range []struct {
		name  string
		share float64
		want  float64
	}{
		{"the zero value selects the default share of 0.7", 0, 0.7},
		{"a share of 0.3 matches about 30 percent", 0.3, 0.3},
		{"a share of 0.95 matches about 95 percent", 0.95, 0.95},
		{"a share of 1 matches everybody", 1, 1},
		{"NoKnownUsers matches nobody", simulator.NoKnownUsers, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(simulator.Options{KnownUserShare: tc.share})
			const n = 10_000
			matched := 0
			for i := range n {
				if s.Known(event(i).UserData.Em[0]) {
					matched++
				}
			}
			assert.InDelta(t, tc.want, float64(matched)/n, 0.02)
		})
	}
}

func TestKnownAgreesWithTheDocumentedRule(t *testing.T) {
	s := newSim(simulator.Options{KnownUserShare: 0.5})
	for i := 0; i < 2000; i++ {
		h := sha(fmt.Sprint(i))
		require.Equal(t, known(0.5, h), s.Known(h), h)
	}
}

func TestRequestErrors(t *testing.T) {
	path := "/v5/ad_accounts/" + acct + "/events"
	valid := body(t, events(3))
	withField := func(field string) []byte {
		return []byte(strings.Replace(string(valid), `"event_name"`, field+`,"event_name"`, 1))
	}
	for _, tc := range []struct {
		name        string
		method      string
		path        string
		token       string
		contentType string
		body        []byte
		status      int
		code        int
		counter     func(simulator.Stats) int64
	}{
		{"a wrong token is 401", "POST", path, "nope", "application/json", valid, 401, 2,
			func(s simulator.Stats) int64 { return s.Unauthorized }},
		{"a missing Authorization header is 401", "POST", path, "", "application/json", valid, 401, 2,
			func(s simulator.Stats) int64 { return s.Unauthorized }},
		{"an unknown ad account is 404", "POST", "/v5/ad_accounts/123/events", token, "application/json", valid, 404, 2, nil},
		{"a non-numeric ad account id is 400", "POST", "/v5/ad_accounts/12a/events", token, "application/json", valid, 400, 1, nil},
		{"a 19-digit ad account id is 400", "POST", "/v5/ad_accounts/1234567890123456789/events", token, "application/json", valid, 400, 1, nil},
		{"more than 1000 events is 400", "POST", path, token, "application/json", body(t, events(1001)), 400, 4196,
			func(s simulator.Stats) int64 { return s.BadRequest }},
		{"an empty data array is 400", "POST", path, token, "application/json", []byte(`{"data":[]}`), 400, 4196,
			func(s simulator.Stats) int64 { return s.BadRequest }},
		{"a body without data is 400", "POST", path, token, "application/json", []byte(`{}`), 400, 4196,
			func(s simulator.Stats) int64 { return s.BadRequest }},
		{"an empty body is 400", "POST", path, token, "application/json", nil, 400, 4196,
			func(s simulator.Stats) int64 { return s.BadRequest }},
		{"an unknown top-level field is 400", "POST", path, token, "application/json",
			[]byte(strings.Replace(string(valid), `{"data"`, `{"extra":1,"data"`, 1)), 400, 4196,
			func(s simulator.Stats) int64 { return s.BadRequest }},
		{"an unknown event field is 400", "POST", path, token, "application/json", withField(`"colour":"red"`), 400, 4196,
			func(s simulator.Stats) int64 { return s.BadRequest }},
		{"an unknown custom_data field is 400", "POST", path, token, "application/json",
			[]byte(strings.Replace(string(valid), `"content_name"`, `"colour":"red","content_name"`, 1)), 400, 4196,
			func(s simulator.Stats) int64 { return s.BadRequest }},
		{"a wrongly typed field is 400", "POST", path, token, "application/json",
			[]byte(strings.Replace(string(valid), fmt.Sprintf(`"event_time":%d`, baseTime.Unix()-60), fmt.Sprintf(`"event_time":"%d"`, baseTime.Unix()-60), 1)), 400, 4196,
			func(s simulator.Stats) int64 { return s.BadRequest }},
		{"data after the JSON body is 400", "POST", path, token, "application/json", append(append([]byte(nil), valid...), "{}"...), 400, 4196,
			func(s simulator.Stats) int64 { return s.BadRequest }},
		{"a non-JSON content type is 400", "POST", path, token, "text/plain", valid, 400, 4196,
			func(s simulator.Stats) int64 { return s.BadRequest }},
		{"a body over 8 MiB is 413", "POST", path, token, "application/json",
			[]byte(`{"data":[{"event_id":"` + strings.Repeat("x", simulator.MaxBodyBytes) + `"}]}`), 413, 4196,
			func(s simulator.Stats) int64 { return s.BadRequest }},
		{"an invalid test parameter is 400", "POST", path + "?test=maybe", token, "application/json", valid, 400, 1,
			func(s simulator.Stats) int64 { return s.BadRequest }},
		{"an unknown route is 404", "GET", "/v5/user_account", token, "", nil, 404, 404, nil},
		{"an unknown sub-route of an ad account is 404", "POST", "/v5/ad_accounts/" + acct + "/campaigns", token, "", nil, 404, 404, nil},
		{"GET on events is 405", "GET", path, token, "", nil, 405, 5, nil},
		{"POST on a customer list is 405", "POST", "/v5/ad_accounts/" + acct + "/customer_lists/1", token, "application/json", nil, 405, 5, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(simulator.Options{})
			a := do(t, s, tc.method, tc.path, tc.token, tc.contentType, tc.body)
			require.Equal(t, tc.status, a.status, string(a.body))
			assert.Equal(t, "application/json", a.header.Get("Content-Type"))
			assert.Equal(t, tc.code, decodeErr(t, a).Code)
			if tc.counter != nil {
				st := s.Stats(acct)
				assert.Equal(t, int64(1), tc.counter(st))
				assert.Equal(t, int64(1), st.Requests)
				assert.Zero(t, st.Accepted200)
			}
			assert.Nil(t, s.Received(acct))
		})
	}
}

func TestSpecFieldsTheWireTypesOmitAreAccepted(t *testing.T) {
	s := newSim(simulator.Options{})
	b := []byte(`{"data":[{"event_name":"checkout","action_source":"web","event_time":` +
		fmt.Sprint(baseTime.Unix()) + `,"event_id":"e1","app_id":"429047995","wifi":false,` +
		`"device_info":{"x":1},"user_data":{"em":["` + sha("a@b.c") + `"],"ph":["` + sha("1") + `"],"click_id":null},` +
		`"custom_data":{"value":"72.39","currency":"USD","contents":[{"id":"p1","quantity":2}],"content_ids":["p1"]}}]}`)
	resp := decodeOK(t, postEvents(t, s, b))
	assert.Equal(t, 1, resp.NumEventsReceived)
	rec := s.Received(acct)
	require.Len(t, rec, 1)
	assert.Equal(t, []string{"p1"}, rec[0].Event.CustomData.ContentIDs)
	assert.Equal(t, []string{sha("a@b.c")}, rec[0].Event.UserData.Em)
}

func TestInvalidEventsFailInsideA200Answer(t *testing.T) {
	future := baseTime.Add(61 * time.Minute).Unix()
	for _, tc := range []struct {
		name   string
		mutate func(*pinterest.Event)
		want   string
	}{
		{"a missing event_name fails", func(e *pinterest.Event) { e.EventName = "" }, simulator.ErrEventNameMissing},
		{"an event_name outside the spec's list fails", func(e *pinterest.Event) { e.EventName = "purchase" }, simulator.ErrEventNameInvalid},
		{"a missing action_source fails", func(e *pinterest.Event) { e.ActionSource = "" }, simulator.ErrActionSourceMissing},
		{"an unknown action_source fails", func(e *pinterest.Event) { e.ActionSource = "email" }, simulator.ErrActionSourceInvalid},
		{"a zero event_time fails", func(e *pinterest.Event) { e.EventTime = 0 }, simulator.ErrEventTimeInvalid},
		{"an event_time over an hour ahead fails", func(e *pinterest.Event) { e.EventTime = future }, simulator.ErrEventTimeFuture},
		{"a missing event_id fails", func(e *pinterest.Event) { e.EventID = "" }, simulator.ErrEventIDMissing},
		{"user_data without identifiers fails", func(e *pinterest.Event) {
			e.UserData = pinterest.UserData{ExternalID: []string{sha("x")}}
		}, simulator.ErrUserDataMissing},
		{"an IP address without a user agent fails", func(e *pinterest.Event) {
			e.UserData = pinterest.UserData{ClientIPAddress: "10.0.0.1"}
		}, simulator.ErrUserDataMissing},
		{"a plain-text em fails", func(e *pinterest.Event) { e.UserData.Em = []string{"user@example.com"} }, simulator.ErrEmNotHex},
		{"an uppercase hex em fails", func(e *pinterest.Event) {
			e.UserData.Em = []string{strings.ToUpper(sha("user@example.com"))}
		}, simulator.ErrEmNotHex},
		{"a non-hex hashed_maids value fails", func(e *pinterest.Event) {
			e.UserData.HashedMaids = []string{"abc"}
		}, simulator.ErrHashedMaidsNotHex},
		{"a non-hex external_id fails", func(e *pinterest.Event) {
			e.UserData.ExternalID = []string{"customer-1"}
		}, simulator.ErrExternalIDNotHex},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(simulator.Options{KnownUserShare: 1})
			bad := event(1)
			tc.mutate(&bad)
			resp := decodeOK(t, postEvents(t, s, body(t, []pinterest.Event{event(0), bad, event(2)})))
			assert.Equal(t, 3, resp.NumEventsReceived)
			assert.Equal(t, 2, resp.NumEventsProcessed)
			assert.Equal(t, []pinterest.EventResponse{
				{Status: pinterest.StatusProcessed},
				{Status: pinterest.StatusFailed, ErrorMessage: tc.want},
				{Status: pinterest.StatusProcessed},
			}, resp.Events)
			st := s.Stats(acct)
			assert.Equal(t, int64(2), st.Processed)
			assert.Equal(t, int64(1), st.Failed)
		})
	}
}

func TestAnEventUpToAnHourAheadIsProcessed(t *testing.T) {
	s := newSim(simulator.Options{KnownUserShare: 1})
	ev := event(0)
	ev.EventTime = baseTime.Add(59 * time.Minute).Unix()
	resp := decodeOK(t, postEvents(t, s, body(t, []pinterest.Event{ev})))
	assert.Equal(t, 1, resp.NumEventsProcessed)
}

func TestTestModeAnswersAlikeButCountsNothing(t *testing.T) {
	s := newSim(simulator.Options{})
	b := body(t, events(100))
	path := "/v5/ad_accounts/" + acct + "/events?test=true"
	testResp := decodeOK(t, do(t, s, http.MethodPost, path, token, "application/json", b))

	st := s.Stats(acct)
	assert.Equal(t, int64(100), st.Events)
	assert.Equal(t, int64(100), st.TestEvents)
	assert.Zero(t, st.Processed)
	assert.Zero(t, st.Failed)
	assert.Empty(t, s.EventIDs(acct))
	rec := s.Received(acct)
	require.Len(t, rec, 100)
	for _, r := range rec {
		assert.True(t, r.Test)
	}

	realResp := decodeOK(t, postEvents(t, s, b))
	assert.Equal(t, realResp, testResp)
	assert.Equal(t, int64(realResp.NumEventsProcessed), s.Stats(acct).Processed)
}

func TestDuplicatesAreCountedPerEventID(t *testing.T) {
	s := newSim(simulator.Options{})
	b := body(t, events(10))
	decodeOK(t, postEvents(t, s, b))
	decodeOK(t, postEvents(t, s, body(t, events(5))))
	ids := s.EventIDs(acct)
	assert.Len(t, ids, 10)
	assert.Equal(t, 2, ids["ev-4"])
	assert.Equal(t, 1, ids["ev-5"])
	assert.Len(t, s.Received(acct), 15)

	s.SetRecordEventIDs(false)
	decodeOK(t, postEvents(t, s, b))
	assert.Equal(t, 2, s.EventIDs(acct)["ev-4"], "not tallied while off")
}

func TestFirstArrivalsNumberEventsInArrivalOrderAndKeepTheFirst(t *testing.T) {
	s := newSim(simulator.Options{})
	s.SetRecord(false) // kept without recording whole events
	decodeOK(t, postEvents(t, s, body(t, []pinterest.Event{event(2), event(0)})))
	decodeOK(t, postEvents(t, s, body(t, []pinterest.Event{event(1), event(2)}))) // ev-2 again
	test := do(t, s, http.MethodPost, "/v5/ad_accounts/"+acct+"/events?test=true", token, "application/json",
		body(t, []pinterest.Event{event(3)}))
	decodeOK(t, test)
	assert.Equal(t, map[string]int64{"ev-2": 0, "ev-0": 1, "ev-1": 2}, s.FirstArrivals(acct),
		"positions count every tallied event, a duplicate keeps its first, test events are not tallied")
	decodeOK(t, postEvents(t, s, body(t, []pinterest.Event{event(4)})))
	assert.Equal(t, int64(4), s.FirstArrivals(acct)["ev-4"], "the duplicate of ev-2 took position 3")

	s.SetRecordEventIDs(false)
	decodeOK(t, postEvents(t, s, body(t, []pinterest.Event{event(5)})))
	assert.NotContains(t, s.FirstArrivals(acct), "ev-5", "not tallied while off")
	assert.Empty(t, s.FirstArrivals("999"), "unknown account")
}

func TestTheArrivalHookIsToldOfEveryTalliedEvent(t *testing.T) {
	clk := newClock()
	s := newSim(simulator.Options{Now: clk.Now})
	s.SetRecord(false)
	s.SetRecordEventIDs(false) // the hook does not depend on either
	type arrival struct {
		account, id string
		at          time.Time
	}
	var mu sync.Mutex
	var got []arrival
	s.SetArrivalHook(func(adAccountID, eventID string, at time.Time) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, arrival{adAccountID, eventID, at})
	})

	invalid := event(1)
	invalid.EventName = "" // failed in the answer, still tallied
	decodeOK(t, postEvents(t, s, body(t, []pinterest.Event{event(0), invalid})))
	clk.Advance(time.Second)
	decodeOK(t, do(t, s, http.MethodPost, "/v5/ad_accounts/"+acct+"/events?test=true", token, "application/json",
		body(t, []pinterest.Event{event(2)})))
	decodeOK(t, postEvents(t, s, body(t, []pinterest.Event{event(0)}))) // a duplicate is an arrival too
	assert.Equal(t, []arrival{
		{acct, "ev-0", baseTime},
		{acct, "ev-1", baseTime},
		{acct, "ev-0", baseTime.Add(time.Second)},
	}, got, "every event of a 200 answer, test events excluded, failed ones included, at its request's time")

	s.SetFault(acct, simulator.Fault{Status: http.StatusServiceUnavailable, Times: 1})
	do(t, s, http.MethodPost, "/v5/ad_accounts/"+acct+"/events", token, "application/json", body(t, events(1)))
	assert.Len(t, got, 3, "an answer other than 200 tells nothing")

	s.SetArrivalHook(nil)
	decodeOK(t, postEvents(t, s, body(t, events(3))))
	assert.Len(t, got, 3, "removed")
}

func TestFaultInjection(t *testing.T) {
	t.Run("a 503 fault with Times 2 answers 503 twice then 200", func(t *testing.T) {
		s := newSim(simulator.Options{})
		s.SetFault(acct, simulator.Fault{Status: 503, Times: 2})
		b := body(t, events(1))
		for i := 0; i < 2; i++ {
			a := postEvents(t, s, b)
			require.Equal(t, 503, a.status)
			assert.Equal(t, 4197, decodeErr(t, a).Code)
			assert.Empty(t, a.header.Get("Retry-After"))
		}
		decodeOK(t, postEvents(t, s, b))
		st := s.Stats(acct)
		assert.Equal(t, int64(2), st.Injected)
		assert.Equal(t, int64(1), st.Accepted200)
		assert.Equal(t, int64(3), st.Requests)
	})
	t.Run("a 429 fault sends Retry-After rounded up to whole seconds", func(t *testing.T) {
		s := newSim(simulator.Options{})
		s.SetFault(acct, simulator.Fault{Status: 429, RetryAfter: 2500 * time.Millisecond})
		a := postEvents(t, s, body(t, events(1)))
		require.Equal(t, 429, a.status)
		assert.Equal(t, "3", a.header.Get("Retry-After"))
		assert.Equal(t, 8, decodeErr(t, a).Code)
	})
	t.Run("a fault precedes authentication", func(t *testing.T) {
		s := newSim(simulator.Options{})
		s.SetFault(acct, simulator.Fault{Status: 500})
		a := do(t, s, http.MethodPost, "/v5/ad_accounts/"+acct+"/events", "wrong", "application/json", nil)
		require.Equal(t, 500, a.status)
		assert.Equal(t, 500, decodeErr(t, a).Code)
	})
	t.Run("a global fault applies to every account until cleared", func(t *testing.T) {
		s := newSim(simulator.Options{Accounts: map[string]string{acct: token, "42": "t42"}})
		s.SetFault("", simulator.Fault{Status: 500})
		b := body(t, events(1))
		assert.Equal(t, 500, postEvents(t, s, b).status)
		assert.Equal(t, 500, do(t, s, http.MethodPost, "/v5/ad_accounts/42/events", "t42", "application/json", b).status)
		s.SetFault(acct, simulator.Fault{Status: 401, Times: 1})
		assert.Equal(t, 401, postEvents(t, s, b).status, "the account's own fault wins")
		assert.Equal(t, 500, postEvents(t, s, b).status, "then the global one applies again")
		s.ClearFaults()
		decodeOK(t, postEvents(t, s, b))
		assert.Equal(t, int64(3), s.Stats(acct).Injected)
	})
	t.Run("setting a zero fault clears it", func(t *testing.T) {
		s := newSim(simulator.Options{})
		s.SetFault(acct, simulator.Fault{Status: 500})
		s.SetFault(acct, simulator.Fault{})
		decodeOK(t, postEvents(t, s, body(t, events(1))))
	})
}

func TestInjectedLatency(t *testing.T) {
	s, err := simulator.Start(simulator.Options{Accounts: map[string]string{acct: token}})
	require.NoError(t, err)
	defer func() { require.NoError(t, s.Close()) }()
	require.Regexp(t, `^http://127\.0\.0\.1:\d+/v5$`, s.URL())

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	b := body(t, events(2))
	post := func(ctx context.Context) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL()+"/ad_accounts/"+acct+"/events", bytes.NewReader(b))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		return tr.RoundTrip(req)
	}

	t.Run("latency is waited before a normal answer", func(t *testing.T) {
		s.SetFault(acct, simulator.Fault{Latency: 80 * time.Millisecond, Times: 1})
		start := time.Now()
		resp, err := post(context.Background())
		require.NoError(t, err)
		_ = resp.Body.Close()
		assert.Equal(t, 200, resp.StatusCode)
		assert.GreaterOrEqual(t, time.Since(start), 80*time.Millisecond)
	})
	t.Run("a client giving up ends the wait without leaking the handler", func(t *testing.T) {
		s.SetFault(acct, simulator.Fault{Latency: time.Hour, Status: 503})
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := post(ctx)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Eventually(t, func() bool { return s.InFlight() == 0 }, 5*time.Second, time.Millisecond)
		assert.Zero(t, s.Stats(acct).Injected, "no answer was given")
		s.ClearFaults()
	})
	t.Run("Close ends a wait in progress", func(t *testing.T) {
		s2, err := simulator.Start(simulator.Options{Accounts: map[string]string{acct: token}})
		require.NoError(t, err)
		s2.SetFault("", simulator.Fault{Latency: time.Hour})
		done := make(chan error, 1)
		go func() {
			req, _ := http.NewRequest(http.MethodPost, s2.URL()+"/ad_accounts/"+acct+"/events", bytes.NewReader(b))
			resp, err := tr.RoundTrip(req)
			if err == nil {
				_ = resp.Body.Close()
			}
			done <- err
		}()
		require.Eventually(t, func() bool { return s2.InFlight() == 1 }, 5*time.Second, time.Millisecond)
		require.NoError(t, s2.Close())
		<-done
		assert.Zero(t, s2.InFlight())
		require.NoError(t, s2.Close(), "Close is idempotent")
	})
}

func TestRateLimitIsASlidingMinuteWindow(t *testing.T) {
	clk := newClock()
	s := newSim(simulator.Options{RateLimitPerMinute: 60, Now: clk.Now})
	b := body(t, events(1))
	for i := 0; i < 60; i++ {
		require.Equal(t, 200, postEvents(t, s, b).status, "call %d", i+1)
		clk.Advance(500 * time.Millisecond) // 60 calls over 30 s
	}
	a := postEvents(t, s, b)
	require.Equal(t, 429, a.status)
	assert.Equal(t, 8, decodeErr(t, a).Code)
	assert.Equal(t, "30", a.header.Get("Retry-After"), "the first call leaves the window at 60 s")

	clk.Advance(29 * time.Second)
	a = postEvents(t, s, b)
	require.Equal(t, 429, a.status)
	assert.Equal(t, "1", a.header.Get("Retry-After"))

	clk.Advance(time.Second)
	assert.Equal(t, 200, postEvents(t, s, b).status, "the first call left the window")
	assert.Equal(t, 429, postEvents(t, s, b).status, "but only one slot was freed")

	s.AddApp(appID, appSecret, initialRefresh, acct)
	oauth := decodeToken(t, postToken(t, s, appID, appSecret, refreshWith(initialRefresh))).AccessToken
	create := do(t, s, http.MethodPost, "/v5/ad_accounts/"+acct+"/customer_lists", oauth, "application/json",
		[]byte(`{"name":"l","records":"a@b.c"}`))
	assert.Equal(t, 200, create.status, "ads_write has its own window")
	get := do(t, s, http.MethodGet, "/v5/ad_accounts/"+acct+"/customer_lists", oauth, "", nil)
	assert.Equal(t, 200, get.status, "ads_read has its own window")

	st := s.Stats(acct)
	assert.Equal(t, int64(3), st.RateLimited)
	assert.Equal(t, int64(63), st.Accepted200)
}

func TestRateLimitCanBeDisabled(t *testing.T) {
	s := newSim(simulator.Options{RateLimitPerMinute: -1})
	b := body(t, events(1))
	for i := 0; i < 6000; i++ {
		require.Equal(t, 200, postEvents(t, s, b).status)
	}
}

func TestSetTokenSwitchesTheAcceptedToken(t *testing.T) {
	s := newSim(simulator.Options{})
	b := body(t, events(1))
	a := do(t, s, http.MethodPost, "/v5/ad_accounts/"+acct+"/events", "rotated", "application/json", b)
	require.Equal(t, 401, a.status)
	assert.Equal(t, simulator.Stats{Requests: 1, Unauthorized: 1}, s.Stats(acct))

	s.SetToken(acct, "rotated")
	decodeOK(t, do(t, s, http.MethodPost, "/v5/ad_accounts/"+acct+"/events", "rotated", "application/json", b))
	assert.Equal(t, 401, postEvents(t, s, b).status, "the old token no longer works")

	s.SetToken("77", "new")
	decodeOK(t, do(t, s, http.MethodPost, "/v5/ad_accounts/77/events", "new", "application/json", b))
}

func TestConcurrentUseIsRaceFree(t *testing.T) {
	s := newSim(simulator.Options{RateLimitPerMinute: -1, Accounts: map[string]string{acct: token, "2": "t2"}})
	b := body(t, events(20))
	var wg sync.WaitGroup
	var ok200 atomic.Int64
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if postEvents(t, s, b).status == 200 {
					ok200.Add(1)
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 50; i++ {
			s.SetFault(acct, simulator.Fault{Status: 503, Times: 1})
			s.SetToken("2", fmt.Sprint(i))
			_ = s.Stats("")
			_ = s.Received(acct)
			_ = s.EventIDs(acct)
			s.SetRecord(i%2 == 0)
		}
		s.ClearFaults()
	}()
	wg.Wait()
	st := s.Stats(acct)
	assert.Equal(t, int64(400), st.Requests)
	assert.Equal(t, ok200.Load(), st.Accepted200)
	assert.Equal(t, st.Requests, st.Accepted200+st.Injected)
	assert.Equal(t, st.Accepted200*20, st.Events)
}

func TestARejectEventsFaultFailsEveryValidEventOfTheRequestWithItsMessage(t *testing.T) {
	s := newSim(simulator.Options{})
	s.SetFault(acct, simulator.Fault{RejectEvents: "event_time is older than 7 days", Times: 1})
	evs := events(3)
	resp := decodeOK(t, postEvents(t, s, body(t, evs)))
	for i := range evs {
		assert.Equal(t, pinterest.EventResponse{Status: pinterest.StatusFailed, ErrorMessage: "event_time is older than 7 days"}, resp.Events[i])
	}
	assert.Zero(t, resp.NumEventsProcessed)
	resp = decodeOK(t, postEvents(t, s, body(t, evs)))
	assert.Equal(t, 3, resp.NumEventsProcessed, "Times: 1 — the next request is processed")
}

// The simulator answers as Pinterest to whoever reaches it: it listens on
// this machine only.
func TestStartRefusesANonLoopbackAddress(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0", "192.0.2.1:0", "example.com:0", "no-port"} {
		s, err := simulator.Start(simulator.Options{Addr: addr})
		if s != nil {
			s.Close()
		}
		assert.Error(t, err, "%s", addr)
	}
	for _, addr := range []string{"127.0.0.1:0", "localhost:0", "[::1]:0"} {
		s, err := simulator.Start(simulator.Options{Addr: addr})
		if err != nil && addr == "[::1]:0" {
			t.Logf("%s: %v (no IPv6 loopback here)", addr, err)
			continue
		}
		require.NoError(t, err, "%s", addr)
		s.Close()
	}
}
