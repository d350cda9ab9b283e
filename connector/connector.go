// Package connector is the pipeline: it consumes membership changes from
// JetStream, routes them through the activations Resolver, batches them per
// ad account, hands the batches to a Destination and settles every delivery
// from its own outcome.
//
// A message travels one way:
//
//	source (source.go)  the main consumer and every parking consumer feed one loop
//	route  (route.go)   decode, resolve the targets (ad accounts), per-user order, to lanes
//	lane   (lane.go)    per ad account: batch, send, or hold (park) when the account fails
//	                    (applied.go: a customer list's older changes are dropped before the call)
//	settle (settle.go)  merge the targets' outcomes; ack, nak or dead-letter + term
//
// A target's share of a delivery is one item per ad account: the event
// (activations in events mode) and an operation per customer list
// (activations in customer_list mode), sent and settled together.
//
// Beside the pipeline, and fed by it: the audience manager (audiences.go,
// audiences_poll.go) keeps one Pinterest audience per activation and
// reads its size back; the sketches (sketch.go) count the users put into
// each; token keepers (tokens.go) refresh OAuth access tokens; backfills
// (backfill.go) rebuild a newly enabled activation from the stream.
//
// Route and settle run on one goroutine, the connector's loop, which owns
// the per-delivery state, the order book and the memo: none of them needs a
// lock. Lanes run on their own goroutines and report outcomes back to the
// loop through one channel.
//
// Words used with one meaning each: a target is an ad account a delivery
// goes to; a target is held when it is not sent as it arrives, because its
// account cannot take it now (failing, congested) or has no account (an
// unknown Tag ID); a held share of a main delivery is parked (copied to the
// account's parking consumer, parking.go), other held shares are
// redelivered; a change waits when an earlier change of the same user and
// cohort is still outstanding at that account (order.go); an order record
// keeps a waiting or parked change across restarts (orderrecords.go).
//
// Settlement is the point of the package. A delivery is acked only when
// every ad account it is routed to has accepted it (or holds a parked copy
// of it); it is never acked when it is handed to the next stage:
//
//	ack    every target accepted it or holds a parked copy, or nothing needed
//	       sending (not activated, no matchable identifier)
//	term   permanently bad (undecodable, rejected by Pinterest): first
//	       copied to the dead-letter stream with its reason, then terminated
//	nak    a transient or destination fault: redelivered after a delay that
//	       grows with the delivery count (or Retry-After, or the long
//	       auth delay); at the last allowed delivery it is dead-lettered
//	       instead of being left to expire (unless the dead letter cannot be
//	       written: then it is kept, see settle.go's final).
package connector

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/destinations"
)

