package connector

import (
	"slices"
	"time"
)

// The order book keeps the changes of one user in one cohort in stream order
// for each ad account (target) separately: a change is sent to an account
// only when no earlier change of the same user and cohort is still
// outstanding for that account — in flight, waiting for redelivery, or
// parked. Accounts are independent: an account that already accepted an
// enter does not let the exit overtake the enter at another account that
// has not.
//
// A change that may not go yet waits:
//   - behind a parked change: it is parked too, behind it (see parking.go);
//   - otherwise: it is redelivered just after the earlier change is due
//     back (waiting_for_earlier).
//
// Positions are origin sequences (a parked copy has its original's), so the
// main consumer and the parking consumers speak of the same message.
//
// The book lives in memory and is used by the connector's loop goroutine
// only: it has no lock. What must survive a restart is written to the order
// bucket as order records (orderrecords.go): the oldest outstanding change
// of a key once it waits for redelivery or is parked.

// orderKey is one user in one cohort at one ad account.
type orderKey struct{ account, cohort, user string }

type orderEntry struct {
	seq     uint64
	retryAt time.Time // when it is due back after a nak; zero while in flight
	parked  bool      // it waits in its account's parking consumer
	// expected: read back at startup, maybe still unacknowledged from
	// before the restart, not seen since (see expect).
	expected bool
}

type orderState struct {
	entries  []orderEntry // outstanding changes, ascending seq
	recorded uint64       // seq of the change with an order record, 0 if none
	forgetAt time.Time    // after this the key is forgotten (see stale)
}

type orderBook struct {
	keys map[orderKey]*orderState
	// spare are states of forgotten keys, kept for reuse: most changes
	// are outstanding for one call, and a state per change would be an
	// allocation per message.
	spare   []*orderState
	minWait time.Duration // shortest wait behind an earlier change
	// stale: a change nak'd and not seen again this long after it was due
	// is forgotten (another replica took it, or it was deleted), so that it
	// cannot hold its key forever. A parked change is forgotten after
	// staleParked (the parking consumer may wait out a long outage).
	stale, staleParked time.Duration
}

func newOrderBook(minWait, stale, staleParked time.Duration) *orderBook {
	return &orderBook{keys: map[orderKey]*orderState{}, minWait: minWait, stale: stale, staleParked: staleParked}
}

// admit reports whether change seq of k may be sent now. If it may not,
// wait is how long to hold it back and behindParked whether an earlier
// change it waits for is parked. An admitted change is outstanding until
// release (or stays so through wait and park).
func (b *orderBook) admit(k orderKey, seq uint64, now time.Time) (ok bool, wait time.Duration, behindParked bool) {
	st := b.current(k, now)
	if st == nil {
		st = b.newState()
		st.entries = append(st.entries, orderEntry{seq: seq})
		b.keys[k] = st
		return true, 0, false
	}
	i, found := slices.BinarySearchFunc(st.entries, seq, func(e orderEntry, s uint64) int { return cmpSeq(e.seq, s) })
	if i > 0 {
		var due time.Time
		for _, e := range st.entries[:i] {
			behindParked = behindParked || e.parked
			if e.retryAt.After(due) {
				due = e.retryAt
			}
		}
		return false, max(due.Sub(now), 0) + b.minWait, behindParked
	}
	if !found {
		st.entries = slices.Insert(st.entries, 0, orderEntry{seq: seq})
	} else {
		// In flight again. A parked change stays parked: it lives in its
		// parking consumer until it is accepted, so changes behind it are
		// parked behind it rather than redelivered over and over.
		st.entries[0].retryAt, st.entries[0].expected = time.Time{}, false
	}
	st.forgetAt = time.Time{} // in flight: never forgotten (a slow lane may hold it long)
	return true, 0, false
}

// hold makes change seq of k outstanding without sending it now: it waits
// for its redelivery (behind an earlier change, or until its customer list
// exists), and later changes of k wait for it in turn. Were it not held, a
// later change coming first after the earlier one is settled would
// overtake it.
func (b *orderBook) hold(k orderKey, seq uint64, now time.Time) {
	b.current(k, now)
	st := b.register(k, seq)
	i := slices.IndexFunc(st.entries, func(e orderEntry) bool { return e.seq == seq })
	st.entries[i].expected = false // seen again
}

// current is k's state, nil if it has none; a key whose changes all waited
// past forgetAt is forgotten first (see stale).
func (b *orderBook) current(k orderKey, now time.Time) *orderState {
	st := b.keys[k]
	if st != nil && !st.forgetAt.IsZero() && now.After(st.forgetAt) {
		st.entries, st.forgetAt = st.entries[:0], time.Time{}
	}
	return st
}

