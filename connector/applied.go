package connector

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/destinations"
)

// Last change wins in a customer list.
//
// A list holds a user or not: applying an older change after a newer one
// (a redelivery whose first ack was lost, a producer publishing out of
// order, a backfill racing live changes) would undo the newer one. So the
// connector keeps, per customer list and user, the time (ts) of the latest
// change it applied there, in the state bucket under
// "applied.<list_id>.<sha256(user_id)[:16 bytes], hex>", with the most
// recent ones in memory (a bounded LRU), and whether that change made the
// user a member. Before a call, a list operation
// older than what the list already reflects is dropped from the item; after
// Pinterest accepted the call, the applied times are written (all publishes
// first, then their acks together). A change with the same ts as the applied
// one is applied again: it is the same change redelivered, and ADD and
// REMOVE are idempotent.
//
// The same record counts each list's current members (enters minus exits
// that changed membership): the denominator of a customer list's match
// rate. Each process adds its changes to "members.<list_id>" in the bucket
// (compare-and-set, so replicas add up), see flushMembers.
//
// Events mode needs none of this: an event is a fact at its time, and
// Pinterest deduplicates on event_id.

// appliedCacheSize bounds the in-memory part of the applied changes.
const appliedCacheSize = 200_000

// appliedLookups is how many bucket reads run at once for one batch.
const appliedLookups = 16

// applied is the latest change applied to a list for one user.
type applied struct {
	ts     int64 // Unix ns; 0: none
	member bool  // it was an enter
}

// encode is the bucket value: 8 bytes of ts, big-endian, then 1 or 0.
func (a applied) encode() []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 9), uint64(a.ts))
	if a.member {
		return append(b, 1)
	}
	return append(b, 0)
}

func decodeApplied(v []byte) (applied, error) {
	if len(v) != 9 {
		return applied{}, fmt.Errorf("%d bytes, want 9", len(v))
	}
	return applied{ts: int64(binary.BigEndian.Uint64(v)), member: v[8] == 1}, nil
}

// appliedStore is the applied change per (customer list, user). It is used
// by the lanes' senders, several at once; per (list, user) one change at a
// time is in flight (the order book), so check-then-record needs no lock.
type appliedStore struct {
	kv     jetstream.KeyValue // nil: memory only (tests, no state bucket)
	js     jetstream.JetStream
	bucket string
	cache  *lru.Cache[string, applied]

	mu      sync.Mutex
	members map[string]int64 // list id → members added (or removed) since the last flush
}

func newAppliedStore(js jetstream.JetStream, kv jetstream.KeyValue) *appliedStore {
	cache, _ := lru.New[string, applied](appliedCacheSize) // only fails for a size ≤ 0
	s := &appliedStore{kv: kv, js: js, cache: cache, members: map[string]int64{}}
	if kv != nil {
		s.bucket = kv.Bucket()
	}
	return s
}

// appliedKey is the bucket key of a user's applied change in a list.
func appliedKey(listID, userID string) string {
	sum := sha256.Sum256([]byte(userID))
	return "applied." + listID + "." + hex.EncodeToString(sum[:16])
}

// listBatch is what drop learned of a batch, for record.
type listBatch struct {
	prev map[string]applied // applied key → the change applied before this batch
}

// drop removes from each item the customer lists that already reflect a
// newer change of its user, and reports which items are left with nothing
// to send (superseded).
func (s *appliedStore) drop(ctx context.Context, items []destinations.Item) (superseded []bool, b listBatch, err error) {
	superseded = make([]bool, len(items))
	keys := listKeys(items)
	if len(keys) == 0 {
		return superseded, b, nil
	}
	if b.prev, err = s.lookup(ctx, keys); err != nil {
		return nil, b, err
	}
	for i := range items {
		it := &items[i]
		if len(it.CustomerLists) == 0 {
			continue
		}
		ts := it.Membership.TS.UnixNano()
		kept := it.CustomerLists[:0:0]
		for _, l := range it.CustomerLists {
			if b.prev[appliedKey(l, it.Membership.UserID)].ts <= ts {
				kept = append(kept, l)
			}
		}
		it.CustomerLists = kept
		superseded[i] = it.ListsOnly && len(kept) == 0
	}
	return superseded, b, nil
}

// listKeys is the set of applied keys the items' list operations need.
func listKeys(items []destinations.Item) map[string]struct{} {
	keys := map[string]struct{}{}
	for _, it := range items {
		for _, l := range it.CustomerLists {
			keys[appliedKey(l, it.Membership.UserID)] = struct{}{}
		}
	}
	return keys
}

