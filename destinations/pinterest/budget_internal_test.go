package pinterest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestTheBudgetNeverFallsBelowASixteenthOfItsMaximum(t *testing.T) {
	b := newBudget(5000, time.Minute)
	for range 10 {
		b.lastCut = time.Time{} // every 429 a new episode
		b.throttled(0)
	}
	assert.InDelta(t, float64(b.max)/16, b.limit(), 1e-9)
	for range 50 {
		b.answered()
	}
	assert.InDelta(t, float64(b.max), b.limit(), 1e-9, "50 answered calls restore the maximum from anywhere")
}

func TestAPauseNeverLastsLongerThanMaxPause(t *testing.T) {
	b := newBudget(5000, time.Minute)
	before := time.Now()
	b.throttled(24 * time.Hour)
	assert.WithinRange(t, b.pausedUntil, before.Add(time.Minute), time.Now().Add(time.Minute),
		"a Retry-After of a day pauses the account for the cap")
}

func TestReserveTakesATokenThatTheNextCallUses(t *testing.T) {
	b := newBudget(86, time.Minute) // burst 10, (86-10-16)/60: a token a second
	for range 10 {
		assert.NoError(t, b.wait(t.Context()))
	}
	assert.Less(t, b.lim.Tokens(), 1.0, "the burst is spent")
	start := time.Now()
	assert.NoError(t, b.reserve(t.Context()))
	assert.Greater(t, time.Since(start), 500*time.Millisecond, "reserve waited for the token to be refilled")
	before := b.lim.Tokens()
	assert.NoError(t, b.wait(t.Context()))
	assert.GreaterOrEqual(t, b.lim.Tokens(), before, "the call took no token of its own: it found one prepaid")
	assert.Zero(t, b.prepaid.Load())

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	b.throttled(time.Minute)
	assert.ErrorIs(t, b.reserve(ctx), context.Canceled, "a paused account: reserve ends with its context")
}
