package connector

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/cohort-connector/cohort-connector/destinations"
)

// laneItem is one delivery's share for one ad account. The event itself
// (id, membership, hashes) is kept once in the delivery (see item): a lane
// holds what differs per account, so that queues and batches stay small.
type laneItem struct {
	d *delivery
	// lists are the customer lists the change goes to at this account;
	// listsOnly is set when no activation of the account is in events
	// mode (see destinations.Item).
	lists     []string
	listsOnly bool
	// parkable: the delivery comes from the main consumer, so its share can
	// be parked when the account fails (a parked copy is never parked again).
	parkable bool
	// mustPark: an earlier change of the same user waits parked for this
	// account, so this one joins it there whatever the account's health.
	mustPark bool
	credits  credits // the activations credited with the outcome
}

// item is the destination item of the share.
func (it *laneItem) item() destinations.Item {
	return destinations.Item{EventID: it.d.eventID, Membership: it.d.membership, Hashed: it.d.hashed,
		CustomerLists: it.lists, ListsOnly: it.listsOnly}
}

// credits are the activations credited with an item's outcome: almost
// always one, held without an allocation.
type credits struct {
	first *activationCounters
	more  []*activationCounters
}

func (cr *credits) add(ctr *activationCounters) {
	if cr.first == nil {
		cr.first = ctr
		return
	}
	cr.more = append(cr.more, ctr)
}

// each calls f for every activation credited.
func (cr *credits) each(f func(*activationCounters)) {
	if cr.first != nil {
		f(cr.first)
	}
	for _, ctr := range cr.more {
		f(ctr)
	}
}

// laneFuncs are what a lane is given; it knows nothing else of the connector.
type laneFuncs struct {
	// send makes one call for items. A nil error means one outcome per
	// item, and answered says whether the destination answered (false when
	// nothing was left to send: a call that tells nothing of the account).
	// An error means the whole call failed; outcomes then holds one
	// outcome per item for a failure that is the items' own (bad input,
	// shutdown) and is nil for a fault of the account or of Pinterest,
	// which the lane answers by holding the items.
	send func(ctx context.Context, items []laneItem) (outcomes []outcome, answered bool, err error)
	// hold settles items without calling the destination, because err (a
	// fault of the account) says the call would fail: parkable items are
	// parked, the others are to be redelivered. One outcome per item.
	hold func(items []laneItem, err error) []outcome
	// report hands the outcomes of items on to settlement.
	report func(items []laneItem, outcomes []outcome)
	// activations, when set, lists the enabled activations whose changes
	// go to the account (for its logs).
	activations func() []string
	// ready, when set, returns when the account may make a call, that
	// call's place in its budget taken (destinations.CallGate), or when ctx
	// is done.
	ready func(ctx context.Context) error
}

// lane batches and sends the items of one ad account. One goroutine
// accumulates a batch; maxInFlight senders make the calls. A sender that
// is free, once its account's budget has given it a call (ready), takes
// the batch as it is: so calls go out as soon as they may, carrying
// whatever accumulated meanwhile — full batches at high rates, small ones
// at low rates. A batch that reaches batchSize, or whose oldest item has
// waited batchPeriod, is flushed: handed to a sender as soon as one is
// free, or held when the account cannot take it.
//
// A lane never makes its producer wait on a failing or hanging account:
// while the account is failing (its last call failed) one call at a time
// probes it and every other batch is held (parked) at once; while a call has
// run longer than slowCall (congested), batches that find no free sender are
// held too. So the consume loop is only ever slowed by a healthy lane that
// is busy, which is back-pressure.
type lane struct {
	account string
	tags    []string
	fn      laneFuncs
	log     zerolog.Logger
	failing func(account string, state AccountState) // metric hook

	batchSize   int
	batchPeriod time.Duration
	maxInFlight int
	slowCall    time.Duration
	sendCtx     context.Context // cancelled when the shutdown drain runs out

	in      chan laneItem
	out     chan []laneItem
	batches *batchPool

	mu      sync.Mutex
	failure error     // the fault that makes the account failing, nil when healthy
	since   time.Time // when it began failing (zero while healthy)
	// failedCalls and held count the calls that failed and the items held
	// (parked or left for redelivery) since it began failing.
	failedCalls, held int
	// probing is set while one call tests a failing account.
	probing atomic.Bool
	// callStarted[i] is when sender i's call began (Unix ns), 0 when idle.
	callStarted []atomic.Int64
}