// Options configures a Connector. Every field is required unless its
// comment gives a default.
type Options struct {
	JS       jetstream.JetStream // publishes dead letters, parked copies, order records
	Consumer jetstream.Consumer  // the main durable pull consumer
	Topology Topology            // names, MaxDeliver, AckWait

	Resolver    *cohorts.Resolver
	Destination destinations.Destination
	// AdAccounts lists every ad account a Target can name, with the Tag
	// IDs it owns (for logs).
	AdAccounts map[string][]string

	BatchSize   int           // events per batch and account, default 1000
	BatchPeriod time.Duration // oldest event's wait for a free sender before a flush, default 100ms
	MaxInFlight int           // concurrent calls per ad account, default 2

	RetryDelayMin  time.Duration // first nak delay, doubled each delivery; default 5s
	RetryDelayMax  time.Duration // nak delay cap, Retry-After included; default 15m
	AuthRetryDelay time.Duration // nak delay after 401/403/404/3xx or an unknown Tag ID; default 5m
	// CustomerLists returns the id of the customer list of an activation in
	// customer_list mode, "" while it does not exist yet (its changes are
	// then redelivered later). Nil: no list exists.
	CustomerLists func(activationID string) string
	// Applied is the state bucket where the last change applied to each
	// customer list per user is kept (see applied.go). Nil keeps it in
	// memory only.
	Applied jetstream.KeyValue
	// OnAccepted, if set, is called for every activation credited with a
	// change Pinterest accepted (the match-rate sketches count its user).
	// It runs on the connector's loop and must be cheap.
	OnAccepted func(activationID, userID string)
	// TokenExpiring, if set, says whether an ad account's OAuth token
	// needs a person soon (TokenKeeper.Expiring): while its calls succeed,
	// its state is then token_expiring.
	TokenExpiring func(adAccountID string) bool
	// OrderRecords is the order bucket (Topology.OrderBucket): per-user
	// order across restarts. Nil keeps order within this process only.
	OrderRecords jetstream.KeyValue
	// SlowCall is how long a call may run before its account counts as
	// congested: its batches are then parked instead of waiting for a
	// sender. Default 1s.
	SlowCall time.Duration
	// OrderWait is the shortest wait of a change behind an earlier change
	// of the same user that is in flight; default 1s.
	OrderWait time.Duration
	// CheckInterval is how often the consumers and the connector's own
	// streams and bucket are checked (deleted ones are created again);
	// default 5s.
	CheckInterval time.Duration
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
	o.BatchSize = cmpOr(o.BatchSize, 1000)
	o.BatchPeriod = cmpOr(o.BatchPeriod, 100*time.Millisecond)
	o.MaxInFlight = cmpOr(o.MaxInFlight, 2)
	o.RetryDelayMin = cmpOr(o.RetryDelayMin, 5*time.Second)
	o.RetryDelayMax = cmpOr(o.RetryDelayMax, 15*time.Minute)
	o.AuthRetryDelay = cmpOr(o.AuthRetryDelay, 5*time.Minute)
	o.SlowCall = cmpOr(o.SlowCall, time.Second)
	o.OrderWait = cmpOr(o.OrderWait, time.Second)
	o.CheckInterval = cmpOr(o.CheckInterval, 5*time.Second)
	o.DrainTimeout = cmpOr(o.DrainTimeout, 25*time.Second)
	if o.Now == nil {
		o.Now = time.Now
	}
}

