package pinterest

import (
	"context"
	"net/http"
	"strings"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/destinations"
)

// MaxListRecordsPerRequest is the most records one customer-list PATCH
// carries. The spec gives no maximum: 1000 is an assumption, the events
// endpoint's limit, small enough for a body of about 65 KB of hashes.
const MaxListRecordsPerRequest = 1000

// MsgNoListRecord is the verdict of an item bound for a customer list
// without a hashed email or MAID: a list holds nothing else.
const MsgNoListRecord = "no email or mobile ad id for a customer list"

// listRun is one PATCH of a customer list: the records of items (indexes
// into the batch, in batch order) added or removed.
type listRun struct {
	listID  string
	op      string // OperationAdd or OperationRemove
	items   []int
	records int
}

// batchPlan is what Send does with a batch: the items whose event is sent,
// and the list runs, in the order they must be applied per list.
type batchPlan struct {
	events    []int
	runs      []listRun
	noRecords []int // items bound for a list that have nothing to put in it
	listed    []bool
}

// planBatch plans b's items. List operations are grouped per list and
// operation type: an item joins its list's latest run of its type (one
// PATCH), so a batch of enters and exits of different users makes one ADD
// and one REMOVE per list, whatever their interleaving. A new run starts
// when that run is full, or when one of the item's records was taken by a
// later run of the list (the other type): so an enter and a later exit of
// the same record (one user, or two users sharing an email) are applied in
// batch order, ADD then REMOVE, never reordered by grouping. Runs are
// applied in the order they are started. An item's records are never
// split across two runs. An item bound for a list with no record for it
// sends nothing at all, not even its event: its verdict is MsgNoListRecord
// (bad input).
func planBatch(items []destinations.Item) batchPlan {
	p := batchPlan{listed: make([]bool, len(items))}
	var latest map[listOp]int    // a list's latest run of a type: index in p.runs
	var taker map[listRecord]int // the run that last took a record of a list
	for i, it := range items {
		recs := listRecords(it.Hashed)
		n := len(recs)
		if len(it.CustomerLists) > 0 && n == 0 {
			p.noRecords = append(p.noRecords, i)
			continue
		}
		if !it.ListsOnly {
			p.events = append(p.events, i)
		}
		if len(it.CustomerLists) == 0 {
			continue
		}
		if latest == nil {
			latest, taker = map[listOp]int{}, map[listRecord]int{}
		}
		op := OperationAdd
		if it.Membership.Action == cohorts.ActionExit {
			op = OperationRemove
		}
		for _, id := range it.CustomerLists {
			j, ok := latest[listOp{id, op}]
			if !ok || p.runs[j].records+n > MaxListRecordsPerRequest || takenAfter(taker, id, recs, j) {
				p.runs = append(p.runs, listRun{listID: id, op: op})
				j = len(p.runs) - 1
				latest[listOp{id, op}] = j
			}
			p.runs[j].items = append(p.runs[j].items, i)
			p.runs[j].records += n
			for _, r := range recs {
				taker[listRecord{id, r}] = j
			}
			p.listed[i] = true
		}
	}
	return p
}

type listOp struct{ listID, op string }

type listRecord struct{ listID, record string }

// takenAfter reports whether a run after run j took one of recs for list
// id: an operation on them joining run j would be applied before it.
func takenAfter(taker map[listRecord]int, id string, recs []string, j int) bool {
	for _, r := range recs {
		if k, ok := taker[listRecord{id, r}]; ok && k > j {
			return true
		}
	}
	return false
}

// listRecords are the hashes an item puts in (or takes out of) a list.
func listRecords(h cohorts.Hashed) []string {
	recs := make([]string, 0, 2)
	if h.Em != "" {
		recs = append(recs, h.Em)
	}
	if h.HashedMAID != "" {
		recs = append(recs, h.HashedMAID)
	}
	return recs
}

// sendLists applies the runs in order. A 400/422 for a run of several
// items is bisected like events; a single item's refusal is returned in
// its entry of the answer (indexed like items, "" when every list took it).
// Any other failure ends the call.
func (c *Client) sendLists(ctx context.Context, adAccountID string, cred credential, items []destinations.Item, runs []listRun) ([]string, error) {
	if len(runs) == 0 {
		return nil, nil
	}
	failed := make([]string, len(items))
	for _, run := range runs {
		err := bisect(len(run.items), func(lo, hi int) error {
			return c.patchList(ctx, adAccountID, cred, run.listID, run.op, items, run.items[lo:hi])
		}, func(k int, de *destinations.Error) {
			if i := run.items[k]; failed[i] == "" {
				failed[i] = "customer list " + run.listID + ": " + de.Error()
			}
		})
		if err != nil {
			return nil, err
		}
	}
	return failed, nil
}

// patchList sends one PATCH /ad_accounts/{id}/customer_lists/{list_id}
// with the records of items[idx...]. A 2xx means every record was taken.
func (c *Client) patchList(ctx context.Context, adAccountID string, cred credential, listID, op string, items []destinations.Item, idx []int) error {
	recs := make([]string, 0, 2*len(idx))
	for _, i := range idx {
		recs = append(recs, listRecords(items[i].Hashed)...)
	}
	req := CustomerListUpdateRequest{OperationType: op, Records: strings.Join(recs, ",")}
	return c.adsRequest(ctx, adAccountID, cred, http.MethodPatch, nil, req, nil, "customer_lists", listID)
}

// settle completes the verdicts of Send: an item without records for its
// lists is refused, an item that sent no event counts as processed, and
// an item refused by a list is not processed whatever its event's verdict.
func (p batchPlan) settle(out []destinations.ItemResult, listFailed []string) {
	sent := make([]bool, len(out))
	for _, i := range p.events {
		sent[i] = true
	}
	for i := range out {
		if !sent[i] {
			out[i] = destinations.ItemResult{Processed: true}
		}
		if p.listed[i] && listFailed[i] != "" && out[i].Processed {
			out[i].Processed, out[i].Error = false, listFailed[i]
		}
	}
	for _, i := range p.noRecords {
		out[i] = destinations.ItemResult{Error: MsgNoListRecord}
	}
}
