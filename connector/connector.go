// Package connector is the pipeline: it consumes membership changes from a
// JetStream durable pull consumer, decodes and routes them through the
// activations Resolver, batches them per ad account, hands the batches to a
// Destination and settles every message from its own outcome.
//
// Settlement is the point of the package. A message is acked only when
// every ad account it is routed to has given Pinterest's verdict on it; it
// is never acked when it is handed to the next stage. Its ack state travels
// with it (tracked) and is settled exactly once:
//
//	ack    every target processed it, or nothing needed sending (not
//	       activated, no matchable identifier)
//	term   permanently bad (undecodable, rejected by Pinterest): first
//	       copied to the dead-letter stream with its reason, then terminated
//	nak    a transient or destination fault: redelivered after a delay that
//	       grows with the delivery count (or Retry-After, or the long
//	       auth delay); at the last allowed delivery it is dead-lettered
//	       instead of being left to expire.
package connector

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/destinations"
)

// Options configures a Connector. Every field is required unless its
// comment gives a default.
type Options struct {
	JS       jetstream.JetStream // publishes dead letters
	Consumer jetstream.Consumer  // the durable pull consumer
	Topology Topology            // DLQ subject, MaxDeliver, AckWait

	Resolver    *cohorts.Resolver
	Destination destinations.Destination
	// AdAccounts lists every ad account a Target can name, with the Tag
	// IDs it owns (for logs).
	AdAccounts map[string][]string

	BatchSize   int           // events per batch and account, default 1000
	BatchPeriod time.Duration // oldest event's wait before a flush, default 100ms
	MaxInFlight int           // concurrent calls per ad account, default 2

	RetryDelayMin  time.Duration // first nak delay, doubled each delivery; default 5s
	RetryDelayMax  time.Duration // nak delay cap; default 15m
	AuthRetryDelay time.Duration // nak delay after 401/403/404 or an unknown Tag ID; default 5m
	// Holds is the order bucket (Topology.OrderBucket): per-user order
	// across restarts. Nil keeps order within this process only.
	Holds jetstream.KeyValue
	// SlowCall is how long a call may run before its account counts as
	// congested: the consume loop then stops waiting for room in that
	// account's queue and holds its messages back instead. Default 1s.
	SlowCall time.Duration
	// OrderHold is how long a change is held back while an earlier change
	// of the same user in the same cohort is still in flight; default 1s.
	OrderHold time.Duration
	// DrainTimeout bounds shutdown: when it expires, calls still in flight
	// are cancelled and their messages nak'd for prompt redelivery.
	// Default 25s.
	DrainTimeout time.Duration

	Logger  zerolog.Logger
	Metrics *Metrics
	Stats   *Stats
	Now     func() time.Time // default time.Now
}

