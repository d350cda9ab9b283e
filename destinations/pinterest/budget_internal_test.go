package pinterest

import (
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
