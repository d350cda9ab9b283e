package pinterest

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/cohort-connector/cohort-connector/destinations"
)

// DefaultCallsPerMinute is Pinterest's published limit for the events
// endpoint: 5,000 calls a minute per ad account.
const DefaultCallsPerMinute = 5000

// budgetBurst is the token bucket's burst, and maxPrepaid the most tokens
// taken ahead of their call (reserve). The refill rate is
// (limit − burst − maxPrepaid) / 60 s, so that no 60-second window,
// sliding or not, can hold more than limit calls: a call uses a token
// taken in that window, or one of at most maxPrepaid taken before it.
const (
	budgetBurst = 10
	maxPrepaid  = 16 // the most senders an account has (CONNECTOR_MAX_INFLIGHT)
)

// budget is the call budget of one ad account: a token bucket that every
// HTTP attempt (first tries and retries alike) waits on. It adapts:
// a 429 halves the rate (once per episode: the 429s of calls already under
// way, or of retries during the pause, are the same signal) and pauses the
// account for its Retry-After, never longer than maxPause; each answered
// call that is not a 429 raises the rate again by 1/50 of the maximum, so
// the budget recovers in about 50 calls once the 429s stop. It never drops
// below 1/16 of the maximum: a budget that fell to a call a minute would
// hold traffic long after Pinterest recovered.
type budget struct {
	lim      *rate.Limiter
	max      rate.Limit
	maxPause time.Duration // cap on a pause asked for by a Retry-After

	mu          sync.Mutex
	pausedUntil time.Time
	lastCut     time.Time

	prepaid atomic.Int64 // tokens taken by reserve, not used by a call yet
}

// cutEpisode is the least time between two halvings of the rate.
const cutEpisode = time.Second

func newBudget(callsPerMinute int, maxPause time.Duration) *budget {
	burst := min(budgetBurst, callsPerMinute)
	r := rate.Limit(float64(callsPerMinute-burst-maxPrepaid) / 60)
	if r <= 0 {
		r = rate.Limit(float64(callsPerMinute) / 60)
	}
	return &budget{lim: rate.NewLimiter(r, burst), max: r, maxPause: maxPause}
}

// wait blocks until the account may make one more call. It fails at once,
// with a rate-limited error carrying the remaining wait, when ctx's
// deadline comes before the budget allows the call: the wait is then left to
// JetStream's delayed redelivery instead of holding the batch.
func (b *budget) wait(ctx context.Context) error {
	b.mu.Lock()
	pause := time.Until(b.pausedUntil)
	b.mu.Unlock()
	if pause > 0 {
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < pause {
			return &destinations.Error{Reason: destinations.ReasonRateLimited, RetryAfter: pause,
				Message: "ad account paused by an earlier 429"}
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	if b.takePrepaid() {
		return nil
	}
	if err := b.lim.Wait(ctx); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// Wait refuses a wait that would overrun the deadline.
		return &destinations.Error{Reason: destinations.ReasonRateLimited, RetryAfter: time.Second,
			Message: "call budget of the ad account exhausted: " + err.Error()}
	}
	return nil
}

// reserve blocks until the account may make a call and takes the token
// for it: the next call's wait then finds it prepaid instead of waiting
// again. A sender reserves before it takes a batch, so that the batch
// carries what arrived while it waited, and leaves at once.
func (b *budget) reserve(ctx context.Context) error {
	if err := b.waitPause(ctx); err != nil {
		return err
	}
	if b.prepaid.Load() >= maxPrepaid {
		return nil // the calls wait for their own tokens
	}
	if err := b.lim.Wait(ctx); err != nil {
		return err
	}
	b.prepaid.Add(1)
	return nil
}

// waitPause blocks while the account is paused by a 429.
func (b *budget) waitPause(ctx context.Context) error {
	b.mu.Lock()
	pause := time.Until(b.pausedUntil)
	b.mu.Unlock()
	if pause <= 0 {
		return nil
	}
	t := time.NewTimer(pause)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// takePrepaid uses a token taken by reserve, if one is left.
func (b *budget) takePrepaid() bool {
	for {
		n := b.prepaid.Load()
		if n <= 0 {
			return false
		}
		if b.prepaid.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

// throttled records a 429: halve the rate (once per episode, not below
// 1/16 of the maximum) and pause the account for retryAfter, at most
// maxPause.
func (b *budget) throttled(retryAfter time.Duration) {
	retryAfter = min(retryAfter, b.maxPause)
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.Sub(b.lastCut) >= max(cutEpisode, retryAfter) {
		b.lastCut = now
		b.lim.SetLimit(max(b.lim.Limit()/2, b.max/16))
	}
	if until := now.Add(retryAfter); retryAfter > 0 && until.After(b.pausedUntil) {
		b.pausedUntil = until
	}
}

// answered records a call that was not throttled: raise the rate towards
// the maximum.
func (b *budget) answered() {
	if cur := b.lim.Limit(); cur < b.max {
		b.lim.SetLimit(min(b.max, cur+b.max/50))
	}
}

// limit is the current rate, in calls per second.
func (b *budget) limit() float64 { return float64(b.lim.Limit()) }
