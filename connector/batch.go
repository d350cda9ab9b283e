package connector

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cohort-connector/cohort-connector/destinations"
)

type verdictKind int

// Ordered by precedence when one message has several targets: a term wins
// over a retry, a retry over an ok.
const (
	kindOK verdictKind = iota
	kindRetry
	kindTerm
)

// verdict is the settlement one target (or the whole message) calls for.
type verdict struct {
	kind   verdictKind
	reason string
	detail string
	delay  time.Duration // kindRetry only
}

// merge combines the verdicts of two targets of one message.
func (v verdict) merge(w verdict) verdict {
	switch {
	case w.reason == "":
		return v
	case v.reason == "":
		return w
	case w.kind > v.kind:
		return w
	case w.kind == v.kind && w.kind == kindRetry && w.delay > v.delay:
		return w
	}
	return v
}

// tracked is one delivery of one message: its ack handle and the state of
// its targets. It is settled exactly once, by whoever completes its last
// target.
type tracked struct {
	msg      jetstream.Msg
	meta     *jetstream.MsgMetadata
	received time.Time

	mu         sync.Mutex
	pending    int      // targets still waiting for an answer
	verdict    verdict  // merged verdict of the targets that answered
	held       verdict  // targets that could not be sent (unknown Tag ID)
	accepted   []string // ad accounts that processed it, this delivery or earlier
	settled    bool
	inProgress bool
	orderKey   string // set when admitted by userOrder
	cohortID   string
	userID     string
	parkedFor  string // the ad account of the parking consumer that delivered it, "" for the main one
	parked     bool   // one of its targets was parked
}

// orderSeq is the message's position for per-user order: its stream
// sequence, or for a parked copy the original's.
func (t *tracked) orderSeq() uint64 {
	_, _, seq := origin(t)
	return seq
}

// complete records account's verdict.
func (t *tracked) complete(account string, v verdict) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pending--
	if v.kind == kindOK {
		t.accepted = append(t.accepted, account)
	}
	t.verdict = t.verdict.merge(v)
}

// laneItem is one message bound for one ad account.
type laneItem struct {
	account  string
	t        *tracked
	item     destinations.Item
	counters []*activationCounters // the activations credited with the verdict
}

// lane batches and sends the items of one ad account. One goroutine
// accumulates a batch and flushes it when it holds BatchSize items or its
// oldest item has waited BatchPeriod; MaxInFlight goroutines send the
// flushed batches. A lane never waits on another lane.
type lane struct {
	c       *Connector
	account string
	tags    []string
	in      chan laneItem
	out     chan []laneItem

	mu      sync.Mutex
	failing string // reason of the current failure, "" when healthy
	lastErr error  // the error that made it fail
	// probing is set while one call tests a failing account; other batches
	// of that account are held back without a call meanwhile.
	probing atomic.Bool
	// callStarted[i] is when sender i's call began (Unix ns), 0 when idle.
	callStarted []atomic.Int64
}

// congested reports whether the lane is failing, or a call of it has run
// longer than SlowCall (Pinterest hanging before any timeout has fired):
// the consume loop must not wait on such a lane.
func (l *lane) congested() error {
	if err := l.failure(); err != nil {
		return err
	}
	limit := time.Now().Add(-l.c.o.SlowCall).UnixNano()
	for i := range l.callStarted {
		if st := l.callStarted[i].Load(); st != 0 && st < limit {
			return &destinations.Error{Reason: destinations.ReasonTimeout,
				Message: fmt.Sprintf("a call to ad account %s has run for more than %s", l.account, l.c.o.SlowCall)}
		}
	}
	return nil
}

// failure returns the lane's current failure, nil when healthy.
func (l *lane) failure() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failing == "" {
		return nil
	}
	return l.lastErr
}

