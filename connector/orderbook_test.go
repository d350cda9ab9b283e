package connector

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var bookNow = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

func newTestBook() *orderBook { return newOrderBook(time.Second, time.Minute, time.Hour) }

func TestOrderBookAdmitsTheFirstChangeAndHoldsALaterOneUntilTheFirstIsReleased(t *testing.T) {
	b := newTestBook()
	k := orderKey{"A", "c1", "u1"}
	ok, _, _ := b.admit(k, 10, bookNow)
	require.True(t, ok, "the enter")
	ok, wait, behindParked := b.admit(k, 20, bookNow)
	assert.False(t, ok, "the exit while its enter is in flight")
	assert.Equal(t, time.Second, wait, "the shortest wait behind a change in flight")
	assert.False(t, behindParked)

	unrecord, next := b.release(k, 10)
	assert.False(t, unrecord)
	assert.Zero(t, next.seq)
	ok, _, _ = b.admit(k, 20, bookNow)
	assert.True(t, ok, "the exit once its enter was accepted")
}

func TestOrderBookKeepsEachAccountsOrderApart(t *testing.T) {
	// The enter was accepted by A but waits parked for B: A may take the
	// exit, B may not (finding L2: one entry per user let B's exit overtake).
	b := newTestBook()
	ka, kb := orderKey{"A", "c1", "u1"}, orderKey{"B", "c1", "u1"}
	for _, k := range []orderKey{ka, kb} {
		ok, _, _ := b.admit(k, 10, bookNow)
		require.True(t, ok)
	}
	b.release(ka, 10)
	assert.True(t, b.wait(kb, 10, time.Time{}, true), "a parked change gets an order record")

	ok, _, _ := b.admit(ka, 20, bookNow)
	assert.True(t, ok, "A: its enter is accepted")
	ok, _, behindParked := b.admit(kb, 20, bookNow)
	assert.False(t, ok, "B: its enter still waits parked")
	assert.True(t, behindParked, "so the exit is parked behind it")
}

func TestOrderBookMakesALaterChangeWaitUntilTheEarlierIsDueBack(t *testing.T) {
	b := newTestBook()
	k := orderKey{"A", "c1", "u1"}
	b.admit(k, 10, bookNow)
	due := bookNow.Add(30 * time.Second)
	assert.True(t, b.wait(k, 10, due, false), "the oldest waiting change is recorded")
	assert.False(t, b.wait(k, 10, due, false), "but only once")

	ok, wait, _ := b.admit(k, 20, bookNow)
	assert.False(t, ok)
	assert.Equal(t, 31*time.Second, wait, "until just after the earlier one is due back")

	ok, _, _ = b.admit(k, 10, due)
	assert.True(t, ok, "the earlier change, redelivered, is admitted again")
	unrecord, next := b.release(k, 10)
	assert.True(t, unrecord, "its record is deleted once it is accepted")
	assert.Zero(t, next.seq)
}

func TestOrderBookRecordsTheNextWaitingChangeWhenTheRecordedOneIsReleased(t *testing.T) {
	b := newTestBook()
	k := orderKey{"A", "c1", "u1"}
	b.admit(k, 10, bookNow)
	b.register(k, 20) // parked behind it
	require.True(t, b.wait(k, 10, bookNow.Add(time.Second), false))
	assert.False(t, b.wait(k, 20, time.Time{}, true), "not the oldest: no record of its own yet")

	unrecord, next := b.release(k, 10)
	assert.False(t, unrecord, "the key keeps a record")
	assert.Equal(t, uint64(20), next.seq, "now of the parked change")
	assert.True(t, next.parked)
}

func TestOrderBookForgetsAChangeThatNeverCameBack(t *testing.T) {
	b := newTestBook()
	k := orderKey{"A", "c1", "u1"}
	b.admit(k, 10, bookNow)
	b.wait(k, 10, bookNow, false)
	ok, _, _ := b.admit(k, 20, bookNow.Add(30*time.Second))
	assert.False(t, ok, "within the stale horizon")
	ok, _, _ = b.admit(k, 20, bookNow.Add(2*time.Minute))
	assert.True(t, ok, "past it: another replica took it, or it was deleted")
}

func TestOrderBookHoldsLaterChangesOfAMessageExpectedBackAfterARestart(t *testing.T) {
	b := newTestBook()
	k := orderKey{"A", "c1", "u1"}
	until := bookNow.Add(10 * time.Second)
	b.expect(k, 10, until)
	ok, wait, _ := b.admit(k, 20, bookNow)
	assert.False(t, ok)
	assert.Equal(t, 11*time.Second, wait)
	ok, _, _ = b.admit(k, 20, bookNow.Add(time.Hour))
	assert.False(t, ok, "no timer forgets it: only forgetExpected does")
	ok, _, _ = b.admit(k, 10, bookNow.Add(time.Second))
	assert.True(t, ok, "the expected message itself, redelivered")
	ok, _, _ = b.admit(orderKey{"A", "c1", "u2"}, 30, bookNow)
	assert.True(t, ok, "other users are not held")
}

