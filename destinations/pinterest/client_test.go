package pinterest_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/destinations"
	"github.com/cohort-connector/cohort-connector/destinations/pinterest"
)

const (
	acct  = "549756359984"
	token = "pina_AMAZ3secretTOKENvalue0123456789"
	// retryMax is the RetryMax of testConfig: a retried failure is seen
	// retryMax+1 times by the server.
	retryMax = 2
)

var testTS = time.Date(2026, 3, 14, 9, 26, 53, 589793238, time.UTC)

// testConfig keeps every wait short, so that no test sleeps for long.
func testConfig(baseURL string) pinterest.Config {
	return pinterest.Config{
		BaseURL:        baseURL + "/v5",
		Tokens:         map[string]string{acct: token},
		AttemptTimeout: 200 * time.Millisecond,
		CallTimeout:    5 * time.Second,
		RetryMax:       retryMax,
		RetryWaitMin:   time.Millisecond,
		RetryWaitMax:   20 * time.Millisecond,
	}
}

func newClient(t *testing.T, cfg pinterest.Config) *pinterest.Client {
	t.Helper()
	c, err := pinterest.New(cfg)
	require.NoError(t, err)
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// responder answers the n-th request (1-based) the server received; req is
// the decoded body. r's context is also cancelled when the test ends, so a
// responder may block on it without leaking.
type responder func(w http.ResponseWriter, r *http.Request, n int, req pinterest.EventsRequest)

// fakeServer is an httptest server that decodes every request body and
// counts the requests.
type fakeServer struct {
	*httptest.Server
	requests atomic.Int64
}

func newServer(t *testing.T, respond responder) *fakeServer {
	t.Helper()
	release, releaseAll := context.WithCancel(context.Background())
	s := &fakeServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(s.requests.Add(1))
		var req pinterest.EventsRequest
		if !assert.NoError(t, json.NewDecoder(r.Body).Decode(&req), "request body") {
			w.WriteHeader(http.StatusTeapot)
			return
		}
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		defer context.AfterFunc(release, cancel)()
		respond(w, r.WithContext(ctx), n, req)
	}))
	// Cleanups run last-in first-out: blocked handlers are released before
	// Close waits for them.
	t.Cleanup(s.Close)
	t.Cleanup(releaseAll)
	return s
}

func (s *fakeServer) seen() int { return int(s.requests.Load()) }

// reply is one scripted answer. A 2xx reply without a body answers every
// event of the request as processed.
type reply struct {
	status     int
	retryAfter string
	body       string
}

// script answers the n-th request with replies[n-1]; the last reply repeats.
func script(replies ...reply) responder {
	return func(w http.ResponseWriter, _ *http.Request, n int, req pinterest.EventsRequest) {
		rp := replies[min(n, len(replies))-1]
		if rp.retryAfter != "" {
			w.Header().Set("Retry-After", rp.retryAfter)
		}
		if rp.status/100 == 2 && rp.body == "" {
			writeJSON(w, rp.status, processedAnswer(len(req.Data)))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rp.status)
		_, _ = io.WriteString(w, rp.body)
	}
}

// statuses is script with bodyless replies.
func statuses(codes ...int) responder {
	replies := make([]reply, len(codes))
	for i, c := range codes {
		replies[i] = reply{status: c}
	}
	return script(replies...)
}

