package pinterest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestTheBudgetNeverFallsBelowASixteenthOfItsMaximum(t *testing.T) {
	b := newBudget(5000)
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
