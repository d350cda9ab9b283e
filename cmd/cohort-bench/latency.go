package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cohort-connector/cohort-connector/cohorts"
)

// lostAfter: a latency-phase event not at the simulator this long after the
// last publish is counted lost.
const lostAfter = 30 * time.Second

// latencyTracker records, per latency-phase event, its first arrival at
// the simulator (SetArrivalHook); it knows only the phase's event ids.
type latencyTracker struct {
	mu        sync.Mutex
	waiting   map[string]struct{} // published, not arrived yet
	latencies []time.Duration     // arrival − ts, one per arrived event
	published int
}

func newLatencyTracker() *latencyTracker {
	return &latencyTracker{waiting: make(map[string]struct{})}
}

// expect registers an event id before its membership is published.
func (t *latencyTracker) expect(eventID string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.waiting[eventID] = struct{}{}
	t.published++
}

// arrived is the simulator's arrival hook. The ts is read back from the
// event id, which ends with ":<ts in Unix nanoseconds>"
// (cohorts.Membership.EventID); ids of other events and repeats of an
// arrived one are ignored.
func (t *latencyTracker) arrived(_, eventID string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.waiting[eventID]; !ok {
		return
	}
	delete(t.waiting, eventID)
	ns, err := strconv.ParseInt(eventID[strings.LastIndexByte(eventID, ':')+1:], 10, 64)
	if err != nil {
		return // not one of ours: every id the bench publishes has the suffix
	}
	t.latencies = append(t.latencies, at.Sub(time.Unix(0, ns)))
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
	b.sim.SetArrivalHook(t.arrived)
	defer b.sim.SetArrivalHook(nil)

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
			t.expect(m.EventID())
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
	published, arrived, lost int
	p50, p90, p99, max       time.Duration
	cpu                      time.Duration // the daemon's CPU time during the phase
}

// summarize computes nearest-rank percentiles of the arrived events'
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
