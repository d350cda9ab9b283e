package connector

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// apply records what a lane reports on the deliveries of its items, and
// settles each delivery whose last target has reported.
func (c *Connector) apply(r laneResult) {
	now := c.o.Now()             // once per report, not per item
	var lastErr *ActivationError // shared by the items that failed alike
	parkedN := 0
	for i, it := range r.items {
		o := r.outcomes[i]
		if o.reason != reasonOK && (lastErr == nil || lastErr.Reason != o.reason || lastErr.Detail != o.detail) {
			lastErr = &ActivationError{Reason: o.reason, Detail: o.detail, At: now}
		}
		it.credits.each(func(ctr *activationCounters) {
			switch o.reason {
			case reasonOK:
				ctr.processed.Add(1)
				if c.o.OnAccepted != nil {
					c.o.OnAccepted(ctr.id, it.d.userID)
				}
			case reasonRejected:
				ctr.failed.Add(1)
				ctr.lastError.Store(lastErr)
			default:
				ctr.held.Add(1)
				ctr.lastError.Store(lastErr)
			}
		})
		d := it.d
		if o.kind == kindDone {
			d.done = append(d.done, r.account)
		}
		switch o.reason {
		case reasonOK:
			c.o.Metrics.latency.Observe(now.Sub(d.membership.TS).Seconds())
		case reasonParked:
			d.parked = append(d.parked, r.account)
			parkedN++
		}
		d.outcome = d.outcome.merge(o)
		d.pending--
		if d.pending == 0 {
			c.settle(d)
		}
	}
	if parkedN > 0 {
		c.o.Metrics.parked.WithLabelValues(r.account).Add(float64(parkedN))
	}
	c.batches.put(r.items)
}

// settle carries out d's merged outcome, exactly once per delivery. It is
// the only function that acks, naks or terminates a message.
func (c *Connector) settle(d *delivery) {
	o := c.final(d)
	var due time.Time // when d comes back; zero: it does not
	switch o.kind {
	case kindRetry:
		due = c.o.Now().Add(o.delay)
	case kindKeep:
		due = c.o.Now().Add(c.o.Topology.AckWait)
	}
	// Order records first: they are published on the same connection,
	// ahead of the settlement, so a crash right after a nak cannot leave
	// a change waiting for redelivery without its record.
	c.settleOrder(d, due)
	var err error
	result := ""
	switch o.kind {
	case kindDone:
		result, err = "ack", d.msg.Ack()
	case kindRetry:
		result, err = "nak", d.msg.NakWithDelay(o.delay)
		if c.stopping.Load() {
			c.handedBack++
		}
	case kindReject:
		result, err = "term", d.msg.TermWithReason(o.reason)
		c.o.Metrics.deadLetters.WithLabelValues(o.reason).Inc()
	case kindKeep:
		c.recycle(d)
		return
	}
	if err != nil {
		// The server redelivers what it did not hear settled: after
		// AckWait, or at once for a lost term (dead-lettered again, once).
		const msg = "settling failed: the message will be redelivered (repeats are counted, not logged, until one works)"
		if c.settleFailures.failed(result+err.Error(), err.Error(), c.o.Now()) {
			c.settleFailures.logFields(c.o.Logger.Warn()).Err(err).Str("result", result).Str("stream", d.meta.Stream).
				Uint64("stream_seq", d.meta.Sequence.Stream).Msg(msg)
		}
	} else {
		c.settleFailures.succeeded(c.o.Logger, c.o.Now)
	}
	c.countSettled(result, o.reason)
	c.recycle(d)
}

// final turns d's merged outcome into what settle does: a retry at the
// last delivery is set aside instead (JetStream would not deliver it
// again), and what is set aside is first copied to the dead-letter stream.
// A message whose dead letter cannot be written is kept: nak'd for another
// try, or, at the main consumer's last delivery (where a nak would not
// bring it back), left to its AckWait, after which JetStream's
// max-deliveries advisory makes WatchMaxDeliveries copy it. A parked copy
// always comes back: its consumer has no MaxDeliver of its own.
func (c *Connector) final(d *delivery) outcome {
	o := d.outcome
	if o.reason == "" {
		o = accepted
	}
	if o.kind == kindRetry && d.last(c.o.Topology.MaxDeliver) {
		o = outcome{kind: kindReject, reason: reasonMaxDeliveries, detail: o.reason + ": " + o.detail}
	}
	if o.kind != kindReject {
		return o
	}
	err := c.deadLetter(d, o.reason, o.detail)
	if err == nil {
		c.dlqFailures.succeeded(c.o.Logger, c.o.Now)
		return o
	}
	keep := d.parkedFor == "" && d.last(c.o.Topology.MaxDeliver)
	msg := "dead-letter publish failed: message kept for redelivery (repeats are counted, not logged, until one works)"
	if keep {
		msg = "dead-letter publish failed at the last delivery: left to AckWait, the max-deliveries watcher copies it (repeats are counted, not logged, until one works)"
	}
	if c.dlqFailures.failed(msg+err.Error(), err.Error(), c.o.Now()) {
		c.dlqFailures.logFields(c.o.Logger.Error()).Err(err).Str("reason", o.reason).Str("stream", d.meta.Stream).
			Uint64("stream_seq", d.meta.Sequence.Stream).Msg(msg)
	}
	if keep {
		return outcome{kind: kindKeep, reason: reasonDLQFailed}
	}
	return outcome{kind: kindRetry, reason: reasonDLQFailed, delay: c.o.RetryDelayMin}
}