// enqueue hands g to the lane. A healthy lane that is full makes the consume
// loop wait (back-pressure); a congested lane that is full does not: the
// message is held back by delayed redelivery at once, so one failing or
// hanging account never stalls the others.
func (l *lane) enqueue(g laneItem) {
	select {
	case l.in <- g:
		return
	default:
	}
	if err := l.congested(); err != nil {
		l.hold(g, err)
		return
	}
	l.in <- g
}

// hold settles g's target without calling Pinterest: parked (when parking
// is on and g comes from the main consumer) or nak'd with a delay.
func (l *lane) hold(g laneItem, err error) {
	for _, ctr := range g.counters {
		ctr.held.Add(1)
	}
	c := l.c
	reason := destinations.ReasonOf(err)
	if c.o.Topology.ParkingStream != "" && g.t.parkedFor == "" && !reason.Permanent() && reason != destinations.ReasonShutdown {
		perr := c.park(g.t, l.account)
		if perr == nil {
			g.t.mu.Lock()
			g.t.parked = true
			g.t.mu.Unlock()
			g.t.complete(l.account, verdict{kind: kindOK, reason: reasonParked})
			c.maybeSettle(g.t)
			return
		}
		c.o.Logger.Warn().Err(perr).Str("ad_account_id", l.account).Msg("parking failed: message held in the main consumer instead")
	}
	g.t.complete(l.account, c.batchVerdict(g.t, reason, err))
	c.maybeSettle(g.t)
}

func newLane(c *Connector, account string, tags []string) *lane {
	return &lane{
		c:       c,
		account: account,
		tags:    tags,
		in:      make(chan laneItem, c.o.BatchSize),
		out:     make(chan []laneItem),

		callStarted: make([]atomic.Int64, c.o.MaxInFlight),
	}
}

func (l *lane) run() {
	defer l.c.lanesWG.Done()
	var senders sync.WaitGroup
	for slot := range l.c.o.MaxInFlight {
		senders.Add(1)
		go func() {
			defer senders.Done()
			for b := range l.out {
				l.send(slot, b)
			}
		}()
	}
	l.accumulate()
	close(l.out)
	senders.Wait()
}

// accumulate returns when l.in is closed, after flushing what it holds.
func (l *lane) accumulate() {
	size, period := l.c.o.BatchSize, l.c.o.BatchPeriod
	timer := time.NewTimer(period)
	timer.Stop()
	batch := make([]laneItem, 0, size)
	flush := func() {
		timer.Stop()
		if len(batch) > 0 {
			l.out <- batch
			batch = make([]laneItem, 0, size)
		}
	}
	for {
		select {
		case it, ok := <-l.in:
			if !ok {
				flush()
				return
			}
			batch = append(batch, it)
			if len(batch) == 1 {
				timer.Reset(period)
			}
			if len(batch) >= size {
				flush()
			}
		case <-timer.C:
			flush()
		}
	}
}

// send makes one call for batch and settles each item from its own outcome.
func (l *lane) send(slot int, batch []laneItem) {
	c := l.c
	if err := l.failure(); err != nil {
		// The account is failing: one call at a time tests it; the
		// other batches go back to JetStream with a delay instead of
		// piling up calls (and messages) behind it.
		if !l.probing.CompareAndSwap(false, true) {
			for _, it := range batch {
				l.hold(it, err)
			}
			return
		}
		defer l.probing.Store(false)
	}
	now := c.o.Now()
	items := make([]destinations.Item, len(batch))
	for i, it := range batch {
		items[i] = it.item
		// A message that waited long (a slow or failing account ahead of
		// it) gets its AckWait restarted, so it is not redelivered while
		// its call is still running.
		if now.Sub(it.t.received) > c.o.Topology.AckWait/2 {
			it.t.mu.Lock()
			if !it.t.inProgress {
				it.t.inProgress = true
				_ = it.t.msg.InProgress()
			}
			it.t.mu.Unlock()
		}
	}
	c.o.Metrics.batchSize.Observe(float64(len(items)))
	l.callStarted[slot].Store(time.Now().UnixNano())
	res, err := c.o.Destination.Send(c.sendCtx, destinations.Batch{AdAccountID: l.account, Items: items})
	l.callStarted[slot].Store(0)
	if err != nil {
		// Only a fault of the account (or of Pinterest) makes the lane
		// fail: bad input is a fault of these messages, not of the next
		// ones, and shutdown is ours.
		if r := destinations.ReasonOf(err); !r.Permanent() && r != destinations.ReasonShutdown {
			l.failed(err)
		}
		for _, it := range batch {
			l.hold(it, err)
		}
		return
	}
	l.recovered()
	for i, it := range batch {
		r := res.Items[i]
		v := verdict{kind: kindOK, reason: reasonOK}
		if !r.Processed {
			v = verdict{kind: kindTerm, reason: reasonRejected, detail: r.Error}
		}
		for _, ctr := range it.counters {
			if r.Processed {
				ctr.processed.Add(1)
			} else {
				ctr.failed.Add(1)
			}
		}
		it.t.complete(l.account, v)
		c.maybeSettle(it.t)
	}
}

