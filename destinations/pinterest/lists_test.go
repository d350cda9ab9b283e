package pinterest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/destinations"
	"github.com/cohort-connector/cohort-connector/destinations/pinterest"
)

// listPatch is one PATCH a server saw: list id, operation, records.
type listPatch struct {
	list, op string
	records  []string
}

func patches(t *testing.T, s *apiServer) []listPatch {
	t.Helper()
	var out []listPatch
	for _, r := range s.requests() {
		if r.Method != http.MethodPatch {
			continue
		}
		b := r.jsonBody(t)
		out = append(out, listPatch{list: r.Path[strings.LastIndex(r.Path, "/")+1:],
			op: b["operation_type"].(string), records: strings.Split(b["records"].(string), ",")})
	}
	return out
}

// listServer answers events as processed, and every PATCH with 200 unless
// it carries the record bad (then 400).
func listServer(t *testing.T, bad string) *apiServer {
	return newAPIServer(t, func(w http.ResponseWriter, r seenRequest) {
		switch {
		case strings.HasSuffix(r.Path, "/events"):
			eventsAnswer(t, w, r)
		case bad != "" && strings.Contains(string(r.Body), bad):
			writeJSON(w, http.StatusBadRequest, pinterest.ErrorResponse{Code: 4, Message: "invalid record"})
		default:
			writeJSON(w, http.StatusOK, map[string]any{"id": "x"})
		}
	})
}

// listItems are testItems bound for lists, ListsOnly.
func listItems(n int, lists ...string) []destinations.Item {
	items := testItems(n)
	for i := range items {
		items[i].CustomerLists, items[i].ListsOnly = lists, true
	}
	return items
}

func exit(it destinations.Item) destinations.Item {
	it.Membership.Action = cohorts.ActionExit
	return it
}

func TestSendMirrorsMembershipToCustomerLists(t *testing.T) {
	items := listItems(4, "L1", "L2")
	items[2] = exit(items[2])
	items[3].Hashed.HashedMAID = "maid3"
	srv := listServer(t, "")

	res, err := newClient(t, adsConfig(srv.URL)).Send(context.Background(), destinations.Batch{AdAccountID: acct, Items: items})

	require.NoError(t, err)
	assert.Equal(t, allProcessed(4), res.Items)
	em := func(i int) string { return items[i].Hashed.Em }
	// Per list: ADD [0 1 3] (different users: the exit between them does
	// not split the run), REMOVE [2].
	assert.ElementsMatch(t, []listPatch{
		{"L1", "ADD", []string{em(0), em(1), em(3), "maid3"}}, {"L2", "ADD", []string{em(0), em(1), em(3), "maid3"}},
		{"L1", "REMOVE", []string{em(2)}}, {"L2", "REMOVE", []string{em(2)}},
	}, patches(t, srv))
	for _, r := range srv.requests() {
		assert.NotEqual(t, "POST", r.Method, "ListsOnly items send no event")
		assert.Equal(t, "Bearer "+adsToken, r.Auth, "list operations carry the OAuth token")
	}
}

func TestSendAppliesAnEnterThenAnExitOfOneUserInOrder(t *testing.T) {
	items := listItems(2, "L1")
	items[1] = exit(items[0]) // the same user leaves again in the same batch
	srv := listServer(t, "")

	_, err := newClient(t, adsConfig(srv.URL)).Send(context.Background(), destinations.Batch{AdAccountID: acct, Items: items})

	require.NoError(t, err)
	em := items[0].Hashed.Em
	assert.Equal(t, []listPatch{{"L1", "ADD", []string{em}}, {"L1", "REMOVE", []string{em}}}, patches(t, srv))
}

func TestSendGroupsInterleavedEntersAndExitsOfDifferentUsers(t *testing.T) {
	items := listItems(1000, "L1")
	for i := 1; i < len(items); i += 2 {
		items[i] = exit(items[i])
	}
	srv := listServer(t, "")

	res, err := newClient(t, adsConfig(srv.URL)).Send(context.Background(), destinations.Batch{AdAccountID: acct, Items: items})

	require.NoError(t, err)
	assert.Equal(t, allProcessed(1000), res.Items)
	ps := patches(t, srv)
	require.Len(t, ps, 2, "one ADD and one REMOVE, not a PATCH per change")
	assert.Equal(t, "ADD", ps[0].op)
	assert.Equal(t, "REMOVE", ps[1].op)
	assert.Len(t, ps[0].records, 500)
	assert.Len(t, ps[1].records, 500)
}

func TestSendKeepsTheOrderOfOperationsOnOneRecord(t *testing.T) {
	// Users 0, 1 and 2 share an email: ADD, REMOVE, ADD of one record must
	// reach the list in that order. Users 3 and 4 have emails of their own:
	// they join the latest run of their type.
	items := listItems(5, "L1")
	for i := 1; i <= 2; i++ {
		items[i].Hashed.Em = items[0].Hashed.Em
	}
	items[1] = exit(items[1])
	items[4] = exit(items[4])
	srv := listServer(t, "")

	_, err := newClient(t, adsConfig(srv.URL)).Send(context.Background(), destinations.Batch{AdAccountID: acct, Items: items})

	require.NoError(t, err)
	em := func(i int) string { return items[i].Hashed.Em }
	assert.Equal(t, []listPatch{
		{"L1", "ADD", []string{em(0)}},
		{"L1", "REMOVE", []string{em(1), em(4)}},
		{"L1", "ADD", []string{em(2), em(3)}},
	}, patches(t, srv))
}