// settleOrder updates the order book and the memo for d's settlement: due
// is when d comes back (zero: it will not). A target parked for is still
// outstanding at its account; one that accepted d is released; the others
// wait for d's redelivery, or are released when it will not come back.
func (c *Connector) settleOrder(d *delivery, due time.Time) {
	if d.parkedFor == "" {
		if due.IsZero() {
			delete(c.memo, d.origin)
		} else if len(d.done) > 0 && len(c.memo) < memoMax {
			c.memo[d.origin] = slices.Clone(d.done) // not d's room: the memo must not keep d
		}
	}
	accounts := d.ordered
	if d.parkedFor != "" && due.IsZero() && !slices.Contains(accounts, d.parkedFor) {
		// A parked copy settled without being sent (its activation was
		// switched off meanwhile): its place in the order ends here too.
		accounts = append(accounts, d.parkedFor)
	}
	for _, account := range accounts {
		k := orderKey{account, d.cohortID, d.userID}
		switch {
		case slices.Contains(d.parked, account):
			if c.order.wait(k, d.origin.seq, time.Time{}, true) {
				c.writeRecord(k, orderEntry{seq: d.origin.seq, parked: true})
			}
		case due.IsZero() || slices.Contains(d.done, account):
			unrecord, next := c.order.release(k, d.origin.seq)
			switch {
			case next.seq != 0:
				c.writeRecord(k, next)
			case unrecord:
				c.deleteRecord(k)
			}
		default:
			// A parked copy nak'd is still parked: it comes back from its
			// parking consumer.
			inParking := d.parkedFor == account
			if c.order.wait(k, d.origin.seq, due, inParking) {
				c.writeRecord(k, orderEntry{seq: d.origin.seq, retryAt: due, parked: inParking})
			}
		}
	}
}

// memoMax bounds the memo of accounts that already accepted a message being
// redelivered. It is a saving, not a guarantee: it is lost on restart, and
// Pinterest deduplicates on event_id anyway.
const memoMax = 100_000

// Dead-letter headers: the reason, what was wrong, and where the message
// came from. The body is the original message, byte for byte.
const (
	HeaderDLQReason     = "Dlq-Reason"
	HeaderDLQDetail     = "Dlq-Detail"
	HeaderDLQSubject    = "Dlq-Original-Subject"
	HeaderDLQStream     = "Dlq-Original-Stream"
	HeaderDLQSequence   = "Dlq-Original-Sequence"
	HeaderDLQDeliveries = "Dlq-Delivery-Count"
	HeaderDLQTime       = "Dlq-Time"
	// HeaderDLQAdAccount names the ad account of a parked copy's dead
	// letter: the account that could not take it.
	HeaderDLQAdAccount = "Dlq-Ad-Account-Id"
)

// deadLetter copies d's message to the dead-letter stream and waits for the
// PubAck. It must work during shutdown too: its context is its own.
func (c *Connector) deadLetter(d *delivery, reason, detail string) error {
	out := buildDeadLetter(c.o.Topology.DLQSubject, d.msg.Data(), d.msg.Headers(), d.origin, d.meta.NumDelivered,
		reason, detail, c.o.Now())
	if d.parkedFor != "" {
		out.Header.Del(headerOriginStream)
		out.Header.Del(headerOriginSubject)
		out.Header.Del(headerOriginSeq)
		out.Header.Del(headerOriginStored)
		out.Header.Set(HeaderDLQAdAccount, d.parkedFor)
		out.Header.Set(jetstream.MsgIDHeader, "dlq:"+d.origin.id()+":"+d.parkedFor)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.o.JS.PublishMsg(ctx, out); err != nil {
		return fmt.Errorf("publishing dead letter to %s: %w", out.Subject, err)
	}
	return nil
}

// buildDeadLetter is the dead-letter copy of the message of origin o:
// published on <dlqSubject>.<reason>, the original body byte for byte, the
// original headers except Nats-* ones, the Dlq-* headers, and Nats-Msg-Id
// "dlq:<stream>:<seq>:<stored>": every path that dead-letters the same
// message uses that id, so the DLQ stream keeps one copy within its
// duplicate window, and a message of a stream created again (same
// sequence, another stored time) gets its own.
func buildDeadLetter(dlqSubject string, data []byte, header nats.Header, o origin, deliveries uint64, reason, detail string, now time.Time) *nats.Msg {
	out := nats.NewMsg(dlqSubject + "." + reason)
	out.Data = data
	copyHeaders(out.Header, header)
	out.Header.Set(HeaderDLQReason, reason)
	out.Header.Set(HeaderDLQDetail, headerValue(detail, 1024))
	out.Header.Set(HeaderDLQSubject, o.subject)
	out.Header.Set(HeaderDLQStream, o.stream)
	out.Header.Set(HeaderDLQSequence, strconv.FormatUint(o.seq, 10))
	out.Header.Set(HeaderDLQDeliveries, strconv.FormatUint(deliveries, 10))
	out.Header.Set(HeaderDLQTime, now.UTC().Format(time.RFC3339Nano))
	out.Header.Set(jetstream.MsgIDHeader, "dlq:"+o.id())
	return out
}

// headerValue makes s safe as a NATS header value: one line, at most n bytes.
func headerValue(s string, n int) string {
	b := []byte(s)
	for i, ch := range b {
		if ch == '\r' || ch == '\n' {
			b[i] = ' '
		}
	}
	if len(b) > n {
		b = b[:n]
	}
	return string(b)
}