// batchVerdict is the settlement of one message whose whole batch failed.
func (c *Connector) batchVerdict(t *tracked, reason destinations.Reason, err error) verdict {
	v := verdict{kind: kindRetry, reason: string(reason), detail: err.Error()}
	switch {
	case reason.Permanent():
		v.kind = kindTerm
	case reason.DestinationFault():
		// A long delay that still grows, so that MaxDeliver deliveries
		// cover a credential outage as long as a Pinterest outage.
		v.delay = max(c.o.AuthRetryDelay, c.backoff(t.meta.NumDelivered, 0))
	case reason == destinations.ReasonShutdown:
		// Prompt redelivery to whichever instance runs next.
		v.delay = time.Second
	default:
		v.delay = c.backoff(t.meta.NumDelivered, destinations.RetryAfterOf(err))
	}
	return v
}

// failed logs the account's change into a failing state once, not per batch.
func (l *lane) failed(err error) {
	reason := destinations.ReasonOf(err)
	l.c.o.Metrics.failing.WithLabelValues(l.account).Set(1)
	l.mu.Lock()
	changed := l.failing != string(reason)
	l.failing, l.lastErr = string(reason), err
	l.mu.Unlock()
	if !changed {
		return
	}
	ev := l.c.o.Logger.Warn()
	msg := "Pinterest account failing: messages held back for redelivery"
	if reason.DestinationFault() {
		ev = l.c.o.Logger.Error()
		msg = "Pinterest rejected the token or ad account: messages kept and retried with a long delay, fix the account's token"
	}
	ev.Str("ad_account_id", l.account).Strs("tag_id", l.tags).Str("reason", string(reason)).Err(err).Msg(msg)
}

func (l *lane) recovered() {
	l.mu.Lock()
	was := l.failing
	l.failing, l.lastErr = "", nil
	l.mu.Unlock()
	if was == "" {
		return
	}
	l.c.o.Metrics.failing.WithLabelValues(l.account).Set(0)
	l.c.o.Logger.Info().Str("ad_account_id", l.account).Strs("tag_id", l.tags).Str("reason", was).Msg("Pinterest account recovered")
}

// memo remembers, per stream sequence, the ad accounts that already
// accepted a message that is being redelivered because another of its
// accounts failed. It is a saving, not a guarantee: it is bounded, lost on
// restart, and Pinterest deduplicates on event_id anyway.
type memo struct {
	mu sync.Mutex
	m  map[uint64][]string
}

const memoMax = 100_000

func (m *memo) put(seq uint64, accounts []string) {
	if len(accounts) == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.m) < memoMax {
		m.m[seq] = slices.Clone(accounts)
	}
}

func (m *memo) get(seq uint64) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.m[seq]
}

func (m *memo) forget(seq uint64) {
	m.mu.Lock()
	delete(m.m, seq)
	m.mu.Unlock()
}