func TestSendSplitsListOperationsAtMaxListRecords(t *testing.T) {
	items := listItems(600, "L1")
	for i := range items {
		items[i].Hashed.HashedMAID = fmt.Sprintf("maid%d", i) // two records an item
	}
	srv := listServer(t, "")

	res, err := newClient(t, adsConfig(srv.URL)).Send(context.Background(), destinations.Batch{AdAccountID: acct, Items: items})

	require.NoError(t, err)
	assert.Equal(t, allProcessed(600), res.Items)
	ps := patches(t, srv)
	require.Len(t, ps, 2)
	assert.Len(t, ps[0].records, pinterest.MaxListRecordsPerRequest)
	assert.Len(t, ps[1].records, 200)
	assert.Equal(t, "maid499", ps[0].records[999], "an item's records stay in one request")
}

func TestSendBisectsAListOperationToIsolateABadRecord(t *testing.T) {
	items := listItems(4, "L1")
	items[2].Hashed.Em = "not-a-hash"
	srv := listServer(t, "not-a-hash")

	res, err := newClient(t, adsConfig(srv.URL)).Send(context.Background(), destinations.Batch{AdAccountID: acct, Items: items})

	require.NoError(t, err)
	want := allProcessed(4)
	want[2] = destinations.ItemResult{Error: "customer list L1: bad_input (HTTP 400): invalid record (code 4)"}
	assert.Equal(t, want, res.Items)
	assert.Len(t, patches(t, srv), 5, "[0 1 2 3] bad → [0 1] ok, [2 3] bad → [2] bad, [3] ok")
}

func TestSendRefusesAListItemWithoutEmailOrMAID(t *testing.T) {
	items := testItems(2)
	items[0].CustomerLists = []string{"L1"}
	items[0].Hashed = cohorts.Hashed{ClientIP: "10.0.0.1", UserAgent: "ua"}
	var events atomic.Int64
	srv := newAPIServer(t, func(w http.ResponseWriter, r seenRequest) {
		events.Add(1)
		eventsAnswer(t, w, r)
	})

	res, err := newClient(t, adsConfig(srv.URL)).Send(context.Background(), destinations.Batch{AdAccountID: acct, Items: items})

	require.NoError(t, err)
	assert.Equal(t, []destinations.ItemResult{{Error: "no email or mobile ad id for a customer list"}, {Processed: true}}, res.Items)
	assert.Equal(t, int64(1), events.Load(), "only the other item's event, no list operation")
}

func TestSendProcessesAnItemOnlyWhenItsEventAndListsSucceeded(t *testing.T) {
	items := testItems(3)
	for i := range items {
		items[i].CustomerLists = []string{"L1"}
	}
	items[1].Hashed.HashedMAID = "badmaid"
	srv := newAPIServer(t, func(w http.ResponseWriter, r seenRequest) {
		switch {
		case strings.HasSuffix(r.Path, "/events"):
			var req pinterest.EventsRequest
			require.NoError(t, json.Unmarshal(r.Body, &req))
			ans := processedAnswer(len(req.Data))
			for i, ev := range req.Data {
				if ev.EventID == eventID(0) {
					ans.Events[i] = pinterest.EventResponse{Status: pinterest.StatusFailed, ErrorMessage: "too old"}
				}
			}
			writeJSON(w, http.StatusOK, ans)
		case strings.Contains(string(r.Body), "badmaid"):
			writeJSON(w, http.StatusBadRequest, pinterest.ErrorResponse{Message: "bad"})
		default:
			writeJSON(w, http.StatusOK, map[string]any{})
		}
	})

	res, err := newClient(t, adsConfig(srv.URL)).Send(context.Background(), destinations.Batch{AdAccountID: acct, Items: items})

	require.NoError(t, err)
	assert.Equal(t, []destinations.ItemResult{
		{Error: "too old"},
		{Error: "customer list L1: bad_input (HTTP 400): bad"},
		{Processed: true},
	}, res.Items)
}

func TestSendFailsTheWholeBatchWhenAListCallFails(t *testing.T) {
	srv := newAPIServer(t, func(w http.ResponseWriter, r seenRequest) {
		if strings.HasSuffix(r.Path, "/events") {
			eventsAnswer(t, w, r)
			return
		}
		w.WriteHeader(http.StatusUnauthorized)
	})
	items := testItems(2)
	items[1].CustomerLists = []string{"L1"}

	res, err := newClient(t, adsConfig(srv.URL)).Send(context.Background(), destinations.Batch{AdAccountID: acct, Items: items})

	assert.Equal(t, destinations.ReasonAuth, destErr(t, err).Reason)
	assert.Empty(t, res.Items)
}

func TestSendWithListsButNoAdsTokenFailsWithoutARequest(t *testing.T) {
	srv := listServer(t, "")
	items := testItems(2)
	items[1].CustomerLists = []string{"L1"}

	_, err := newClient(t, testConfig(srv.URL)).Send(context.Background(), destinations.Batch{AdAccountID: acct, Items: items})

	assert.Equal(t, destinations.ReasonAuth, destErr(t, err).Reason)
	assert.Empty(t, srv.requests(), "not even the events")
}