func newLane(account string, tags []string, fn laneFuncs, o *Options, sendCtx context.Context, failing func(string, AccountState), batches *batchPool) *lane {
	return &lane{
		batches: batches,
		account: account, tags: tags, fn: fn, log: o.Logger, failing: failing,
		batchSize: o.BatchSize, batchPeriod: o.BatchPeriod, maxInFlight: o.MaxInFlight, slowCall: o.SlowCall,
		sendCtx:     sendCtx,
		in:          make(chan laneItem, o.BatchSize),
		out:         make(chan []laneItem),
		callStarted: make([]atomic.Int64, o.MaxInFlight),
	}
}

// run accumulates and sends until in is closed, then flushes what it holds,
// waits for its senders and returns.
func (l *lane) run() {
	var senders sync.WaitGroup
	// Waiting for a turn ends when the last batch has been handed out.
	readyCtx, noMoreBatches := context.WithCancel(l.sendCtx)
	defer noMoreBatches()
	for slot := range l.maxInFlight {
		senders.Add(1)
		go func() {
			defer senders.Done()
			for {
				if l.fn.ready != nil {
					_ = l.fn.ready(readyCtx) // ended early: there is no batch left, or the drain ran out
				}
				b, ok := <-l.out
				if !ok {
					return
				}
				l.send(slot, b)
			}
		}()
	}
	l.accumulate()
	noMoreBatches()
	close(l.out)
	senders.Wait()
}

func (l *lane) accumulate() {
	timer := time.NewTimer(l.batchPeriod)
	timer.Stop()
	var batch []laneItem
	for {
		var out chan []laneItem // nil, so never chosen, while the batch is empty
		if len(batch) > 0 {
			out = l.out
		}
		select {
		case it, ok := <-l.in:
			if !ok {
				timer.Stop()
				l.flush(batch)
				return
			}
			if it.mustPark {
				l.fn.report([]laneItem{it}, l.fn.hold([]laneItem{it}, errEarlierParked))
				continue
			}
			if len(batch) == 0 {
				batch = l.batches.get()
				timer.Reset(l.batchPeriod)
			}
			batch = append(batch, it)
			if len(batch) >= l.batchSize {
				timer.Stop()
				l.flush(batch)
				batch = nil
			}
		case out <- batch: // a sender is free and may call: it takes what there is
			timer.Stop()
			batch = nil
		case <-timer.C:
			l.flush(batch)
			batch = nil
		}
	}
}

// flush hands batch to a sender, or holds it when the account cannot take
// it: a failing or congested account's batch is held as soon as no sender
// is free.
func (l *lane) flush(batch []laneItem) {
	if len(batch) == 0 {
		return
	}
	select {
	case l.out <- batch: // a sender was free: the usual case
		return
	default:
	}
	recheck := time.NewTicker(max(l.slowCall/4, time.Millisecond))
	defer recheck.Stop()
	for {
		if err := l.congested(); err != nil {
			l.fn.report(batch, l.fn.hold(batch, err))
			return
		}
		select {
		case l.out <- batch:
			return
		case <-recheck.C:
		}
	}
}

// errEarlierParked is why an item that must join a parked change is held.
var errEarlierParked = &destinations.Error{Reason: destinations.ReasonServer,
	Message: "an earlier change of this user waits parked for this ad account"}

// congested returns the lane's failure, or an error when one of its calls
// has run longer than slowCall (Pinterest hanging before any timeout has
// fired); nil when the lane can take a batch.
func (l *lane) congested() error {
	if err := l.failed(); err != nil {
		return err
	}
	limit := time.Now().Add(-l.slowCall).UnixNano()
	for i := range l.callStarted {
		if st := l.callStarted[i].Load(); st != 0 && st < limit {
			return &destinations.Error{Reason: destinations.ReasonTimeout,
				Message: fmt.Sprintf("a call to ad account %s has run for more than %s", l.account, l.slowCall)}
		}
	}
	return nil
}

func (l *lane) failed() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failure
}

// send makes one call for batch and reports each item's outcome.
func (l *lane) send(slot int, batch []laneItem) {
	if err := l.failed(); err != nil {
		// One call at a time tests a failing account; the other batches
		// are held instead of piling up calls behind it.
		if !l.probing.CompareAndSwap(false, true) {
			l.count(0, len(batch))
			l.fn.report(batch, l.fn.hold(batch, err))
			return
		}
		defer l.probing.Store(false)
	}
	l.callStarted[slot].Store(time.Now().UnixNano())
	outcomes, answered, err := l.fn.send(l.sendCtx, batch)
	l.callStarted[slot].Store(0)
	if err != nil && outcomes == nil {
		l.setFailure(err)
		l.count(1, len(batch))
		outcomes = l.fn.hold(batch, err)
	} else if err == nil && answered {
		l.setFailure(nil)
	}
	l.fn.report(batch, outcomes)
}