// cmpOr is v, or def when v is not positive.
func cmpOr[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// Connector is the running pipeline. Create it with New, run it with Run.
type Connector struct {
	o        Options
	accounts []string // sorted
	lanes    map[string]*lane
	results  chan laneResult // lanes → loop
	// routedScratch holds a delivery's lane items while route builds them
	// (loop only): kept between deliveries, so routing allocates none.
	routedScratch []routed
	// dlqFailures and settleFailures log a failure repeated for every
	// message once per episode (loop only).
	dlqFailures, settleFailures repeats
	batches                     *batchPool // the lanes' batches, recycled by apply
	// spareDeliveries are settled deliveries kept for reuse (loop only).
	spareDeliveries []*delivery
	callItems       itemsPool // the items of the calls being made (senders)

	// Owned by the loop goroutine.
	order    *orderBook
	memo     map[origin][]string
	applied  *appliedStore                  // last change applied per customer list and user
	counters map[string]*activationCounters // by activation id: Stats without its lock
	// forgetExpectedAt: a main delivery after this time means the changes
	// read back at startup and not seen again were acked (see expect).
	forgetExpectedAt time.Time
	settled          map[[2]string]prometheus.Counter // by result and reason: the metric without its lookup
	// handedBack counts the deliveries nak'd once shutdown began: handed
	// back to JetStream for another delivery, to this daemon's successor.
	handedBack int
	stopping   atomic.Bool // shutdown began
	// turned is when the loop last turned (Unix ns; 0 before Run): it
	// turns at least every loopBeat, so Alive can tell a wedged loop.
	turned atomic.Int64
	beat   *time.Ticker

	src *source
	// sendCtx is the context of every call to the destination; it is
	// cancelled only when shutdown's DrainTimeout runs out.
	sendCtx    context.Context
	cancelSend context.CancelFunc
	lanesWG    sync.WaitGroup
}

// laneResult is what a lane reports for one batch (or part of one).
type laneResult struct {
	account  string
	items    []laneItem
	outcomes []outcome
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
	o.Metrics.accounts.watchTokens(o.TokenExpiring)
	c := &Connector{
		o:        o,
		accounts: slices.Sorted(maps.Keys(o.AdAccounts)),
		lanes:    map[string]*lane{},
		results:  make(chan laneResult, 64),
		// A parked change may wait out a whole outage: forgotten only
		// with its order record (the bucket's TTL).
		order:          newOrderBook(o.OrderWait, 2*o.Topology.AckWait, 24*time.Hour),
		memo:           map[origin][]string{},
		applied:        newAppliedStore(o.JS, o.Applied),
		counters:       map[string]*activationCounters{},
		settled:        map[[2]string]prometheus.Counter{},
		dlqFailures:    repeats{what: "dead-letter publishes"},
		settleFailures: repeats{what: "settlements"},
	}
	c.sendCtx, c.cancelSend = context.WithCancel(context.Background())
	c.batches = newBatchPool(c.o.BatchSize)
	for _, account := range c.accounts {
		fn := laneFuncs{
			send:        c.sender(account),
			hold:        func(items []laneItem, err error) []outcome { return c.hold(account, items, err) },
			report:      func(items []laneItem, out []outcome) { c.results <- laneResult{account, items, out} },
			activations: func() []string { return c.activationsOf(account) },
		}
		if gate, ok := o.Destination.(destinations.CallGate); ok {
			fn.ready = func(ctx context.Context) error { return gate.AwaitCall(ctx, account) }
		}
		c.lanes[account] = newLane(account, o.AdAccounts[account], fn, &c.o, c.sendCtx, o.Metrics.setAccountState, c.batches)
	}
	c.src = c.newSource()
	return c, nil
}

// Checks reports whether the JetStream objects the connector uses are in
// place (jetstream_objects: failing while one of them, a deleted consumer
// say, is being created again, its detail naming each), then each ad
// account's health (ad_account_<id>, see lane.check). Safe for concurrent
// use.
func (c *Connector) Checks() []Check {
	c.src.mu.Lock()
	defer c.src.mu.Unlock()
	ck := Check{Name: CheckJetStreamObjects, State: CheckOK}
	var details []string
	for _, name := range slices.Sorted(maps.Keys(c.src.problems)) {
		details = append(details, name+": "+c.src.problems[name])
	}
	if len(details) > 0 {
		ck.State, ck.Detail = CheckFail, strings.Join(details, "; ")
	}
	checks := []Check{ck}
	now := time.Now()
	for _, account := range c.accounts {
		checks = append(checks, c.lanes[account].check(now))
	}
	return checks
}

// Accounts reports each ad account's health, sorted by id. Safe for
// concurrent use.
func (c *Connector) Accounts() []AccountHealth {
	out := make([]AccountHealth, 0, len(c.accounts))
	for _, account := range c.accounts {
		h := c.lanes[account].health()
		h.State = accountState(h.State, c.o.Metrics.accounts.tokenExpiring(account))
		out = append(out, h)
	}
	return out
}

// activationsOf lists the enabled activations whose changes go to the
// ad account (for its logs; it reads every activation).
func (c *Connector) activationsOf(adAccountID string) []string {
	var out []string
	for _, a := range c.o.Resolver.List() {
		if a.Enabled && c.o.Resolver.Target(a).AdAccountID == adAccountID {
			out = append(out, a.ID)
		}
	}
	return out
}

// Run consumes until ctx is cancelled, then shuts down in this order:
//  1. stop fetching (the iterators drain: messages already delivered to
//     this process are still routed, none is abandoned to AckWait);
//  2. flush every open batch at once;
//  3. wait for every call in flight and settle every delivery;
//     if DrainTimeout runs out first, the calls are cancelled and their
//     messages nak'd with a short delay;
//  4. wait for the acknowledgements of the asynchronous publishes (order
//     records).
//
// Run returns nil after a clean shutdown. Closing the NATS connection is
// the caller's job, after Run returns (nc.Drain flushes the last acks).
// Run may be called once per Connector.
func (c *Connector) Run(ctx context.Context) error {
	defer c.cancelSend()
	if c.o.OrderRecords != nil {
		if err := c.loadOrder(ctx); err != nil {
			if ctx.Err() != nil {
				return nil // stopped before consuming anything
			}
			return err
		}
	}
	if err := c.src.start(ctx); err != nil {
		if ctx.Err() != nil {
			return nil // stopped while opening the consumers
		}
		return err
	}
	for _, l := range c.lanes {
		c.lanesWG.Add(1)
		go func() {
			defer c.lanesWG.Done()
			l.run()
		}()
	}
	flushCtx, stopFlushing := context.WithCancel(context.Background())
	flushed := make(chan struct{})
	go func() {
		defer close(flushed)
		c.applied.keepFlushingMembers(flushCtx, func(err error) {
			c.o.Logger.Warn().Err(err).Msg("customer list member counts not stored yet; retrying")
		})
	}()
	defer func() { stopFlushing(); <-flushed }()
	stop := context.AfterFunc(ctx, func() {
		c.stopping.Store(true)
		c.o.Logger.Info().Msg("shutdown: stop fetching, flushing batches")
		c.src.stopFetching()
		// Bound the drain: after DrainTimeout cancel what is in flight.
		time.AfterFunc(c.o.DrainTimeout, c.cancelSend)
	})
	defer stop()

	c.loop()
	if ctx.Err() == nil { // the source stopped by itself
		c.src.stopFetching()
	}
	c.awaitPublishes()
	c.o.Logger.Info().Int("handed_back", c.handedBack).
		Msg("shutdown: every message settled; handed_back were nak'd during the shutdown, for prompt redelivery")
	// The deferred stopFlushing adds the last member counts to the bucket.
	return c.src.failure()
}

// loop routes what the source feeds and settles what the lanes report,
// until the source is closed and every lane has reported its last batch.
func (c *Connector) loop() {
	c.beat = time.NewTicker(loopBeat)
	defer c.beat.Stop()
	c.turned.Store(time.Now().UnixNano())
	for {
		select {
		case in, ok := <-c.src.feed:
			if !ok {
				c.closeLanes()
				return
			}
			c.route(in.msg, in.parkedFor)
		case r := <-c.results:
			c.apply(r)
		case now := <-c.beat.C:
			c.turned.Store(now.UnixNano())
		}
	}
}

// loopBeat is how often an idle loop notes that it turns; loopStuck is
// how long it may go without turning before Alive says it is wedged (a
// busy loop turns for every message and every lane report).
const (
	loopBeat  = time.Second
	loopStuck = 30 * time.Second
)

// CheckLoop is the name of the connector's liveness check (see Alive).
const CheckLoop = "connector_loop"

// Alive is the connector's liveness check: failing when its loop, which
// routes and settles every message, has not turned for loopStuck (a
// deadlock: only a restart helps). OK before Run has started it. Safe for
// concurrent use.
func (c *Connector) Alive(now time.Time) Check {
	ck := Check{Name: CheckLoop, State: CheckOK}
	if t := c.turned.Load(); t != 0 {
		if idle := now.Sub(time.Unix(0, t)); idle > loopStuck {
			ck.State, ck.Detail = CheckFail, fmt.Sprintf("has not turned for %s", idle.Round(time.Second))
		}
	}
	return ck
}

// closeLanes closes every lane's input and settles what they report until
// the last one has finished.
func (c *Connector) closeLanes() {
	for _, l := range c.lanes {
		close(l.in)
	}
	finished := make(chan struct{})
	go func() {
		c.lanesWG.Wait()
		close(finished)
	}()
	for {
		select {
		case r := <-c.results:
			c.apply(r)
		case now := <-c.beat.C:
			c.turned.Store(now.UnixNano())
		case <-finished:
			for {
				select {
				case r := <-c.results:
					c.apply(r)
				default:
					return
				}
			}
		}
	}
}

// awaitPublishes waits (bounded) for the PubAcks of the asynchronous
// publishes still outstanding.
func (c *Connector) awaitPublishes() {
	select {
	case <-c.o.JS.PublishAsyncComplete():
	case <-time.After(5 * time.Second):
		c.o.Logger.Warn().Int("pending", c.o.JS.PublishAsyncPending()).Msg("shutdown: order records not confirmed")
	}
}

// loadOrder fills the order book before the first message: a change
// published after a restart must find the earlier changes that wait.
func (c *Connector) loadOrder(ctx context.Context) error {
	lctx, cancel := context.WithTimeout(ctx, orderLoadTimeout)
	defer cancel()
	n, err := c.loadRecords(lctx)
	if err != nil {
		return err
	}
	if n > 0 {
		c.o.Logger.Info().Int("records", n).Msg("order records loaded: later changes of these users wait for their earlier ones")
	}
	if n, err = c.expectUnsettled(lctx); err != nil {
		return err
	}
	if n > 0 {
		// Twice AckWait: a delivery is routed some time after JetStream
		// sent it (client buffers, a busy lane), and the proof holds only
		// for one sent after every expected change's AckWait expired.
		c.forgetExpectedAt = c.o.Now().Add(2 * c.o.Topology.AckWait)
		c.o.Logger.Info().Int("messages", n).Msg("unacknowledged messages from before the restart: later changes of their users wait for them")
	}
	return nil
}

// activationCounters returns the counters of an activation. Loop only.
func (c *Connector) activationCounters(id string) *activationCounters {
	ctrs := c.counters[id]
	if ctrs == nil {
		ctrs = c.o.Stats.counters(id)
		c.counters[id] = ctrs
	}
	return ctrs
}

// countSettled counts one settlement. Loop only.
func (c *Connector) countSettled(result, reason string) {
	k := [2]string{result, reason}
	ctr := c.settled[k]
	if ctr == nil {
		ctr = c.o.Metrics.settled.WithLabelValues(result, reason)
		c.settled[k] = ctr
	}
	ctr.Inc()
}

// backoff is the nak delay for a transient failure at the n-th delivery:
// RetryDelayMin doubled per earlier delivery, or the destination's
// Retry-After if longer, never more than RetryDelayMax.
func (c *Connector) backoff(n uint64, retryAfter time.Duration) time.Duration {
	d := c.o.RetryDelayMax
	if n >= 1 && n <= 40 {
		if x := c.o.RetryDelayMin << (n - 1); x > 0 && x < d {
			d = x
		}
	}
	return min(max(d, retryAfter), c.o.RetryDelayMax)
}

// sender is the lanes' send function for account: one call for the items,
// under the customer lists' last-change-wins rule (applied.go).
func (c *Connector) sender(account string) func(context.Context, []laneItem) ([]outcome, bool, error) {
	applier := c.Applier()
	return func(ctx context.Context, items []laneItem) ([]outcome, bool, error) {
		now := c.o.Now()
		events := c.callItems.get(len(items))
		defer c.callItems.put(events)
		for i, it := range items {
			events[i] = it.item()
			// A message that waited long (a slow account ahead of it) has
			// its AckWait restarted, so it is not redelivered while its
			// call is still running.
			if now.Sub(it.d.received) > c.o.Topology.AckWait/2 {
				_ = it.d.msg.InProgress()
			}
		}
		c.o.Metrics.batchSize.Observe(float64(len(events)))
		res, err := applier.Send(ctx, c.o.Destination, account, events)
		if err != nil {
			// Bad input is a fault of these items, shutdown is ours:
			// neither says anything of the account.
			if r := destinations.ReasonOf(err); r.Permanent() || r == destinations.ReasonShutdown {
				out := make([]outcome, len(items))
				for i, it := range items {
					out[i] = c.retryAfterFault(it.d, err)
				}
				return out, false, err
			}
			return nil, false, fmt.Errorf("ad account %s: %w", account, err)
		}
		out := make([]outcome, len(items))
		for i, r := range res.Items {
			out[i] = accepted
			if !r.Processed {
				out[i] = outcome{kind: kindReject, reason: reasonRejected, detail: r.Error}
			}
		}
		return out, res.Answered, nil
	}
}

// ListMembers is the number of current members of a customer list, as the
// connector applied them (all replicas): the denominator of its match rate.
func (c *Connector) ListMembers(ctx context.Context, listID string) (int64, error) {
	return c.applied.ListMembers(ctx, listID)
}

// itemsPool recycles the destination items of calls: a call's items are
// not kept by the destination once it has answered.
type itemsPool struct{ pool sync.Pool }

// get returns n zero items.
func (p *itemsPool) get(n int) []destinations.Item {
	if b, ok := p.pool.Get().(*[]destinations.Item); ok && cap(*b) >= n {
		return (*b)[:n]
	}
	return make([]destinations.Item, n)
}

// put takes items back, cleared.
func (p *itemsPool) put(items []destinations.Item) {
	clear(items)
	p.pool.Put(&items)
}
