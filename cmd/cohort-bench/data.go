package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cohort-connector/cohort-connector/cohorts"
)

// backlogMembership is membership i of the backlog, as
// connector/bench_test.go makes them: a user of its own (a UUID-shaped
// user_id, an email in mixed case to normalise and hash), cohort i mod
// -cohorts, enter for even i and exit for odd i, ts = base + i
// nanoseconds. The same i gives the same message, so its event id can be
// computed again at the end instead of being kept.
func (b *bench) backlogMembership(i int) cohorts.Membership {
	m := cohorts.Membership{
		UserID:      fmt.Sprintf("%08x-5eed-4b3c-8a1d-%012x", uint32(i)*2654435761, i),
		CohortID:    cohortID(i % b.o.cohorts),
		Action:      cohorts.ActionEnter,
		TS:          b.base.Add(time.Duration(i)),
		Identifiers: cohorts.Identifiers{Email: fmt.Sprintf("Bench.User.%09d@Example-Company.com", i)},
	}
	if i%2 == 1 {
		m.Action = cohorts.ActionExit
	}
	return m
}

// publishBacklog publishes -n memberships with asynchronous PubAcks (at
// most publishMaxPending awaited at a time) and checks that the stream
// holds them all.
func (b *bench) publishBacklog(ctx context.Context, r *results) error {
	b.progress("publishing %d memberships across %d cohorts", b.o.n, b.o.cohorts)
	b.base = time.Now().Add(-time.Minute) // "a little in the past"
	prefix := b.defs.subjectPrefix()
	var size int64
	start := time.Now()
	for i := range b.o.n {
		if i%publishMaxPending == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		m := b.backlogMembership(i)
		data, err := json.Marshal(m)
		if err != nil {
			return err
		}
		size += int64(len(data))
		// A full window blocks the publish until PubAcks come back; the
		// stall wait only bounds that block.
		if _, err := b.js.PublishAsync(prefix+m.CohortID, data, jetstream.WithStallWait(time.Minute)); err != nil {
			return fmt.Errorf("publishing membership %d: %w", i, err)
		}
	}
	select {
	case <-b.js.PublishAsyncComplete():
	case <-ctx.Done():
		return ctx.Err()
	}
	took := time.Since(start)
	if n := b.publishErrs.Load(); n > 0 {
		return fmt.Errorf("%d of %d publishes failed", n, b.o.n)
	}
	if err := b.checkStreamHolds(ctx, uint64(b.o.n)); err != nil {
		return err
	}
	r.publishMsgsPerS = float64(b.o.n) / took.Seconds()
	r.msgBytes = float64(size) / float64(b.o.n)
	return nil
}

// checkStreamHolds checks that the input stream holds exactly n messages.
func (b *bench) checkStreamHolds(ctx context.Context, n uint64) error {
	s, err := b.js.Stream(ctx, b.defs.stream.Name)
	if err != nil {
		return err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return err
	}
	if info.State.Msgs != n {
		return fmt.Errorf("stream %s holds %d messages after publishing %d", b.defs.stream.Name, info.State.Msgs, n)
	}
	return nil
}

// backlogMissing counts the backlog memberships whose event id is not in
// ids (the simulator's tally).
func (b *bench) backlogMissing(ids map[string]int) int {
	missing := 0
	for i := range b.o.n {
		if ids[b.backlogMembership(i).EventID()] == 0 {
			missing++
		}
	}
	return missing
}
