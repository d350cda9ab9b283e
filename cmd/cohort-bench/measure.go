package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// stopLimit bounds the wait for the daemon's exit after SIGTERM: its
// default CONNECTOR_SHUTDOWN_TIMEOUT (30s) and some slack; then SIGKILL.
const stopLimit = 45 * time.Second

// measure runs the phases in order and returns their figures.
func (b *bench) measure(ctx context.Context) (*results, error) {
	r := &results{o: b.o}
	err := b.publishBacklog(ctx, r)
	if err != nil {
		return nil, err
	}
	if !b.o.skipBare {
		if r.bare, err = b.runBareConsumer(ctx, ""); err != nil {
			return nil, err
		}
	}
	if b.o.floor != "" {
		if r.floor, err = b.runBareConsumer(ctx, b.o.floor); err != nil {
			return nil, err
		}
	}
	b.progress("daemon: draining %d messages", b.o.n)
	// The calls of each ad account, counted once a second from the
	// daemon's start until just before its SIGTERM.
	calls := startCallSampler(b.sim, b.adAccountIDs())
	defer calls.stop()
	d, err := b.startDaemon()
	if err != nil {
		return nil, err
	}
	defer d.kill()
	if err := b.drain(ctx, d, r); err != nil {
		return nil, err
	}
	if !b.o.skipLatency {
		if err := b.latencyPhase(ctx, d, r); err != nil {
			return nil, err
		}
	}
	// The peak RSS up to here. After the exit it can no longer be read:
	// the wait's ru_maxrss would start from this process's high-water
	// mark (see runBareConsumer).
	s, err := readProc(d.pid())
	if err != nil {
		return nil, err
	}
	r.runHWMKiB = s.hwmKiB
	r.calls = callsInAnyMinute(calls.stop())
	b.progress("stopping the daemon (SIGTERM)")
	r.exitCode = d.stop(stopLimit)
	if err := b.final(ctx, r); err != nil {
		return nil, err
	}
	return r, nil
}

// drainFigures are the daemon's drain of the backlog.
type drainFigures struct {
	took   time.Duration // from the process start until drained
	cpu    time.Duration // its CPU time by then (startup included)
	hwmKiB int64         // its peak RSS by then
	calls  int64         // requests the simulator had received by then (all accounts)
	// listUpdates are the customer list PATCHes answered 200 by then, and
	// listRecords the records they carried (customer_list mode).
	listUpdates, listRecords int64
}

// drain waits until the simulator has taken at least -n changes over all
// accounts (cheap counters, polled every 10ms: events received, or in
// customer_list mode records added to or removed from the lists) and then
// until the main consumer has nothing pending or awaiting an ack, and
// samples the daemon there. In customer_list mode every backlog change is
// one record (an email, no MAID) of a user of its own: n records taken and
// nothing left to settle means each change has been applied to its list
// once, or some twice and others not at all, which final tells apart.
// Whether each backlog change arrived is checked once, by final.
func (b *bench) drain(ctx context.Context, d *daemonProc, r *results) error {
	n := int64(b.o.n)
	var took time.Duration
	err := poll(ctx, b.o.drainTimeout, 10*time.Millisecond, func() (bool, error) {
		if d.exited() {
			return false, fmt.Errorf("the daemon exited during the drain (%s); its log ends:\n%s", d.cmd.ProcessState, d.logTail())
		}
		if b.taken() < n {
			return false, nil
		}
		ci, err := b.consumerInfo(ctx, b.defs.consumer.Durable)
		if err != nil || ci.NumPending > 0 || ci.NumAckPending > 0 {
			return false, nil // an error is retried until the drain timeout
		}
		took = time.Since(d.started)
		return true, nil
	})
	if err != nil {
		what := "events"
		if b.o.lists() {
			what = "list records"
		}
		return fmt.Errorf("daemon drain (the simulator has %d of %d %s): %w", b.taken(), n, what, err)
	}
	s, err := readProc(d.pid())
	if err != nil {
		return err
	}
	st := b.sim.Stats("")
	r.drain = drainFigures{took: took, cpu: s.cpu, hwmKiB: s.hwmKiB, calls: st.Requests, listUpdates: st.ListUpdates}
	if b.o.lists() {
		r.drain.listRecords = b.taken()
	}
	return nil
}

// parkedCopies is how many copies the daemon parked during the run (an
// ad account failing, or congested: a call longer than 1 s): the parking
// stream's last sequence (limits retention, created by the daemon in this
// run; 0 when it does not exist).
func (b *bench) parkedCopies(ctx context.Context) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := b.js.Stream(ctx, b.defs.parking.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.LastSeq, nil
}

// taken is what the simulator has taken so far over all accounts: events
// received, or in customer_list mode records added to or removed from the
// customer lists (repeats included).
func (b *bench) taken() int64 {
	if !b.o.lists() {
		return b.sim.Stats("").Events
	}
	var n int64
	for _, a := range b.accounts {
		for _, l := range b.sim.Lists(a.adAccountID) {
			n += int64(l.Uploaded + l.Removed)
		}
	}
	return n
}

// final reads, after the daemon's exit, the main consumer's state and
// what the simulator took: in events mode its event-id tally, merged over
// the accounts (copied once: duplicates, counted per id over all accounts,
// and backlog ids never received); in customer_list mode every list,
// compared with the changes published (checkLists).
func (b *bench) final(ctx context.Context, r *results) error {
	ci, err := b.consumerInfo(ctx, b.defs.consumer.Durable)
	if err != nil {
		return err
	}
	r.pending, r.ackPending = ci.NumPending, ci.NumAckPending
	if r.parked, err = b.parkedCopies(ctx); err != nil {
		return err
	}
	st := b.sim.Stats("")
	r.events, r.rateLimited = st.Events, st.RateLimited
	if b.o.lists() {
		published := 0
		if r.latency != nil {
			published = r.latency.published
		}
		r.lists = b.checkLists(published)
		r.backlogMissing = r.lists.missing
		return nil
	}
	ids := b.sim.EventIDs(b.accounts[0].adAccountID)
	for _, a := range b.accounts[1:] {
		for id, n := range b.sim.EventIDs(a.adAccountID) {
			ids[id] += n
		}
	}
	r.distinct = len(ids)
	r.backlogMissing = b.backlogMissing(ids)
	return nil
}