func TestOrderBookForgetsExpectedChangesNotSeenAgainButKeepsTheOthers(t *testing.T) {
	b := newTestBook()
	seen, gone, recorded := orderKey{"A", "c1", "seen"}, orderKey{"A", "c1", "gone"}, orderKey{"A", "c1", "recorded"}
	until := bookNow.Add(10 * time.Second)
	b.expect(seen, 10, until)
	b.expect(gone, 11, until)
	b.load(recorded, 12, until, false)
	b.expect(recorded, 12, until)
	ok, _, _ := b.admit(seen, 10, bookNow.Add(9*time.Second))
	require.True(t, ok, "redelivered: in flight again")

	b.forgetExpected()
	ok, _, _ = b.admit(gone, 21, bookNow.Add(11*time.Second))
	assert.True(t, ok, "acked before the restart: forgotten")
	ok, _, _ = b.admit(seen, 20, bookNow.Add(11*time.Second))
	assert.False(t, ok, "seen again and in flight: still held")
	ok, _, _ = b.admit(recorded, 22, bookNow.Add(11*time.Second))
	assert.False(t, ok, "known from its order record: still held")
}

func TestOrderBookLoadsParkedRecordsSoLaterChangesAreParkedBehindThem(t *testing.T) {
	b := newTestBook()
	k := orderKey{"B", "c1", "u1"}
	b.load(k, 10, time.Time{}, true)
	ok, _, behindParked := b.admit(k, 20, bookNow)
	assert.False(t, ok)
	assert.True(t, behindParked)
	unrecord, _ := b.release(k, 10)
	assert.True(t, unrecord, "a loaded record is deleted when its change is settled")
}

func TestOutcomeMergePrefersRejectThenTheLongestRetry(t *testing.T) {
	retry := func(d time.Duration) outcome { return outcome{kind: kindRetry, reason: "server_error", delay: d} }
	reject := outcome{kind: kindReject, reason: reasonRejected}
	cases := []struct {
		name string
		a, b outcome
		want outcome
	}{
		{"nothing merged with accepted is accepted", outcome{}, accepted, accepted},
		{"accepted merged with nothing stays accepted", accepted, outcome{}, accepted},
		{"a retry wins over accepted", accepted, retry(time.Second), retry(time.Second)},
		{"a retry wins over parked", parked, retry(time.Second), retry(time.Second)},
		{"the longer of two retries wins", retry(time.Second), retry(time.Minute), retry(time.Minute)},
		{"the longer retry wins in either order", retry(time.Minute), retry(time.Second), retry(time.Minute)},
		{"a rejection wins over a retry", retry(time.Minute), reject, reject},
		{"a retry does not undo a rejection", reject, retry(time.Minute), reject},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { assert.Equal(t, tc.want, tc.a.merge(tc.b)) })
	}
}

func TestOrderBookKeepsTheChangeItHeldBackInItsPlace(t *testing.T) {
	// enter 10 in flight, exit 20 held behind it, a new enter 30 arriving
	// after 10 is accepted but before 20 comes back: 30 must wait for 20.
	b := newTestBook()
	k := orderKey{"A", "c1", "u1"}
	ok, _, _ := b.admit(k, 10, bookNow)
	require.True(t, ok)
	ok, _, _ = b.admit(k, 20, bookNow)
	require.False(t, ok)
	b.hold(k, 20, bookNow)
	assert.False(t, b.wait(k, 20, bookNow.Add(time.Second), false), "not the oldest: no record yet")

	_, next := b.release(k, 10)
	assert.Equal(t, uint64(20), next.seq, "the held change is now the oldest and needs a record")
	ok, _, _ = b.admit(k, 30, bookNow)
	assert.False(t, ok, "the new enter overtook the held exit")
	ok, _, _ = b.admit(k, 20, bookNow)
	assert.True(t, ok, "the held exit, back")
}

func TestOrderBookNeverForgetsAChangeBackInFlight(t *testing.T) {
	// A change nak'd, then redelivered into a slow lane: it is in flight
	// for longer than the wait after which a waiting key is forgotten.
	b := newTestBook()
	k := orderKey{"A", "c1", "u1"}
	b.admit(k, 10, bookNow)
	b.wait(k, 10, bookNow.Add(time.Second), false)
	ok, _, _ := b.admit(k, 10, bookNow.Add(time.Second))
	require.True(t, ok, "back in flight")
	later := bookNow.Add(time.Second + 2*b.stale)
	ok, _, _ = b.admit(k, 20, later)
	assert.False(t, ok, "a change still in flight was forgotten")
}