func cmpSeq(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// release forgets change seq of k (accepted, or set aside in the dead-letter
// stream). It reports the order record to delete (unrecord) and the change
// now oldest that waits or is parked and so needs a record of its own
// (record, 0 for none).
func (b *orderBook) release(k orderKey, seq uint64) (unrecord bool, record orderEntry) {
	st := b.keys[k]
	if st == nil {
		return false, orderEntry{}
	}
	if len(st.entries) == 1 && st.entries[0].seq == seq { // the usual case, without a search
		st.entries = st.entries[:0]
	} else {
		st.entries = slices.DeleteFunc(st.entries, func(e orderEntry) bool { return e.seq == seq })
	}
	if st.recorded == seq {
		st.recorded, unrecord = 0, true
	}
	if len(st.entries) == 0 {
		b.forget(k, st)
		return unrecord, orderEntry{}
	}
	if first := st.entries[0]; st.recorded == 0 && (first.parked || !first.retryAt.IsZero()) {
		st.recorded = first.seq
		return false, first
	}
	return unrecord, orderEntry{}
}

// wait records that change seq of k was nak'd and is due back at due (zero:
// unknown), and with parked that it lives in k's parking consumer: it stays
// outstanding, and later changes of k keep waiting for it. It reports whether the caller must write an
// order record for it: it is the oldest outstanding change of k and has none.
func (b *orderBook) wait(k orderKey, seq uint64, due time.Time, parked bool) (record bool) {
	st := b.keys[k]
	if st == nil {
		return false
	}
	i := slices.IndexFunc(st.entries, func(e orderEntry) bool { return e.seq == seq })
	if i < 0 {
		return false
	}
	st.entries[i].retryAt = due
	st.entries[i].parked = st.entries[i].parked || parked
	st.forgetAt = b.forgetAfter(st)
	if i != 0 || st.recorded == seq {
		return false
	}
	st.recorded = seq
	return true
}

// forgetAfter is when a key whose changes all wait is forgotten.
func (b *orderBook) forgetAfter(st *orderState) time.Time {
	var latest time.Time
	for _, e := range st.entries {
		switch {
		case e.parked:
			// A parked change has no due time: it comes back when its
			// account answers again.
			latest = time.Now().Add(b.staleParked)
		case e.retryAt.IsZero():
			return time.Time{} // in flight: never forgotten
		default:
			if t := e.retryAt.Add(b.stale); t.After(latest) {
				latest = t
			}
		}
	}
	return latest
}

// load registers an order record read at startup: change seq of k waits
// (due back at due) or is parked, and later changes wait for it.
func (b *orderBook) load(k orderKey, seq uint64, due time.Time, parked bool) {
	st := b.register(k, seq)
	b.wait(k, seq, due, parked)
	if st.recorded == 0 || st.recorded == seq {
		st.recorded = seq
	}
}

// expect registers change seq of k, which may still be unacknowledged from
// before a restart (in flight when the process died): later changes of k
// wait for it until it is seen again, or until forgetExpected says it will
// not come back. Its AckWait expires by until, when JetStream redelivers it.
func (b *orderBook) expect(k orderKey, seq uint64, until time.Time) {
	st := b.register(k, seq)
	i := slices.IndexFunc(st.entries, func(e orderEntry) bool { return e.seq == seq })
	if e := &st.entries[i]; e.retryAt.IsZero() && !e.parked {
		e.retryAt, e.expected = until, true
	}
}

// forgetExpected forgets every change registered by expect and not seen
// since: it was acknowledged before the restart. The caller knows it when a
// delivery arrives after every expected change's AckWait has expired:
// JetStream hands out expired deliveries before any other, so one still
// unacknowledged would have come back first.
func (b *orderBook) forgetExpected() {
	for k, st := range b.keys {
		st.entries = slices.DeleteFunc(st.entries, func(e orderEntry) bool { return e.expected })
		if len(st.entries) == 0 {
			b.forget(k, st)
		}
	}
}

// register makes seq outstanding for k if it is not yet.
func (b *orderBook) register(k orderKey, seq uint64) *orderState {
	st := b.keys[k]
	if st == nil {
		st = b.newState()
		b.keys[k] = st
	}
	i, found := slices.BinarySearchFunc(st.entries, seq, func(e orderEntry, s uint64) int { return cmpSeq(e.seq, s) })
	if !found {
		st.entries = slices.Insert(st.entries, i, orderEntry{seq: seq})
	}
	return st
}

// maxSpare bounds the states kept for reuse.
const maxSpare = 4096

// newState returns an empty state, a spare one if there is.
func (b *orderBook) newState() *orderState {
	if n := len(b.spare); n > 0 {
		st := b.spare[n-1]
		b.spare = b.spare[:n-1]
		return st
	}
	return &orderState{entries: make([]orderEntry, 0, 2)}
}

// forget drops k, keeping its (empty) state for reuse.
func (b *orderBook) forget(k orderKey, st *orderState) {
	delete(b.keys, k)
	if len(b.spare) < maxSpare {
		*st = orderState{entries: st.entries[:0]}
		b.spare = append(b.spare, st)
	}
}