func (o *Options) setDefaults() {
	if o.BatchSize <= 0 {
		o.BatchSize = 1000
	}
	if o.BatchPeriod <= 0 {
		o.BatchPeriod = 100 * time.Millisecond
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 2
	}
	if o.RetryDelayMin <= 0 {
		o.RetryDelayMin = 5 * time.Second
	}
	if o.RetryDelayMax <= 0 {
		o.RetryDelayMax = 15 * time.Minute
	}
	if o.AuthRetryDelay <= 0 {
		o.AuthRetryDelay = 5 * time.Minute
	}
	if o.SlowCall <= 0 {
		o.SlowCall = time.Second
	}
	if o.OrderHold <= 0 {
		o.OrderHold = time.Second
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 25 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Connector is the running pipeline. Create it with New, run it with Run.
type Connector struct {
	o     Options
	lanes map[string]*lane
	memo  memo
	order *userOrder

	// sendCtx is the context of every call to the destination; it is
	// cancelled only when shutdown's DrainTimeout runs out.
	sendCtx    context.Context
	cancelSend context.CancelFunc
	lanesWG    sync.WaitGroup
}

// New checks o and builds a Connector with one lane per ad account.
func New(o Options) (*Connector, error) {
	o.setDefaults()
	switch {
	case o.JS == nil, o.Consumer == nil:
		return nil, errors.New("connector: JetStream and Consumer are required")
	case o.Resolver == nil, o.Destination == nil:
		return nil, errors.New("connector: Resolver and Destination are required")
	case o.Metrics == nil, o.Stats == nil:
		return nil, errors.New("connector: Metrics and Stats are required")
	case o.Topology.DLQSubject == "":
		return nil, errors.New("connector: Topology.DLQSubject is required")
	}
	if o.Topology.AckWait <= 0 {
		o.Topology.AckWait = 30 * time.Second
	}
	c := &Connector{o: o, lanes: map[string]*lane{}, memo: memo{m: map[uint64][]string{}},
		order: newUserOrder(o.OrderHold, 2*o.Topology.AckWait)}
	for acct, tags := range o.AdAccounts {
		c.lanes[acct] = newLane(c, acct, tags)
	}
	return c, nil
}

// Run consumes until ctx is cancelled, then shuts down in this order:
//  1. stop fetching (the iterator drains: messages already delivered to
//     this process are still processed, none is abandoned to AckWait);
//  2. flush every open batch at once;
//  3. wait for every call in flight and settle every message;
//     if DrainTimeout runs out first, the calls are cancelled and their
//     messages nak'd with a short delay.
//
// Run returns nil after a clean shutdown. Closing the NATS connection is
// the caller's job, after Run returns (nc.Drain flushes the last acks).
// Run may be called once per Connector.
func (c *Connector) Run(ctx context.Context) error {
	c.sendCtx, c.cancelSend = context.WithCancel(context.Background())
	defer c.cancelSend()

	if c.o.Holds != nil {
		// Before the first message: a change published after a restart
		// must find the earlier changes that were waiting for redelivery.
		lctx, cancel := context.WithTimeout(ctx, holdsLoadTimeout)
		n, err := c.loadHolds(lctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil // stopped before consuming anything
			}
			return err
		}
		if n > 0 {
			c.o.Logger.Info().Int("records", n).Msg("order records loaded: later changes of these users wait for their earlier ones")
		}
		lctx, cancel = context.WithTimeout(ctx, holdsLoadTimeout)
		n, err = c.expectUnsettled(lctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if n > 0 {
			c.o.Logger.Info().Int("messages", n).Msg("unacknowledged messages from before the restart: later changes of their users wait for them")
		}
	}
	it, err := c.o.Consumer.Messages(jetstream.PullMaxMessages(max(2*c.o.BatchSize, 256)))
	if err != nil {
		return fmt.Errorf("starting to consume: %w", err)
	}
	for _, l := range c.lanes {
		c.lanesWG.Add(1)
		go l.run()
	}
	stopParked := func() {}
	if c.o.Topology.ParkingStream != "" {
		if stopParked, err = c.consumeParked(ctx); err != nil {
			it.Stop()
			for _, l := range c.lanes {
				close(l.in)
			}
			c.lanesWG.Wait()
			return err
		}
	}

	stopFetching := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			c.o.Logger.Info().Msg("shutdown: stop fetching, flushing batches")
			// Bound the drain: after DrainTimeout cancel what is in flight.
			timer := time.AfterFunc(c.o.DrainTimeout, c.cancelSend)
			defer timer.Stop()
			it.Drain()
			<-stopFetching
		case <-stopFetching:
		}
	}()

	var loopErr error
	for {
		msg, err := it.Next()
		if err != nil {
			// Checked before ErrMsgIteratorClosed, which the iterator wraps
			// together with them: a lost connection is not a clean stop.
			if errors.Is(err, jetstream.ErrConnectionClosed) || errors.Is(err, nats.ErrConnectionClosed) ||
				errors.Is(err, jetstream.ErrConsumerDeleted) {
				loopErr = fmt.Errorf("consuming: %w", err)
				it.Stop()
				break
			}
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				break
			}
			// Missed heartbeats and similar: the iterator re-pulls by itself.
			c.o.Logger.Warn().Err(err).Msg("consuming: transient error")
			continue
		}
		c.handle(msg, "")
	}
	// The parked loops feed the same lanes: drain them before closing.
	stopParked()
	for _, l := range c.lanes {
		close(l.in)
	}
	c.lanesWG.Wait()
	close(stopFetching)
	c.o.Logger.Info().Msg("shutdown: every message settled")
	return loopErr
}