// lookup returns the applied change of each key (zero when none), from
// memory or else from the bucket, appliedLookups reads at a time.
func (s *appliedStore) lookup(ctx context.Context, keys map[string]struct{}) (map[string]applied, error) {
	out := make(map[string]applied, len(keys))
	var missing []string
	for k := range keys {
		if a, ok := s.cache.Get(k); ok {
			out[k] = a
		} else {
			missing = append(missing, k)
		}
	}
	if s.kv == nil || len(missing) == 0 {
		return out, nil
	}
	var mu sync.Mutex
	var errs []error
	sem := make(chan struct{}, appliedLookups)
	var wg sync.WaitGroup
	for _, k := range missing {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			a, err := s.read(ctx, k)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			out[k] = a
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return nil, fmt.Errorf("reading applied changes: %w", errors.Join(errs...))
	}
	return out, nil
}

func (s *appliedStore) read(ctx context.Context, key string) (applied, error) {
	e, err := s.kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return applied{}, nil
	case err != nil:
		return applied{}, err
	}
	a, err := decodeApplied(e.Value())
	if err != nil {
		return applied{}, fmt.Errorf("applied change %s: %w", key, err)
	}
	return a, nil
}

// recordTimeout bounds the wait for the acks of one batch's records.
const recordTimeout = 5 * time.Second

// record stores the applied change of every list operation of the processed
// items and counts the members they added or removed. An error means some
// were not stored: the caller has the items redelivered rather than acked
// (sending them again is harmless).
func (s *appliedStore) record(items []destinations.Item, processed []bool, b listBatch) error {
	var futures []jetstream.PubAckFuture
	for i, it := range items {
		if !processed[i] {
			continue
		}
		now := applied{ts: it.Membership.TS.UnixNano(), member: it.Membership.Action == cohorts.ActionEnter}
		for _, l := range it.CustomerLists {
			k := appliedKey(l, it.Membership.UserID)
			s.countMember(l, b.prev[k].member, now.member)
			b.prev[k] = now // a later item of the batch for the same user sees this one
			s.cache.Add(k, now)
			if s.kv == nil {
				continue
			}
			f, err := s.js.PublishAsync("$KV."+s.bucket+"."+k, now.encode())
			if err != nil {
				return fmt.Errorf("recording applied change: %w", err)
			}
			futures = append(futures, f)
		}
	}
	return awaitAcks(futures)
}

// awaitAcks waits for the acks of futures, at most recordTimeout in all.
func awaitAcks(futures []jetstream.PubAckFuture) error {
	timeout := time.NewTimer(recordTimeout)
	defer timeout.Stop()
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("recording applied change: %w", err)
		case <-timeout.C:
			return fmt.Errorf("recording applied change: no ack within %s", recordTimeout)
		}
	}
	return nil
}

// countMember adds the change of one user's membership of list to the
// unflushed member count.
func (s *appliedStore) countMember(list string, was, is bool) {
	if was == is {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if is {
		s.members[list]++
	} else {
		s.members[list]--
	}
}

// membersFlushEvery is how often member counts are added to the bucket.
const membersFlushEvery = 5 * time.Second

// keepFlushingMembers flushes the member counts every membersFlushEvery
// until ctx ends, then once more (with a short deadline of its own).
func (s *appliedStore) keepFlushingMembers(ctx context.Context, log func(error)) {
	t := time.NewTicker(membersFlushEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if err := s.flushMembers(ctx); err != nil {
				log(err)
			}
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), recordTimeout)
			defer cancel()
			if err := s.flushMembers(fctx); err != nil {
				log(err)
			}
			return
		}
	}
}

// flushMembers adds the unflushed member counts to "members.<list_id>" in
// the bucket; what could not be added stays for the next flush.
func (s *appliedStore) flushMembers(ctx context.Context) error {
	if s.kv == nil {
		return nil
	}
	s.mu.Lock()
	pending := s.members
	s.members = map[string]int64{}
	s.mu.Unlock()
	var errs []error
	for list, delta := range pending {
		if err := addToCounter(ctx, s.kv, "members."+list, delta); err != nil {
			s.mu.Lock()
			s.members[list] += delta
			s.mu.Unlock()
			errs = append(errs, fmt.Errorf("customer list %s member count: %w", list, err))
		}
	}
	return errors.Join(errs...)
}