// block answers nothing until the client gives up (or the test ends).
func block(_ http.ResponseWriter, r *http.Request, _ int, _ pinterest.EventsRequest) {
	<-r.Context().Done()
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func processedAnswer(n int) pinterest.EventsResponse {
	er := pinterest.EventsResponse{NumEventsReceived: n, NumEventsProcessed: n,
		Events: make([]pinterest.EventResponse, n)}
	for i := range er.Events {
		er.Events[i].Status = pinterest.StatusProcessed
	}
	return er
}

// eventID is the event id of item i of testItems.
func eventID(i int) string { return "evt-" + strconv.Itoa(i) }

// indexOf returns the item index encoded in an event id of testItems.
func indexOf(t *testing.T, id string) int {
	i, err := strconv.Atoi(strings.TrimPrefix(id, "evt-"))
	require.NoError(t, err, "event id %q", id)
	return i
}

func testItems(n int) []destinations.Item {
	items := make([]destinations.Item, n)
	for i := range items {
		m := cohorts.Membership{UserID: "u" + strconv.Itoa(i), CohortID: "c1",
			Action: cohorts.ActionEnter, TS: testTS}
		items[i] = destinations.Item{EventID: eventID(i), Membership: m,
			Hashed: cohorts.Identifiers{Email: fmt.Sprintf("user%d@example.com", i)}.Hash()}
	}
	return items
}

func batch(n int) destinations.Batch {
	return destinations.Batch{AdAccountID: acct, Items: testItems(n)}
}

func allProcessed(n int) []destinations.ItemResult {
	out := make([]destinations.ItemResult, n)
	for i := range out {
		out[i].Processed = true
	}
	return out
}

// rejectingEvent answers status with msg for any request that contains the
// event of item bad, and processes every other request.
func rejectingEvent(t *testing.T, bad, status int, msg string) responder {
	return func(w http.ResponseWriter, _ *http.Request, _ int, req pinterest.EventsRequest) {
		for _, ev := range req.Data {
			if indexOf(t, ev.EventID) == bad {
				writeJSON(w, status, pinterest.ErrorResponse{Code: 4, Message: msg})
				return
			}
		}
		writeJSON(w, http.StatusOK, processedAnswer(len(req.Data)))
	}
}

func destErr(t *testing.T, err error) *destinations.Error {
	t.Helper()
	var de *destinations.Error
	require.ErrorAs(t, err, &de)
	return de
}

func TestSendClassifiesEveryOutcome(t *testing.T) {
	const badMsg = `{"code":4,"message":"Invalid event_time"}`
	type sendCase struct {
		name      string
		items     int // batch size, 1 when 0
		respond   responder
		configure func(*pinterest.Config)
		// refused sends to a server that is already closed.
		refused bool
		// cancelOnArrival cancels the caller's context once the server has
		// the request.
		cancelOnArrival bool

		wantReason     destinations.Reason // "" means a nil error
		wantStatus     int
		wantRetryAfter time.Duration
		wantRequests   int
		wantItems      []destinations.ItemResult
	}
	cases := []sendCase{
		{name: "a 200 with every event processed marks every item processed",
			items: 3, respond: statuses(200), wantRequests: 1, wantItems: allProcessed(3)},
		{name: "a 200 with failed events rejects just those items with Pinterest's message",
			items: 4,
			respond: script(reply{status: 200, body: `{"num_events_received":4,"num_events_processed":2,"events":[
				{"status":"processed"},
				{"status":"failed","error_message":"Event time is in the future."},
				{"status":"processed","warning_message":"Missing content_ids."},
				{"status":"failed"}]}`}),
			wantRequests: 1,
			wantItems: []destinations.ItemResult{
				{Processed: true},
				{Error: "Event time is in the future."},
				{Processed: true, Warning: "Missing content_ids."},
				{Error: `status "failed"`},
			}},
		{name: "a 200 listing fewer events than were sent is a server error",
			items:      3,
			respond:    script(reply{status: 200, body: `{"events":[{"status":"processed"}]}`}),
			wantReason: destinations.ReasonServer, wantStatus: 200, wantRequests: 1},
		{name: "a 200 whose body is not JSON is a server error",
			respond:    script(reply{status: 200, body: `<html>oops</html>`}),
			wantReason: destinations.ReasonServer, wantStatus: 200, wantRequests: 1},
		{name: "a 401 is an auth error and is not retried",
			respond:    script(reply{status: 401, body: `{"code":2,"message":"Authentication failed."}`}),
			wantReason: destinations.ReasonAuth, wantStatus: 401, wantRequests: 1},
		{name: "a 403 is an auth error and is not retried",
			respond:    statuses(403),
			wantReason: destinations.ReasonAuth, wantStatus: 403, wantRequests: 1},
		{name: "a 404 is a not-found error and is not retried",
			respond:    script(reply{status: 404, body: `{"code":2,"message":"AdAccount not found."}`}),
			wantReason: destinations.ReasonNotFound, wantStatus: 404, wantRequests: 1},
		{name: "a 429 with Retry-After 0 twice then a 200 succeeds on the third attempt",
			items:        2,
			respond:      script(reply{status: 429, retryAfter: "0"}, reply{status: 429, retryAfter: "0"}, reply{status: 200}),
			wantRequests: 3, wantItems: allProcessed(2)},
		{name: "a 429 asking for longer than RetryWaitMax ends the call at once and carries the wait",
			respond:    script(reply{status: 429, retryAfter: "120"}, reply{status: 200}),
			wantReason: destinations.ReasonRateLimited, wantStatus: 429, wantRetryAfter: 120 * time.Second,
			wantRequests: 1},
		{name: "a 429 without Retry-After on every attempt is rate limited after every retry",
			respond:    statuses(429),
			wantReason: destinations.ReasonRateLimited, wantStatus: 429, wantRequests: retryMax + 1},
		{name: "a call that runs out of time waiting to retry a 429 keeps the 429 verdict",
			respond: statuses(429),
			configure: func(c *pinterest.Config) {
				c.CallTimeout = 50 * time.Millisecond
				c.RetryWaitMin, c.RetryWaitMax = time.Minute, time.Minute
			},
			wantReason: destinations.ReasonRateLimited, wantStatus: 429, wantRequests: 1},
		{name: "a 500 on every attempt is a server error after every retry",
			respond:    statuses(500),
			wantReason: destinations.ReasonServer, wantStatus: 500, wantRequests: retryMax + 1},
		{name: "a 503 twice then a 200 succeeds on the third attempt",
			respond: statuses(503, 503, 200), wantRequests: 3, wantItems: allProcessed(1)},
		{name: "a 503 asking for longer than RetryWaitMax ends the call at once and carries the wait",
			respond:    script(reply{status: 503, retryAfter: "120"}, reply{status: 200}),
			wantReason: destinations.ReasonServer, wantStatus: 503, wantRetryAfter: 120 * time.Second,
			wantRequests: 1},
		{name: "a 501 is a server error and is not retried",
			respond:    statuses(501),
			wantReason: destinations.ReasonServer, wantStatus: 501, wantRequests: 1},
		{name: "a 408 on every attempt is a timeout after every retry",
			respond:    statuses(408),
			wantReason: destinations.ReasonTimeout, wantStatus: 408, wantRequests: retryMax + 1},
		{name: "retries are disabled by a negative RetryMax",
			respond:    statuses(500, 200),
			configure:  func(c *pinterest.Config) { c.RetryMax = -1 },
			wantReason: destinations.ReasonServer, wantStatus: 500, wantRequests: 1},
		{name: "an attempt answered slower than AttemptTimeout on every attempt is a timeout",
			respond:    block,
			wantReason: destinations.ReasonTimeout, wantRequests: retryMax + 1},
		{name: "a refused connection is a server error without a status",
			refused:    true,
			wantReason: destinations.ReasonServer, wantRequests: 0},
		{name: "a caller cancelling while the request is in flight is a shutdown",
			respond: block, cancelOnArrival: true,
			wantReason: destinations.ReasonShutdown, wantRequests: 1},
	}
	for _, status := range []int{400, 422} {
		msg := fmt.Sprintf("bad_input (HTTP %d): Invalid event_time (code 4)", status)
		cases = append(cases,
			sendCase{name: fmt.Sprintf("a %d for a single event rejects just that item with the answer's message", status),
				respond:      script(reply{status: status, body: badMsg}),
				wantRequests: 1,
				wantItems:    []destinations.ItemResult{{Error: msg}}},
			// [0 1 2 3] bad → [0 1] ok, [2 3] bad → [2] bad, [3] ok.
			sendCase{name: fmt.Sprintf("a %d for four events is bisected until only the bad event is rejected", status),
				items:        4,
				respond:      rejectingEvent(t, 2, status, "Invalid event_time"),
				wantRequests: 5,
				wantItems:    []destinations.ItemResult{{Processed: true}, {Processed: true}, {Error: msg}, {Processed: true}}},
		)
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			respond := tc.respond
			if tc.cancelOnArrival {
				respond = func(w http.ResponseWriter, r *http.Request, n int, req pinterest.EventsRequest) {
					cancel()
					tc.respond(w, r, n, req)
				}
			}
			srv := newServer(t, respond)
			cfg := testConfig(srv.URL)
			if tc.refused {
				srv.Close()
			}
			if tc.configure != nil {
				tc.configure(&cfg)
			}
			n := max(tc.items, 1)

			res, err := newClient(t, cfg).Send(ctx, batch(n))

			assert.Equal(t, tc.wantRequests, srv.seen(), "requests the server saw")
			if tc.wantReason == "" {
				require.NoError(t, err)
				assert.Equal(t, tc.wantItems, res.Items)
				return
			}
			de := destErr(t, err)
			assert.Equal(t, tc.wantReason, de.Reason, "reason of %v", err)
			assert.Equal(t, tc.wantStatus, de.StatusCode, "status code of %v", err)
			assert.Equal(t, tc.wantRetryAfter, de.RetryAfter, "retry-after of %v", err)
			assert.Equal(t, tc.wantReason, destinations.ReasonOf(err))
			assert.Empty(t, res.Items, "a failed call returns no verdicts")
		})
	}
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestSendWireFormat(t *testing.T) {
	const (
		otherAcct  = "987654321012"
		otherToken = "pina_OTHERsecret"
		email      = "  Jane.Doe@Example.COM "
		maid       = "AEBE52E7-03EE-455A-B3C4-E57283966239"
		userAgent  = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X)"
	)
	messages := []string{
		`{"user_id":"u-1001","cohort_id":"high-value-2026","action":"enter",
		  "ts":"2026-03-14T09:26:53.589793238Z",
		  "identifiers":{"email":"` + email + `","maid":"` + maid + `","external_id":"crm-42",
		    "ip":" 203.0.113.7 ","user_agent":"` + userAgent + `"}}`,
		`{"user_id":"u-1002","cohort_id":"lapsed-buyers","action":"exit",
		  "ts":"2026-03-14T11:00:00+01:00",
		  "identifiers":{"ip":"2001:db8::1","user_agent":"curl/8.5"}}`,
	}
	now := time.Date(2026, 3, 15, 0, 0, 0, 0, time.UTC)
	var items []destinations.Item
	for _, msg := range messages {
		m, err := cohorts.Decode([]byte(msg), now)
		require.NoError(t, err)
		items = append(items, destinations.Item{EventID: m.EventID(), Membership: m, Hashed: m.Identifiers.Hash()})
	}

	var (
		mu   sync.Mutex
		gotR *http.Request
		raw  []byte
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		assert.NoError(t, err)
		mu.Lock()
		gotR, raw = r, body
		mu.Unlock()
		writeJSON(w, http.StatusOK, processedAnswer(len(items)))
	}))
	t.Cleanup(srv.Close)
	cfg := testConfig(srv.URL)
	cfg.Tokens = map[string]string{acct: token, otherAcct: otherToken}

	res, err := newClient(t, cfg).Send(context.Background(), destinations.Batch{AdAccountID: otherAcct, Items: items})
	require.NoError(t, err)
	assert.Equal(t, allProcessed(2), res.Items)

	mu.Lock()
	defer mu.Unlock()
	require.NotNil(t, gotR, "the server was called")
	t.Run("the request is a JSON POST to the ad account's events with that account's token", func(t *testing.T) {
		assert.Equal(t, http.MethodPost, gotR.Method)
		assert.Equal(t, "/v5/ad_accounts/"+otherAcct+"/events", gotR.URL.Path)
		assert.Empty(t, gotR.URL.RawQuery)
		assert.Equal(t, "Bearer "+otherToken, gotR.Header.Get("Authorization"))
		assert.Equal(t, "application/json", gotR.Header.Get("Content-Type"))
	})
	t.Run("the body holds no plain email, MAID or external id", func(t *testing.T) {
		lower := strings.ToLower(string(raw))
		for _, plain := range []string{"jane.doe", "example.com", strings.ToLower(maid), "crm-42"} {
			assert.NotContains(t, lower, plain)
		}
	})

	var req pinterest.EventsRequest
	require.NoError(t, json.Unmarshal(raw, &req))
	require.Len(t, req.Data, 2)
	t.Run("every event is a custom offline event with the membership's time and id", func(t *testing.T) {
		for i, ev := range req.Data {
			m := items[i].Membership
			assert.Equal(t, pinterest.EventNameCustom, ev.EventName)
			assert.Equal(t, pinterest.ActionSourceOffline, ev.ActionSource)
			assert.Equal(t, m.TS.Unix(), ev.EventTime)
			assert.Equal(t, m.EventID(), ev.EventID)
			assert.True(t, strings.HasSuffix(ev.EventID, ":"+strconv.FormatInt(m.TS.UnixNano(), 10)),
				"event id %q ends with the ts in nanoseconds", ev.EventID)
			require.NotNil(t, ev.CustomData)
			assert.Equal(t, []string{m.CohortID}, ev.CustomData.ContentIDs)
		}
		assert.Equal(t, int64(1773480413), req.Data[0].EventTime)
		assert.Equal(t, int64(1773482400), req.Data[1].EventTime)
		assert.Equal(t, pinterest.ContentNameEnter, req.Data[0].CustomData.ContentName)
		assert.Equal(t, pinterest.ContentNameExit, req.Data[1].CustomData.ContentName)
	})
	t.Run("user data carries hashed email, MAID and external id and plain IP and user agent", func(t *testing.T) {
		assert.Equal(t, pinterest.UserData{
			Em:              []string{sha256Hex("jane.doe@example.com")},
			HashedMaids:     []string{sha256Hex(strings.ToLower(maid))},
			ExternalID:      []string{sha256Hex("crm-42")},
			ClientIPAddress: "203.0.113.7",
			ClientUserAgent: userAgent,
		}, req.Data[0].UserData)
		assert.Equal(t, pinterest.UserData{ClientIPAddress: "2001:db8::1", ClientUserAgent: "curl/8.5"},
			req.Data[1].UserData)
	})
	t.Run("absent identifiers are left out of the body", func(t *testing.T) {
		var generic struct {
			Data []struct {
				UserData map[string]json.RawMessage `json:"user_data"`
			} `json:"data"`
		}
		require.NoError(t, json.Unmarshal(raw, &generic))
		require.Len(t, generic.Data, 2)
		for _, key := range []string{"em", "hashed_maids", "external_id"} {
			assert.NotContains(t, generic.Data[1].UserData, key)
		}
	})
}

