package connector

import (
	"slices"
	"sync"
	"time"
)

// userOrder keeps the changes of one user in one cohort in stream order: a
// message is sent only when no earlier message of the same (cohort, user)
// is still outstanding in this process — delivered and not yet acked or
// terminated, whether its call is in flight or it was nak'd and waits for
// its redelivery. A later message (an exit) arriving meanwhile is held back
// with a delay that brings it back just after the earlier one (the enter),
// so an exit never reaches Pinterest before its enter, even when the
// enter's first attempt failed and is being retried.
//
// The state is in memory; what must survive a restart (a message nak'd and
// waiting for redelivery, whose later changes may be published after the
// restart) is also written to the order bucket, see holds.go.
type userOrder struct {
	mu      sync.Mutex
	keys    map[string]*keyState
	minHold time.Duration // shortest hold: the earlier message is in flight
	stale   time.Duration // a nak'd message not seen again for this long is forgotten
}

type keyState struct {
	seqs      []uint64  // outstanding stream sequences, ascending
	retryAt   time.Time // when the oldest nak'd one is due back
	persisted []uint64  // those of seqs with a record in the order bucket
	forgetAt  time.Time // set by expect: forget the key after this
}

func newUserOrder(minHold, stale time.Duration) *userOrder {
	return &userOrder{keys: map[string]*keyState{}, minHold: minHold, stale: stale}
}

func orderKey(cohortID, userID string) string { return cohortID + "\x00" + userID }

// admit reports whether the message seq of key may be sent now; if not, it
// returns how long to hold it back. An admitted message is outstanding
// until done or retry is called for it.
func (o *userOrder) admit(key string, seq uint64, now time.Time) (bool, time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	st := o.keys[key]
	if st == nil {
		o.keys[key] = &keyState{seqs: []uint64{seq}}
		return true, 0
	}
	// A nak'd message that never came back (another replica took it, or it
	// was deleted) must not hold its key forever.
	// (Its record, if any, is left to the bucket's TTL.)
	if (!st.retryAt.IsZero() && now.Sub(st.retryAt) > o.stale) || (!st.forgetAt.IsZero() && now.After(st.forgetAt)) {
		st.seqs, st.retryAt, st.persisted, st.forgetAt = st.seqs[:0], time.Time{}, st.persisted[:0], time.Time{}
	}
	i, found := slices.BinarySearch(st.seqs, seq)
	if i > 0 { // an earlier message of this key is outstanding
		return false, max(st.retryAt.Sub(now)+o.minHold, o.minHold)
	}
	if !found {
		st.seqs = slices.Insert(st.seqs, i, seq)
	}
	return true, 0
}

// done forgets seq (acked or terminated). It reports whether seq had a
// record in the order bucket, which the caller then deletes.
func (o *userOrder) done(key string, seq uint64) (unpersist bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	st := o.keys[key]
	if st == nil {
		return false
	}
	if i, found := slices.BinarySearch(st.seqs, seq); found {
		st.seqs = slices.Delete(st.seqs, i, i+1)
	}
	if i := slices.Index(st.persisted, seq); i >= 0 {
		st.persisted = slices.Delete(st.persisted, i, i+1)
		unpersist = true
	}
	if len(st.seqs) == 0 {
		delete(o.keys, key)
	}
	return unpersist
}

// retry records that seq was nak'd and is due back at due; it stays
// outstanding, so later messages of its key keep waiting for it. It
// reports whether the caller must write a record of it to the order bucket
// (the oldest outstanding message of its key, not written yet), so that a
// restart does not forget it.
func (o *userOrder) retry(key string, seq uint64, due time.Time) (persist bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	st := o.keys[key]
	if st == nil || len(st.seqs) == 0 || st.seqs[0] != seq {
		return false
	}
	st.retryAt, st.forgetAt = due, time.Time{}
	if slices.Contains(st.persisted, seq) {
		return false
	}
	st.persisted = append(st.persisted, seq)
	return true
}

// load registers a record read from the order bucket at startup: seq is
// outstanding until it is seen and settled, or until due has passed by the
// stale horizon.
func (o *userOrder) load(key string, seq uint64, due time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	st, _ := o.register(key, seq, due)
	if !slices.Contains(st.persisted, seq) {
		st.persisted = append(st.persisted, seq)
	}
}

// expect registers seq, a message that may still be unacknowledged from
// before a restart (in flight when the process died): it is outstanding
// until it is seen and settled, or until its AckWait must have expired
// (until); later messages of its key are held back until then. A seq known
// from its order record keeps the record's due time.
func (o *userOrder) expect(key string, seq uint64, until time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if st, known := o.register(key, seq, until); !known {
		if f := until.Add(o.minHold); f.After(st.forgetAt) {
			st.forgetAt = f
		}
	}
}

// register makes seq outstanding for key, due back at due; known reports
// that it already was (and then nothing changes). o.mu must be held.
func (o *userOrder) register(key string, seq uint64, due time.Time) (st *keyState, known bool) {
	st = o.keys[key]
	if st == nil {
		st = &keyState{}
		o.keys[key] = st
	}
	i, found := slices.BinarySearch(st.seqs, seq)
	if found {
		return st, true
	}
	st.seqs = slices.Insert(st.seqs, i, seq)
	if due.After(st.retryAt) {
		st.retryAt = due
	}
	return st, false
}
