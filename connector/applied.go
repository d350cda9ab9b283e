package connector

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/nats-io/nats.go/jetstream"

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
// recent ones in memory (a bounded LRU). Before a call, a list operation
// older than what the list already reflects is dropped from the item; after
// Pinterest accepted the call, the applied times are written (all publishes
// first, then their acks together). A change with the same ts as the applied
// one is applied again: it is the same change redelivered, and ADD and
// REMOVE are idempotent.
//
// Events mode needs none of this: an event is a fact at its time, and
// Pinterest deduplicates on event_id.

// appliedCacheSize bounds the in-memory part of the applied times.
const appliedCacheSize = 200_000

// appliedLookups is how many bucket reads run at once for one batch.
const appliedLookups = 16

// appliedStore is the applied time per (customer list, user). It is used by
// the lanes' senders, several at once; per (list, user) one change at a time
// is in flight (the order book), so check-then-record needs no lock.
type appliedStore struct {
	kv     jetstream.KeyValue // nil: memory only (tests, no state bucket)
	js     jetstream.JetStream
	bucket string
	cache  *lru.Cache[string, int64] // key → applied ts, Unix ns
}

func newAppliedStore(js jetstream.JetStream, kv jetstream.KeyValue) *appliedStore {
	cache, _ := lru.New[string, int64](appliedCacheSize) // only fails for a size ≤ 0
	s := &appliedStore{kv: kv, js: js, cache: cache}
	if kv != nil {
		s.bucket = kv.Bucket()
	}
	return s
}

// appliedKey is the bucket key of a user's applied time in a list.
func appliedKey(listID, userID string) string {
	sum := sha256.Sum256([]byte(userID))
	return "applied." + listID + "." + hex.EncodeToString(sum[:16])
}

// drop removes from each item the customer lists that already reflect a
// newer change of its user, and reports which items are left with nothing
// to send (superseded).
func (s *appliedStore) drop(ctx context.Context, items []destinations.Item) (superseded []bool, err error) {
	keys := listKeys(items)
	if len(keys) == 0 {
		return make([]bool, len(items)), nil
	}
	applied, err := s.lookup(ctx, keys)
	if err != nil {
		return nil, err
	}
	superseded = make([]bool, len(items))
	for i := range items {
		it := &items[i]
		if len(it.CustomerLists) == 0 {
			continue
		}
		ts := it.Membership.TS.UnixNano()
		kept := it.CustomerLists[:0:0]
		for _, l := range it.CustomerLists {
			if applied[appliedKey(l, it.Membership.UserID)] <= ts {
				kept = append(kept, l)
			}
		}
		it.CustomerLists = kept
		superseded[i] = it.ListsOnly && len(kept) == 0
	}
	return superseded, nil
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

// lookup returns the applied time of each key (0 when none), from memory or
// else from the bucket, appliedLookups reads at a time.
func (s *appliedStore) lookup(ctx context.Context, keys map[string]struct{}) (map[string]int64, error) {
	out := make(map[string]int64, len(keys))
	var missing []string
	for k := range keys {
		if ts, ok := s.cache.Get(k); ok {
			out[k] = ts
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
			ts, err := s.read(ctx, k)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			out[k] = ts
			s.cache.Add(k, ts)
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return nil, fmt.Errorf("reading applied changes: %w", errors.Join(errs...))
	}
	return out, nil
}

func (s *appliedStore) read(ctx context.Context, key string) (int64, error) {
	e, err := s.kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return 0, nil
	case err != nil:
		return 0, err
	case len(e.Value()) != 8:
		return 0, fmt.Errorf("applied change %s: %d bytes, want 8", key, len(e.Value()))
	}
	return int64(binary.BigEndian.Uint64(e.Value())), nil
}

// recordTimeout bounds the wait for the acks of one batch's records.
const recordTimeout = 5 * time.Second

// record stores the applied time of every list operation of the processed
// items. An error means some were not stored: the caller has the items
// redelivered rather than acked (sending them again is harmless).
func (s *appliedStore) record(items []destinations.Item, processed []bool) error {
	var futures []jetstream.PubAckFuture
	for i, it := range items {
		if !processed[i] {
			continue
		}
		ts := it.Membership.TS.UnixNano()
		for _, l := range it.CustomerLists {
			k := appliedKey(l, it.Membership.UserID)
			if prev, ok := s.cache.Get(k); ok && prev > ts {
				continue
			}
			s.cache.Add(k, ts)
			if s.kv == nil {
				continue
			}
			f, err := s.js.PublishAsync("$KV."+s.bucket+"."+k, binary.BigEndian.AppendUint64(nil, uint64(ts)))
			if err != nil {
				return fmt.Errorf("recording applied change: %w", err)
			}
			futures = append(futures, f)
		}
	}
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