func TestSendAddsTheTestQueryOnlyInTestMode(t *testing.T) {
	for _, tc := range []struct {
		name      string
		test      bool
		wantQuery string
	}{
		{name: "a normal client sends no query", test: false, wantQuery: ""},
		{name: "a test-mode client asks Pinterest only to validate", test: true, wantQuery: "test=true"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var query atomic.Pointer[string]
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request, _ int, req pinterest.EventsRequest) {
				q := r.URL.RawQuery
				query.Store(&q)
				writeJSON(w, http.StatusOK, processedAnswer(len(req.Data)))
			})
			cfg := testConfig(srv.URL)
			cfg.Test = tc.test
			_, err := newClient(t, cfg).Send(context.Background(), batch(1))
			require.NoError(t, err)
			require.NotNil(t, query.Load())
			assert.Equal(t, tc.wantQuery, *query.Load())
		})
	}
}

func TestSendWithoutATokenFailsWithoutCallingPinterest(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tokens map[string]string
	}{
		{name: "an ad account missing from Tokens is an auth error", tokens: map[string]string{"other": "t"}},
		{name: "an ad account with an empty token is an auth error", tokens: map[string]string{acct: ""}},
		{name: "a client without any token is an auth error", tokens: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, statuses(200))
			cfg := testConfig(srv.URL)
			cfg.Tokens = tc.tokens
			_, err := newClient(t, cfg).Send(context.Background(), batch(2))
			de := destErr(t, err)
			assert.Equal(t, destinations.ReasonAuth, de.Reason)
			assert.Contains(t, de.Error(), acct)
			assert.Zero(t, srv.seen(), "the server is never called")
		})
	}
}