// count adds to the failing account's counts: calls failed, items held.
func (l *lane) count(calls, items int) {
	l.mu.Lock()
	l.failedCalls += calls
	l.held += items
	l.mu.Unlock()
}

// activations lists the enabled activations whose changes go to the
// account, for its logs.
func (l *lane) activations() []string {
	if l.fn.activations == nil {
		return nil
	}
	return l.fn.activations()
}

// setFailure records the account's health, logging a change of state once:
// the calls that fail meanwhile are counted, and the recovery line says how
// many, how many items were held and how long it lasted.
func (l *lane) setFailure(err error) {
	l.mu.Lock()
	was, since, calls, held := l.failure, l.since, l.failedCalls, l.held
	l.failure = err
	switch {
	case err == nil:
		l.since, l.failedCalls, l.held = time.Time{}, 0, 0
	case was == nil:
		l.since = time.Now()
	}
	l.mu.Unlock()
	switch {
	case err == nil && was != nil:
		l.failing(l.account, AccountHealthy)
		l.log.Info().Str("ad_account_id", l.account).Strs("tag_id", l.tags).Strs("activation_id", l.activations()).
			Str("reason", string(destinations.ReasonOf(was))).Str("lasted", time.Since(since).Round(time.Millisecond).String()).
			Int("failed_calls", calls).Int("held", held).Msg("Pinterest account recovered")
	case err != nil && (was == nil || destinations.ReasonOf(was) != destinations.ReasonOf(err)):
		reason := destinations.ReasonOf(err)
		l.failing(l.account, stateOf(reason))
		ev, msg := l.log.Warn(), "Pinterest account failing: messages parked or held back for redelivery"
		switch {
		case reason == destinations.ReasonRedirect:
			ev = l.log.Error()
			msg = "Pinterest (or a proxy) answered with a redirect, not followed: messages kept and retried with a long delay, fix CONNECTOR_PINTEREST_BASE_URL or the proxy"
		case reason.DestinationFault():
			ev = l.log.Error()
			msg = "Pinterest rejected the token or ad account: messages kept and retried with a long delay, fix the account's configuration"
		}
		ev.Str("ad_account_id", l.account).Strs("tag_id", l.tags).Strs("activation_id", l.activations()).
			Str("reason", string(reason)).Err(err).Msg(msg)
	}
}

// AccountHealth is an ad account's health as the lane knows it.
type AccountHealth struct {
	AdAccountID string
	State       AccountState
	Since       time.Time // when it began failing; zero while healthy
	Err         error     // why it fails; nil while healthy
}

// health is the account's AccountHealth.
func (l *lane) health() AccountHealth {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := AccountHealth{AdAccountID: l.account, State: AccountHealthy, Since: l.since, Err: l.failure}
	if l.failure != nil {
		h.State = stateOf(destinations.ReasonOf(l.failure))
	}
	return h
}

// check is the account's readiness check, "ad_account_<id>": failing for
// a fault of its configuration (token, ad account, base URL: someone must
// act) makes the daemon unready; failing otherwise (Pinterest answers 5xx,
// times out, rate-limits) is a warning: the daemon waits it out.
func (l *lane) check(now time.Time) Check {
	h := l.health()
	c := Check{Name: "ad_account_" + l.account, State: CheckOK}
	if h.Err == nil {
		return c
	}
	c.State = CheckWarn
	if h.State == AccountAuthFailing {
		c.State = CheckFail
	}
	c.Detail = fmt.Sprintf("failing since %s (%s): %s: %v", h.Since.UTC().Format(time.RFC3339),
		now.Sub(h.Since).Round(time.Second), destinations.ReasonOf(h.Err), h.Err)
	return c
}

// batchPool recycles the lanes' batches: a batch is taken when its first
// item comes and put back once its outcomes are applied (Connector.apply),
// so a busy lane does not allocate one per call.
type batchPool struct {
	size int
	pool sync.Pool
}

func newBatchPool(size int) *batchPool { return &batchPool{size: size} }

// get returns an empty batch with room for size items.
func (p *batchPool) get() []laneItem {
	if b, ok := p.pool.Get().(*[]laneItem); ok {
		return *b
	}
	return make([]laneItem, 0, p.size)
}

// put takes back a batch nothing refers to any more. Only whole batches
// come back (not the single items held at once, nor parts).
func (p *batchPool) put(b []laneItem) {
	if cap(b) != p.size {
		return
	}
	b = b[:cap(b)]
	clear(b) // holds no delivery while it waits
	b = b[:0]
	p.pool.Put(&b)
}