// ListMembers is the number of current members of a customer list: the
// bucket's count plus this process's unflushed changes.
func (s *appliedStore) ListMembers(ctx context.Context, list string) (int64, error) {
	s.mu.Lock()
	n := s.members[list]
	s.mu.Unlock()
	if s.kv == nil {
		return n, nil
	}
	stored, err := ReadListMembers(ctx, s.kv, list)
	return stored + n, err
}

// ReadListMembers is the member count of a customer list as stored in the
// state bucket kv (what every process has flushed), 0 when none is.
func ReadListMembers(ctx context.Context, kv jetstream.KeyValue, list string) (int64, error) {
	e, err := kv.Get(ctx, "members."+list)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(string(e.Value()), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("members.%s: %w", list, err)
	}
	return n, nil
}

// addToCounter adds delta to the decimal counter at key, compare-and-set,
// so that replicas adding at once all count.
func addToCounter(ctx context.Context, kv jetstream.KeyValue, key string, delta int64) error {
	for range 20 {
		e, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			if _, err = kv.Create(ctx, key, []byte(strconv.FormatInt(delta, 10))); err == nil {
				return nil
			}
		} else if err == nil {
			n, perr := strconv.ParseInt(string(e.Value()), 10, 64)
			if perr != nil {
				return fmt.Errorf("%s: %w", key, perr)
			}
			if _, err = kv.Update(ctx, key, []byte(strconv.FormatInt(n+delta, 10)), e.Revision()); err == nil {
				return nil
			}
		}
		if !isConflict(err) {
			return err
		}
	}
	return fmt.Errorf("%s: still contended after 20 attempts", key)
}

// ListApplier sends batches outside the consume loop (a backfill) under
// the same last-change-wins rule as the loop's own sends, and counts the
// members they add to the same totals.
type ListApplier struct{ s *appliedStore }

// NewListApplier is a ListApplier of its own over the state bucket kv
// (the backfill command); call Flush before it is dropped.
func NewListApplier(js jetstream.JetStream, kv jetstream.KeyValue) *ListApplier {
	return &ListApplier{newAppliedStore(js, kv)}
}

// Applier is the connector's own ListApplier (the daemon's backfills):
// its member counts are flushed with the connector's.
func (c *Connector) Applier() *ListApplier { return &ListApplier{c.applied} }

// Send sends items to the ad account through dest. A list operation older
// than what its list reflects is dropped (an item left with nothing to
// send counts as processed), and the applied changes are recorded.
func (l *ListApplier) Send(ctx context.Context, dest destinations.Destination, account string, items []destinations.Item) (destinations.Result, error) {
	superseded, lists, err := l.s.drop(ctx, items)
	if err != nil {
		if ctx.Err() != nil {
			// Stopping (or out of time), not a fault of the account.
			return destinations.Result{}, &destinations.Error{Reason: ctxReason(ctx), Err: err}
		}
		return destinations.Result{}, err
	}
	send, index := unsuperseded(items, superseded)
	var res destinations.Result
	if len(send) > 0 {
		if res, err = dest.Send(ctx, destinations.Batch{AdAccountID: account, Items: send}); err != nil {
			return destinations.Result{}, err
		}
	}
	out := destinations.Result{Items: make([]destinations.ItemResult, len(items)), Answered: res.Answered}
	processed := make([]bool, len(items))
	for i, j := range index {
		out.Items[i] = destinations.ItemResult{Processed: true}
		if j >= 0 {
			out.Items[i] = res.Items[j]
		}
		processed[i] = j >= 0 && res.Items[j].Processed
	}
	if err := l.s.record(items, processed, lists); err != nil {
		return destinations.Result{}, err
	}
	return out, nil
}

// Flush adds the member counts to the state bucket.
func (l *ListApplier) Flush(ctx context.Context) error { return l.s.flushMembers(ctx) }

// unsuperseded returns the items that still have something to send, and for
// each item its index among them (-1 when superseded).
func unsuperseded(items []destinations.Item, superseded []bool) ([]destinations.Item, []int) {
	index := make([]int, len(items))
	if !slices.Contains(superseded, true) {
		for i := range index {
			index[i] = i
		}
		return items, index
	}
	send := make([]destinations.Item, 0, len(items))
	for i := range items {
		index[i] = -1
		if !superseded[i] {
			index[i] = len(send)
			send = append(send, items[i])
		}
	}
	return send, index
}

// ctxReason classifies the end of ctx: cancelled is a shutdown, a deadline
// a timeout.
func ctxReason(ctx context.Context) destinations.Reason {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return destinations.ReasonTimeout
	}
	return destinations.ReasonShutdown
}