func TestSendOfAnEmptyBatchMakesNoRequest(t *testing.T) {
	srv := newServer(t, statuses(200))
	res, err := newClient(t, testConfig(srv.URL)).Send(context.Background(), batch(0))
	require.NoError(t, err)
	assert.Empty(t, res.Items)
	assert.Zero(t, srv.seen())
	assert.False(t, res.Answered, "nothing was asked: nothing said of the account")

	res, err = newClient(t, testConfig(srv.URL)).Send(context.Background(), batch(1))
	require.NoError(t, err)
	assert.True(t, res.Answered)
}

func TestSendSplitsLargeBatchesIntoRequestsOfAtMostMaxEvents(t *testing.T) {
	const n = 2500
	var (
		mu    sync.Mutex
		sizes []int
	)
	// Every 7th item fails with its own event id as the message, so that the
	// verdicts show they are stitched back in order.
	srv := newServer(t, func(w http.ResponseWriter, _ *http.Request, _ int, req pinterest.EventsRequest) {
		mu.Lock()
		sizes = append(sizes, len(req.Data))
		mu.Unlock()
		er := processedAnswer(len(req.Data))
		for i, ev := range req.Data {
			if indexOf(t, ev.EventID)%7 == 0 {
				er.Events[i] = pinterest.EventResponse{Status: pinterest.StatusFailed, ErrorMessage: "failed " + ev.EventID}
			}
		}
		writeJSON(w, http.StatusOK, er)
	})

	cfg := testConfig(srv.URL)
	// A 1000-event request under -race on a busy machine can outlast the
	// short test timeout; a retry would show as an extra request size.
	cfg.AttemptTimeout = 10 * time.Second
	res, err := newClient(t, cfg).Send(context.Background(), batch(n))
	require.NoError(t, err)

	mu.Lock()
	assert.Equal(t, []int{1000, 1000, 500}, sizes)
	mu.Unlock()
	require.Len(t, res.Items, n)
	for i, ir := range res.Items {
		want := destinations.ItemResult{Processed: true}
		if i%7 == 0 {
			want = destinations.ItemResult{Error: "failed " + eventID(i)}
		}
		if !assert.Equal(t, want, ir, "item %d", i) {
			break
		}
	}
}

