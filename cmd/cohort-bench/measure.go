package main

import (
	"context"
	"fmt"
	"time"
)

// stopLimit bounds the wait for the daemon's exit after SIGTERM: its
// default CONNECTOR_SHUTDOWN_TIMEOUT (30s) and some slack; then SIGKILL.
const stopLimit = 45 * time.Second

// measure runs the phases in order and returns their figures.
func (b *bench) measure(ctx context.Context) (*results, error) {
	r := &results{o: b.o}
	if err := b.publishBacklog(ctx, r); err != nil {
		return nil, err
	}
	if !b.o.skipBare {
		if err := b.runBareConsumer(ctx, r); err != nil {
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
}

// drain waits until the simulator has received at least -n events over
// all accounts (cheap counters, polled every 10ms) and then until the main
// consumer has nothing pending or awaiting an ack, and samples the daemon
// there.
// Whether each backlog event id arrived is checked once, by final.
func (b *bench) drain(ctx context.Context, d *daemonProc, r *results) error {
	n := int64(b.o.n)
	var took time.Duration
	err := poll(ctx, b.o.drainTimeout, 10*time.Millisecond, func() (bool, error) {
		if d.exited() {
			return false, fmt.Errorf("the daemon exited during the drain (%s); its log ends:\n%s", d.cmd.ProcessState, d.logTail())
		}
		if b.sim.Stats("").Events < n {
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
		return fmt.Errorf("daemon drain (the simulator has %d of %d events): %w", b.sim.Stats("").Events, n, err)
	}
	s, err := readProc(d.pid())
	if err != nil {
		return err
	}
	r.drain = drainFigures{took: took, cpu: s.cpu, hwmKiB: s.hwmKiB, calls: b.sim.Stats("").Requests}
	return nil
}

// final reads, after the daemon's exit, the main consumer's state and the
// simulator's event-id tally, merged over the accounts (copied once:
// duplicates, counted per id over all accounts, and backlog ids never
// received).
func (b *bench) final(ctx context.Context, r *results) error {
	ci, err := b.consumerInfo(ctx, b.defs.consumer.Durable)
	if err != nil {
		return err
	}
	r.pending, r.ackPending = ci.NumPending, ci.NumAckPending
	st := b.sim.Stats("")
	ids := b.sim.EventIDs(b.accounts[0].adAccountID)
	for _, a := range b.accounts[1:] {
		for id, n := range b.sim.EventIDs(a.adAccountID) {
			ids[id] += n
		}
	}
	r.events, r.distinct, r.rateLimited = st.Events, len(ids), st.RateLimited
	r.backlogMissing = b.backlogMissing(ids)
	return nil
}
