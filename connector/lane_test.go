package connector

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/destinations"
)

// laneRig runs one lane with scripted send and hold functions and records
// what it reports, without NATS or HTTP.
type laneRig struct {
	l *lane

	mu       sync.Mutex
	calls    [][]laneItem // batches given to send
	held     []laneItem   // items given to hold
	reported map[*delivery]outcome
	failing  []bool

	// send's behaviour: err for every call while set; block until release
	// is closed when blocking; a call that succeeds without the
	// destination's answer (nothing left to send) while unanswered.
	sendErr    error
	blocking   bool
	unanswered bool
	release    chan struct{}
	stopping   chan struct{} // closed when the test stops the lane
	done       chan struct{}
}

func newLaneRig(t *testing.T, batchSize int, period time.Duration) *laneRig {
	return newGatedLaneRig(t, batchSize, period, nil)
}

// newGatedLaneRig is newLaneRig whose sender may take a batch only for a
// value received from turns (the call budget allowing one call), when
// turns is not nil.
func newGatedLaneRig(t *testing.T, batchSize int, period time.Duration, turns chan struct{}) *laneRig {
	r := &laneRig{reported: map[*delivery]outcome{}, release: make(chan struct{}), stopping: make(chan struct{}), done: make(chan struct{})}
	o := &Options{BatchSize: batchSize, BatchPeriod: period, MaxInFlight: 1, SlowCall: 50 * time.Millisecond, Logger: zerolog.Nop()}
	fn := laneFuncs{
		send: func(ctx context.Context, items []laneItem) ([]outcome, bool, error) {
			r.mu.Lock()
			r.calls = append(r.calls, items)
			block := r.blocking
			r.mu.Unlock()
			if block {
				<-r.release
			}
			r.mu.Lock()
			err, answered := r.sendErr, !r.unanswered // as Pinterest answers when the call ends
			r.mu.Unlock()
			if err != nil {
				return nil, false, err
			}
			out := make([]outcome, len(items))
			for i := range out {
				out[i] = accepted
			}
			return out, answered, nil
		},
		hold: func(items []laneItem, err error) []outcome {
			r.mu.Lock()
			r.held = append(r.held, items...)
			r.mu.Unlock()
			out := make([]outcome, len(items))
			for i := range out {
				out[i] = parked
			}
			return out
		},
		report: func(items []laneItem, out []outcome) {
			r.mu.Lock()
			defer r.mu.Unlock()
			for i, it := range items {
				r.reported[it.d] = out[i]
			}
		},
	}
	if turns != nil {
		fn.ready = func(ctx context.Context) error {
			select {
			case <-turns:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			case <-r.stopping: // no more turns are given
				return nil
			}
		}
	}
	r.l = newLane("A", []string{"1"}, fn, o, context.Background(), func(_ string, state AccountState) {
		r.mu.Lock()
		r.failing = append(r.failing, state != AccountHealthy)
		r.mu.Unlock()
	}, newBatchPool(batchSize))
	go func() {
		r.l.run()
		close(r.done)
	}()
	t.Cleanup(func() {
		r.unblock()
		r.stop(t)
	})
	return r
}

func (r *laneRig) unblock() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.blocking {
		r.blocking = false
		close(r.release)
	}
}

func (r *laneRig) stop(t *testing.T) {
	select {
	case <-r.done:
		return
	default:
	}
	close(r.stopping)
	close(r.l.in)
	select {
	case <-r.done:
	case <-time.After(5 * time.Second):
		t.Fatal("lane did not stop")
	}
}

func (r *laneRig) put(n int) []*delivery {
	ds := make([]*delivery, n)
	for i := range ds {
		ds[i] = &delivery{}
		r.l.in <- laneItem{d: ds[i], parkable: true}
	}
	return ds
}

func (r *laneRig) reportedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.reported)
}

func (r *laneRig) outcome(d *delivery) outcome {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reported[d]
}