func TestSendFailsTheWholeBatchWhenALaterRequestFails(t *testing.T) {
	srv := newServer(t, statuses(200, 401))
	res, err := newClient(t, testConfig(srv.URL)).Send(context.Background(), batch(1500))
	assert.Equal(t, destinations.ReasonAuth, destErr(t, err).Reason)
	assert.Empty(t, res.Items, "a Result is all or nothing")
	assert.Equal(t, 2, srv.seen())
}

func TestErrorsNeverContainTheToken(t *testing.T) {
	for _, tc := range []struct {
		name    string
		respond responder
		reason  destinations.Reason
	}{
		{name: "a 401 error does not reveal the token",
			respond: script(reply{status: 401, body: `{"code":2,"message":"Authentication failed."}`}),
			reason:  destinations.ReasonAuth},
		{name: "a 500 error does not reveal the token",
			respond: script(reply{status: 500, body: "internal error"}),
			reason:  destinations.ReasonServer},
		{name: "a timeout error does not reveal the token", respond: block, reason: destinations.ReasonTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newServer(t, tc.respond)
			cfg := testConfig(srv.URL)
			cfg.RetryMax = -1
			_, err := newClient(t, cfg).Send(context.Background(), batch(1))
			de := destErr(t, err)
			assert.Equal(t, tc.reason, de.Reason)
			assert.NotContains(t, err.Error(), token)
			assert.NotContains(t, fmt.Sprintf("%+v", err), token)
			for e := errors.Unwrap(err); e != nil; e = errors.Unwrap(e) {
				assert.NotContains(t, e.Error(), token)
			}
		})
	}
}