// handle decodes, routes and dispatches one message. It runs on the
// consume loop: nothing here may wait on Pinterest, except the back-pressure
// of a full lane.
//
// parkedFor is "" for the main consumer; for a parked message it is the ad
// account whose parking consumer delivered it, the only one it goes to.
func (c *Connector) handle(msg jetstream.Msg, parkedFor string) {
	c.o.Metrics.received.Inc()
	meta, err := msg.Metadata()
	if err != nil {
		// Not a JetStream message: nothing to settle.
		c.o.Logger.Error().Err(err).Str("subject", msg.Subject()).Msg("message without JetStream metadata ignored")
		return
	}
	t := &tracked{msg: msg, meta: meta, received: c.o.Now(), parkedFor: parkedFor}

	m, err := cohorts.Decode(msg.Data(), t.received)
	if err != nil {
		reason := string(cohorts.DecodeMalformedJSON)
		var de *cohorts.DecodeError
		if errors.As(err, &de) {
			reason = string(de.Reason)
		}
		c.settle(t, verdict{kind: kindTerm, reason: reason, detail: err.Error()})
		return
	}
	targets := c.o.Resolver.Resolve(m)
	if parkedFor != "" {
		targets = slices.DeleteFunc(targets, func(tg cohorts.Target) bool { return tg.AdAccountID != parkedFor })
	}
	if len(targets) == 0 {
		c.settle(t, verdict{kind: kindOK, reason: reasonNotActivated})
		return
	}

	hashed := m.Identifiers.Hash()
	matchable := hashed.Matchable()
	first := meta.NumDelivered == 1 && parkedFor == "" // a parked copy was counted when it first came
	var held verdict
	groups := make([]laneItem, 0, len(targets))
	for _, tg := range targets {
		ctrs := c.o.Stats.counters(tg.Activation.ID)
		if first {
			ctrs.received.Add(1)
			if matchable {
				ctrs.withIDs.Add(1)
			}
		}
		if !matchable {
			continue
		}
		if tg.Err != nil {
			ctrs.held.Add(1)
			held = held.merge(verdict{kind: kindRetry, reason: reasonUnknownTag,
				delay:  max(c.o.AuthRetryDelay, c.backoff(meta.NumDelivered, 0)),
				detail: fmt.Sprintf("activation %s: tag_id %s: %v", tg.Activation.ID, tg.TagID, tg.Err)})
			continue
		}
		// Several activations of the cohort may route to one ad account:
		// one event goes there, and each activation is credited.
		found := false
		for i := range groups {
			if groups[i].account == tg.AdAccountID {
				groups[i].counters = append(groups[i].counters, ctrs)
				found = true
				break
			}
		}
		if !found {
			groups = append(groups, laneItem{account: tg.AdAccountID, counters: []*activationCounters{ctrs}})
		}
	}
	if !matchable {
		// Pinterest requires em, hashed_maids or ip+user agent: an event
		// without them would be rejected. Counted (coverage), not sent.
		c.settle(t, verdict{kind: kindOK, reason: reasonNoIdentifiers})
		return
	}
	if meta.NumDelivered > 1 {
		// Accounts that already accepted this message on an earlier
		// delivery are not charged again (at-least-once, not at-least-twice).
		done := c.memo.get(meta.Sequence.Stream)
		groups = slices.DeleteFunc(groups, func(g laneItem) bool { return slices.Contains(done, g.account) })
		t.accepted = append(t.accepted, done...)
	}
	t.held = held
	if len(groups) == 0 {
		c.settle(t, held.merge(verdict{kind: kindOK, reason: reasonOK}))
		return
	}
	key := orderKey(m.CohortID, m.UserID)
	if ok, wait := c.order.admit(key, t.orderSeq(), t.received); !ok {
		// An earlier change of this user in this cohort is still
		// outstanding: this one must not overtake it.
		c.settle(t, verdict{kind: kindRetry, reason: reasonWaitingForEarlier, delay: wait,
			detail: "an earlier change of this user in this cohort is not settled yet"})
		return
	}
	t.orderKey, t.cohortID, t.userID = key, m.CohortID, m.UserID
	t.pending = len(groups)
	item := destinations.Item{EventID: m.EventID(), Membership: m, Hashed: hashed}
	for i := range groups {
		g := groups[i]
		g.t, g.item = t, item
		l := c.lanes[g.account]
		if l == nil {
			// The resolver and the accounts come from one configuration:
			// this is a wiring bug, and the message must survive it.
			t.complete(g.account, verdict{kind: kindRetry, reason: reasonUnknownTag, delay: c.o.AuthRetryDelay,
				detail: "no lane for ad account " + g.account})
			c.maybeSettle(t)
			continue
		}
		l.enqueue(g)
	}
}

// backoff is the nak delay for a transient failure at the n-th delivery:
// RetryDelayMin doubled per earlier delivery, capped at RetryDelayMax, and
// never shorter than the destination's Retry-After.
func (c *Connector) backoff(n uint64, retryAfter time.Duration) time.Duration {
	d := c.o.RetryDelayMax
	if n >= 1 && n <= 40 {
		if x := c.o.RetryDelayMin << (n - 1); x > 0 && x < d {
			d = x
		}
	}
	return max(d, retryAfter)
}