func TestALaneCallsAsSoonAsItMayWithWhatAccumulatedMeanwhile(t *testing.T) {
	turns := make(chan struct{})
	r := newGatedLaneRig(t, 10, time.Hour, turns) // the period never flushes here
	r.put(3)
	// The lane has read the 3 (no sender takes a batch without a turn).
	require.Eventually(t, func() bool { return len(r.l.in) == 0 }, 5*time.Second, time.Millisecond)
	turns <- struct{}{} // the budget allows a call: it carries the 3, not waiting for more
	require.Eventually(t, func() bool { return r.reportedCount() == 3 }, 5*time.Second, time.Millisecond)

	// While the budget allows no call, items accumulate up to full
	// batches; each call then carries what is there. 20 of the 25 put and
	// 10 of them still in the lane's input: the lane holds a full batch of
	// the other 10 (an input merely full could be a batch of 1 not yet
	// topped up, and the next call would carry that).
	var pushed atomic.Int64
	go func() {
		for range 25 {
			r.l.in <- laneItem{d: &delivery{}, parkable: true}
			pushed.Add(1)
		}
	}()
	require.Eventually(t, func() bool { return pushed.Load() == 20 && len(r.l.in) == cap(r.l.in) }, 5*time.Second, time.Millisecond,
		"items accumulate while no call may be made")
	for r.reportedCount() < 28 {
		select {
		case turns <- struct{}{}:
		case <-time.After(5 * time.Second):
			t.Fatalf("no sender waited for a turn; %d reported", r.reportedCount())
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	assert.Equal(t, []int{3, 10}, batchSizes(r.calls[:2]), "the first call at once with 3, then a full batch")
	total := 0
	for _, c := range r.calls[1:] {
		assert.LessOrEqual(t, len(c), 10, "no call above the batch size")
		total += len(c)
	}
	assert.Equal(t, 25, total)
	assert.Empty(t, r.held)
}

func batchSizes(calls [][]laneItem) []int {
	out := make([]int, len(calls))
	for i, c := range calls {
		out[i] = len(c)
	}
	return out
}

func TestAFailingLaneProbesWithOneCallAndHoldsTheRest(t *testing.T) {
	r := newLaneRig(t, 1, time.Millisecond)
	r.mu.Lock()
	r.sendErr = &destinations.Error{Reason: destinations.ReasonServer, StatusCode: 503}
	r.mu.Unlock()
	first := r.put(1)
	require.Eventually(t, func() bool { return r.reportedCount() == 1 }, 5*time.Second, time.Millisecond)
	assert.Equal(t, parked, r.outcome(first[0]), "the failed call's item is held (parked)")
	require.Error(t, r.l.failed(), "the lane is failing")

	// While a probe call hangs, every other batch is held at once.
	r.mu.Lock()
	r.blocking = true
	r.mu.Unlock()
	r.put(5)
	// The four may be held before the fifth's probe call starts: wait for
	// both.
	require.Eventually(t, func() bool {
		r.mu.Lock()
		calls := len(r.calls)
		r.mu.Unlock()
		return r.reportedCount() == 5 && calls == 2
	}, 5*time.Second, time.Millisecond, "four held at once while the fifth probes (one failed call, one probe in flight)")
	r.mu.Lock()
	r.sendErr = nil
	r.mu.Unlock()
	r.unblock()
	require.Eventually(t, func() bool { return r.reportedCount() == 6 }, 5*time.Second, time.Millisecond)
	require.NoError(t, r.l.failed(), "the probe's answer makes the lane healthy")
	r.mu.Lock()
	assert.Len(t, r.calls, 2, "no call but the probe while it was in flight: the four were held")
	assert.Equal(t, []bool{true, false}, r.failing, "failing once, recovered once")
	r.mu.Unlock()

	after := r.put(3)
	require.Eventually(t, func() bool { return r.reportedCount() == 9 }, 5*time.Second, time.Millisecond)
	for _, d := range after {
		assert.Equal(t, accepted, r.outcome(d), "sent again once healthy")
	}
}

// A call that sends nothing (every item already applied to its list)
// tells nothing of the account: a failing lane stays failing until a call
// is answered (found by fault row C4: "recovered" after 3 ms in the middle
// of an outage, then failing again).
func TestAFailingLaneRecoversOnlyOnAnAnsweredCall(t *testing.T) {
	r := newLaneRig(t, 1, time.Millisecond)
	r.mu.Lock()
	r.sendErr = &destinations.Error{Reason: destinations.ReasonServer, StatusCode: 503}
	r.mu.Unlock()
	r.put(1)
	require.Eventually(t, func() bool { return r.reportedCount() == 1 }, 5*time.Second, time.Millisecond)
	require.Error(t, r.l.failed())

	r.mu.Lock()
	r.sendErr, r.unanswered = nil, true
	r.mu.Unlock()
	r.put(1)
	require.Eventually(t, func() bool { return r.reportedCount() == 2 }, 5*time.Second, time.Millisecond)
	require.Error(t, r.l.failed(), "nothing was sent: still failing")

	r.mu.Lock()
	r.unanswered = false
	r.mu.Unlock()
	r.put(1)
	require.Eventually(t, func() bool { return r.reportedCount() == 3 }, 5*time.Second, time.Millisecond)
	require.NoError(t, r.l.failed(), "an answered call: healthy")
	r.mu.Lock()
	defer r.mu.Unlock()
	assert.Equal(t, []bool{true, false}, r.failing, "failing once, recovered once")
}

func TestACongestedLaneHoldsBatchesInsteadOfMakingItsProducerWait(t *testing.T) {
	r := newLaneRig(t, 1, time.Millisecond)
	r.mu.Lock()
	r.blocking = true // Pinterest hangs: the only sender is stuck
	r.mu.Unlock()
	r.put(1)
	require.Eventually(t, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.calls) == 1
	}, 5*time.Second, time.Millisecond)
	// More than the lane's queue holds: put would block if the lane
	// waited for its sender.
	ds := r.put(3 * cap(r.l.in))
	require.Eventually(t, func() bool { return r.reportedCount() == len(ds) }, 10*time.Second, time.Millisecond,
		"every item behind the hanging call is held")
	for _, d := range ds {
		assert.Equal(t, parked, r.outcome(d))
	}
}

func TestItemsThatMustJoinAParkedChangeAreHeldEvenWhenTheLaneIsHealthy(t *testing.T) {
	r := newLaneRig(t, 10, 20*time.Millisecond)
	must, free := &delivery{}, &delivery{}
	r.l.in <- laneItem{d: must, parkable: true, mustPark: true}
	r.l.in <- laneItem{d: free, parkable: true}
	require.Eventually(t, func() bool { return r.reportedCount() == 2 }, 5*time.Second, time.Millisecond)
	assert.Equal(t, parked, r.outcome(must))
	assert.Equal(t, accepted, r.outcome(free))
	r.mu.Lock()
	defer r.mu.Unlock()
	require.Len(t, r.calls, 1)
	assert.Len(t, r.calls[0], 1, "only the free item was sent")
}