func TestOnAttemptIsCalledOncePerAttempt(t *testing.T) {
	type attempt struct {
		account string
		number  int // within its call
		status  int
	}
	for _, tc := range []struct {
		name    string
		respond responder
		refused bool
		items   int
		want    []int
		numbers []int
	}{
		{name: "a call retried twice reports three attempts with their statuses",
			respond: script(reply{status: 500}, reply{status: 429, retryAfter: "0"}, reply{status: 200}),
			want:    []int{500, 429, 200}, numbers: []int{1, 2, 3}},
		{name: "a call that is not retried reports one attempt",
			respond: statuses(401), want: []int{401}, numbers: []int{1}},
		{name: "attempts without an answer report status 0",
			refused: true, want: []int{0, 0, 0}, numbers: []int{1, 2, 3}},
		{name: "every request of a bisection is an attempt",
			items: 4, respond: rejectingEvent(t, 2, 400, "bad"), want: []int{400, 200, 400, 400, 200}, numbers: []int{1, 1, 1, 1, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, tc.respond)
			var (
				mu  sync.Mutex
				got []attempt
			)
			cfg := testConfig(srv.URL)
			cfg.OnAttempt = func(account string, number, status int, d time.Duration) {
				assert.GreaterOrEqual(t, d, time.Duration(0))
				mu.Lock()
				got = append(got, attempt{account, number, status})
				mu.Unlock()
			}
			if tc.refused {
				srv.Close()
			}
			_, _ = newClient(t, cfg).Send(context.Background(), batch(max(tc.items, 1)))

			want := make([]attempt, len(tc.want))
			for i, s := range tc.want {
				want[i] = attempt{acct, tc.numbers[i], s}
			}
			mu.Lock()
			defer mu.Unlock()
			assert.Equal(t, want, got)
		})
	}
}

