package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cohort-connector/cohort-connector/cohorts"
)

// lostAfter: a latency-phase change not at the simulator this long after
// the last publish is counted lost.
const lostAfter = 30 * time.Second

// latencyTracker records, per latency-phase change, its first arrival at
// the simulator: its event's (SetArrivalHook, keyed by event id) in events
// mode, the first ADD of its record to a customer list
// (SetListArrivalHook, keyed by the hashed email) in customer_list mode.
// It knows only the phase's keys.
type latencyTracker struct {
	mu        sync.Mutex
	waiting   map[string]time.Time // key → ts: published, not arrived yet
	latencies []time.Duration      // arrival − ts, one per arrived change
	published int
}

func newLatencyTracker() *latencyTracker {
	return &latencyTracker{waiting: make(map[string]time.Time)}
}

// expect registers a change's key and ts before it is published.
func (t *latencyTracker) expect(key string, ts time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.waiting[key] = ts
	t.published++
}

// arrived records key's arrival at the simulator; keys of other changes
// and repeats of an arrived one are ignored.
func (t *latencyTracker) arrived(key string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ts, ok := t.waiting[key]
	if !ok {
		return
	}
	delete(t.waiting, key)
	t.latencies = append(t.latencies, at.Sub(ts))
}

// eventArrived is the simulator's arrival hook (events mode).
func (t *latencyTracker) eventArrived(_, eventID string, at time.Time) { t.arrived(eventID, at) }

// recordArrived is the simulator's list arrival hook (customer_list mode):
// the phase's changes are enters, so only ADDs count.
func (t *latencyTracker) recordArrived(_, _ string, add bool, record string, at time.Time) {
	if add {
		t.arrived(record, at)
	}
}

func (t *latencyTracker) outstanding() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.waiting)
}

// latencyMembership is membership k of the latency phase: a user of its
// own, an enter, ts the publish time.
func (b *bench) latencyMembership(k int, ts time.Time) cohorts.Membership {
	return cohorts.Membership{
		UserID:      fmt.Sprintf("latency-%09d", k),
		CohortID:    cohortID(k % b.o.cohorts),
		Action:      cohorts.ActionEnter,
		TS:          ts,
		Identifiers: cohorts.Identifiers{Email: fmt.Sprintf("Bench.Latency%09d@Example.com", k)},
	}
}

// latencyKey is what the simulator's hook tells of m's arrival: its event
// id, or in customer_list mode its list record (the hashed email).
func (b *bench) latencyKey(m cohorts.Membership) string {
	if b.o.lists() {
		return m.Identifiers.Hash().Em
	}
	return m.EventID()
}

// latencyPhase publishes -rate memberships a second for -latency-duration
// to the running daemon and records each one's latency and the daemon's
// CPU time meanwhile.
func (b *bench) latencyPhase(ctx context.Context, d *daemonProc, r *results) error {
	b.progress("latency: %d memberships a second for %s", b.o.rate, b.o.latencyDuration)
	before, err := readProc(d.pid())
	if err != nil {
		return err
	}
	t := newLatencyTracker()
	if b.o.lists() {
		b.sim.SetListArrivalHook(t.recordArrived)
		defer b.sim.SetListArrivalHook(nil)
	} else {
		b.sim.SetArrivalHook(t.eventArrived)
		defer b.sim.SetArrivalHook(nil)
	}

	last, err := b.publishAtRate(ctx, t)
	if err != nil {
		return err
	}
	err = poll(ctx, time.Until(last.Add(lostAfter)), 10*time.Millisecond, func() (bool, error) {
		return t.outstanding() == 0, nil
	})
	if err != nil && !errors.Is(err, errDeadline) {
		return err
	}
	after, err := readProc(d.pid())
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	r.latency = summarize(t.latencies, t.published, len(t.waiting))
	r.latency.cpu = after.cpu - before.cpu
	return nil
}

// publishAtRate publishes the phase's memberships at -rate a second, each
// stamped with the time it is published; it returns the last one's.
func (b *bench) publishAtRate(ctx context.Context, t *latencyTracker) (time.Time, error) {
	total := int(float64(b.o.rate) * b.o.latencyDuration.Seconds())
	prefix := b.defs.subjectPrefix()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	var last time.Time
	for sent := 0; sent < total; {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return last, ctx.Err()
		}
		due := min(total, int(time.Since(start).Seconds()*float64(b.o.rate)))
		for ; sent < due; sent++ {
			last = time.Now()
			m := b.latencyMembership(sent, last)
			data, err := json.Marshal(m)
			if err != nil {
				return last, err
			}
			t.expect(b.latencyKey(m), m.TS)
			if _, err := b.js.PublishAsync(prefix+m.CohortID, data, jetstream.WithStallWait(time.Minute)); err != nil {
				return last, fmt.Errorf("publishing latency membership %d: %w", sent, err)
			}
		}
	}
	select {
	case <-b.js.PublishAsyncComplete():
	case <-ctx.Done():
		return last, ctx.Err()
	}
	if n := b.publishErrs.Load(); n > 0 {
		return last, fmt.Errorf("%d publishes failed", n)
	}
	return last, nil
}

// latencyFigures summarize the latency phase.
type latencyFigures struct {
	published, arrived, lost int // changes
	p50, p90, p99, max       time.Duration
	cpu                      time.Duration // the daemon's CPU time during the phase
}

// summarize computes nearest-rank percentiles of the arrived changes'
// latencies; lost are those still waiting.
func summarize(latencies []time.Duration, published, waiting int) *latencyFigures {
	f := &latencyFigures{published: published, arrived: len(latencies), lost: waiting}
	if len(latencies) == 0 {
		return f
	}
	s := slices.Clone(latencies)
	slices.Sort(s)
	rank := func(q float64) time.Duration {
		i := int(math.Ceil(q*float64(len(s)))) - 1
		return s[max(i, 0)]
	}
	f.p50, f.p90, f.p99, f.max = rank(0.50), rank(0.90), rank(0.99), s[len(s)-1]
	return f
}