// maybeSettle settles t once its last target has answered.
func (c *Connector) maybeSettle(t *tracked) {
	t.mu.Lock()
	done := t.pending == 0 && !t.settled
	if done {
		t.settled = true
	}
	v := t.verdict.merge(t.held)
	t.mu.Unlock()
	if done {
		c.settle(t, v)
	}
}

// settle carries out v for t, exactly once per delivery.
func (c *Connector) settle(t *tracked, v verdict) {
	log := c.o.Logger
	seq := t.meta.Sequence.Stream
	switch v.kind {
	case kindOK:
		if err := t.msg.Ack(); err != nil {
			log.Warn().Err(err).Uint64("stream_seq", seq).Msg("ack failed: message will be redelivered")
		}
		c.memo.forget(seq)
		if t.parked {
			// Its parked copy is still to be sent: later changes of the
			// user keep waiting for it (and a restart must know).
			c.orderRetry(t, c.o.RetryDelayMin)
		} else {
			c.orderDone(t)
		}
		c.o.Metrics.settled.WithLabelValues("ack", v.reason).Inc()
		return
	case kindRetry:
		if t.meta.NumDelivered >= uint64(c.o.Topology.MaxDeliver) && c.o.Topology.MaxDeliver > 0 {
			// JetStream would drop it after this delivery: keep it.
			c.deadLetterAndTerm(t, reasonMaxDeliveries, fmt.Sprintf("%s: %s", v.reason, v.detail))
			return
		}
		c.memo.put(seq, t.accepted)
		c.orderRetry(t, v.delay)
		if err := t.msg.NakWithDelay(v.delay); err != nil {
			log.Warn().Err(err).Uint64("stream_seq", seq).Msg("nak failed: message will be redelivered after AckWait")
		}
		c.o.Metrics.settled.WithLabelValues("nak", v.reason).Inc()
		return
	case kindTerm:
		c.deadLetterAndTerm(t, v.reason, v.detail)
	}
}

func (c *Connector) deadLetterAndTerm(t *tracked, reason, detail string) {
	seq := t.meta.Sequence.Stream
	if err := c.deadLetter(t, reason, detail); err != nil {
		// Never term what is not safely set aside.
		c.o.Logger.Error().Err(err).Str("reason", reason).Uint64("stream_seq", seq).
			Msg("dead-letter publish failed: message kept for redelivery")
		c.memo.put(seq, t.accepted)
		c.orderRetry(t, c.o.RetryDelayMin)
		_ = t.msg.NakWithDelay(c.o.RetryDelayMin)
		c.o.Metrics.settled.WithLabelValues("nak", reasonDLQFailed).Inc()
		return
	}
	if err := t.msg.TermWithReason(reason); err != nil {
		c.o.Logger.Warn().Err(err).Uint64("stream_seq", seq).Msg("term failed: the redelivery will be dead-lettered again (deduplicated)")
	}
	c.memo.forget(seq)
	c.orderDone(t)
	c.o.Metrics.settled.WithLabelValues("term", reason).Inc()
	c.o.Metrics.deadLetters.WithLabelValues(reason).Inc()
}

func (c *Connector) orderDone(t *tracked) {
	if t.orderKey != "" && c.order.done(t.orderKey, t.orderSeq()) && c.o.Holds != nil {
		c.unpersistHold(t)
	}
}

func (c *Connector) orderRetry(t *tracked, delay time.Duration) {
	due := c.o.Now().Add(delay)
	if t.orderKey != "" && c.order.retry(t.orderKey, t.orderSeq(), due) && c.o.Holds != nil {
		c.persistHold(t, due)
	}
}

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
)

func (c *Connector) deadLetter(t *tracked, reason, detail string) error {
	subject, stream, seq := origin(t)
	out := buildDeadLetter(c.o.Topology.DLQSubject, t.msg.Data(), t.msg.Headers(), subject,
		stream, seq, t.meta.NumDelivered, reason, detail, c.o.Now())
	// Must work during shutdown too: not derived from the run context. The
	// Nats-Msg-Id buildDeadLetter sets makes a second copy of the same
	// message (a term that got lost, the max-deliveries advisory) a no-op.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.o.JS.PublishMsg(ctx, out); err != nil {
		return fmt.Errorf("publishing dead letter to %s: %w", out.Subject, err)
	}
	return nil
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