// A 429 whose Retry-After is longer than RetryWaitMax ends its call and
// pauses the account: the next call waits the pause out, and says so.
func TestOnRateLimitWaitReportsTheWaitForA429sPause(t *testing.T) {
	srv := newServer(t, script(reply{status: 429, retryAfter: "1"}, reply{status: 200}))
	cfg := testConfig(srv.URL)
	var (
		mu    sync.Mutex
		waits []time.Duration
	)
	cfg.OnRateLimitWait = func(account string, d time.Duration) {
		assert.Equal(t, acct, account)
		mu.Lock()
		waits = append(waits, d)
		mu.Unlock()
	}
	c := newClient(t, cfg)
	_, err := c.Send(t.Context(), batch(1))
	assert.Equal(t, destinations.ReasonRateLimited, destinations.ReasonOf(err))
	mu.Lock()
	assert.Empty(t, waits, "the first call did not wait")
	mu.Unlock()
	_, err = c.Send(t.Context(), batch(1))
	require.NoError(t, err)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, waits, 1)
	assert.Greater(t, waits[0], 500*time.Millisecond, "most of the 1 s pause is left when the second call starts")
}

func TestOnAttemptDurationExcludesTheWaitBeforeARetry(t *testing.T) {
	const wait = 150 * time.Millisecond
	srv := newServer(t, statuses(500, 200))
	var (
		mu sync.Mutex
		ds []time.Duration
	)
	cfg := testConfig(srv.URL)
	cfg.RetryWaitMin, cfg.RetryWaitMax = wait, wait
	cfg.OnAttempt = func(_ string, _, _ int, d time.Duration) {
		mu.Lock()
		ds = append(ds, d)
		mu.Unlock()
	}
	_, err := newClient(t, cfg).Send(context.Background(), batch(1))
	require.NoError(t, err)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, ds, 2)
	assert.Less(t, ds[1], wait, "the second attempt was answered at once; its duration must not include the %s wait", wait)
}

func TestSendIsSafeForConcurrentUse(t *testing.T) {
	srv := newServer(t, statuses(503, 200))
	var attempts atomic.Int64
	cfg := testConfig(srv.URL)
	cfg.OnAttempt = func(string, int, int, time.Duration) { attempts.Add(1) }
	c := newClient(t, cfg)
	const senders = 8
	var wg sync.WaitGroup
	for i := range senders {
		wg.Go(func() {
			res, err := c.Send(context.Background(), batch(i+1))
			if assert.NoError(t, err) {
				assert.Equal(t, allProcessed(i+1), res.Items)
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int64(senders+1), attempts.Load(), "only the first request met the 503")
	assert.Equal(t, senders+1, srv.seen())
}

func TestNewRejectsABaseURLThatIsNotAbsoluteHTTP(t *testing.T) {
	for _, tc := range []struct {
		name string
		url  string
	}{
		{name: "an empty URL is rejected", url: ""},
		{name: "a relative URL is rejected", url: "/v5"},
		{name: "a URL without a host is rejected", url: "https:///v5"},
		{name: "an ftp URL is rejected", url: "ftp://api.pinterest.com/v5"},
		{name: "an unparsable URL is rejected", url: "https://api.pinterest.com:bad/v5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pinterest.New(pinterest.Config{BaseURL: tc.url})
			assert.Error(t, err)
		})
	}
	t.Run("an https URL with a trailing slash is accepted", func(t *testing.T) {
		c, err := pinterest.New(pinterest.Config{BaseURL: "https://api.pinterest.com/v5/"})
		require.NoError(t, err)
		c.CloseIdleConnections()
	})
}
