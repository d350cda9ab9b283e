package pinterest_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/destinations"
	"github.com/cohort-connector/cohort-connector/destinations/pinterest"
	"github.com/cohort-connector/cohort-connector/destinations/pinterest/simulator"
)

// sendConcurrently makes calls one-event calls from 8 goroutines and
// returns how many failed.
func sendConcurrently(t *testing.T, c *pinterest.Client, calls int) int {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	failed := 0
	work := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				_, err := c.Send(context.Background(), destinations.Batch{AdAccountID: acct, Items: testItems(1)})
				if err != nil {
					mu.Lock()
					failed++
					mu.Unlock()
				}
			}
		}()
	}
	for i := range calls {
		work <- i
	}
	close(work)
	wg.Wait()
	return failed
}

func TestTheCallBudgetKeepsABurstUnderPinterestsLimit(t *testing.T) {
	// Pinterest (the simulator) allows 600 calls a minute; the budget is
	// set to the same figure. 40 calls from 8 goroutines: 10 go at once
	// (the burst), the rest at (600-10)/60 ≈ 9.8 a second, so none is
	// refused and the whole takes about 3 s.
	sim, err := simulator.Start(simulator.Options{Accounts: map[string]string{acct: token}, KnownUserShare: 1, RateLimitPerMinute: 600})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sim.Close() })
	cfg := testConfig("")
	cfg.BaseURL = sim.URL()
	cfg.CallsPerMinute = 600
	c := newClient(t, cfg)

	start := time.Now()
	failed := sendConcurrently(t, c, 40)
	took := time.Since(start)

	assert.Zero(t, failed)
	st := sim.Stats(acct)
	assert.Equal(t, int64(40), st.Accepted200)
	assert.Zero(t, st.RateLimited, "no call may be refused with 429")
	assert.GreaterOrEqual(t, took, 2500*time.Millisecond, "30 calls past the burst at ≤9.9/s take ≥3 s")
	t.Logf("40 calls in %s, 0 refused; budget now %.0f calls/min", took.Round(time.Millisecond), c.CallsPerMinute(acct))
}

func TestWithoutTheBudgetTheSameBurstIsRefused(t *testing.T) {
	// The control for the test above: the simulator really enforces its
	// limit, so a client without a budget gets 429s.
	sim, err := simulator.Start(simulator.Options{Accounts: map[string]string{acct: token}, KnownUserShare: 1, RateLimitPerMinute: 20})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sim.Close() })
	cfg := testConfig("")
	cfg.BaseURL = sim.URL()
	cfg.CallsPerMinute = -1
	cfg.RetryMax = -1
	c := newClient(t, cfg)

	failed := sendConcurrently(t, c, 40)
	assert.Equal(t, 20, failed)
	assert.Equal(t, int64(20), sim.Stats(acct).RateLimited)
}

func TestA429HalvesTheBudgetAndPausesTheAccountForItsRetryAfter(t *testing.T) {
	sim, err := simulator.Start(simulator.Options{Accounts: map[string]string{acct: token}, KnownUserShare: 1, RateLimitPerMinute: -1})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sim.Close() })
	cfg := testConfig("")
	cfg.BaseURL = sim.URL()
	cfg.CallsPerMinute = 6000
	cfg.RetryWaitMax = 2 * time.Second
	c := newClient(t, cfg)
	before := c.CallsPerMinute(acct)

	sim.SetFault(acct, simulator.Fault{Status: 429, RetryAfter: time.Second, Times: 1})
	start := time.Now()
	_, err = c.Send(context.Background(), batch(1))
	require.NoError(t, err, "the retry after the 429 succeeds")
	assert.GreaterOrEqual(t, time.Since(start), time.Second, "the retry waited for Retry-After")
	after429 := c.CallsPerMinute(acct)
	assert.InDelta(t, before/2, after429, before/50+1, "one 429 halves the budget (then one success raises it by 1/50)")

	// Answered calls raise it back to the maximum.
	for range 60 {
		_, err := c.Send(context.Background(), batch(1))
		require.NoError(t, err)
	}
	assert.InDelta(t, before, c.CallsPerMinute(acct), 0.001)
}

func TestARetryAfterLongerThanTheCallFailsFastAndKeepsTheAccountPaused(t *testing.T) {
	sim, err := simulator.Start(simulator.Options{Accounts: map[string]string{acct: token}, KnownUserShare: 1, RateLimitPerMinute: -1})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sim.Close() })
	cfg := testConfig("")
	cfg.BaseURL = sim.URL()
	cfg.CallTimeout = time.Second
	c := newClient(t, cfg)

	sim.SetFault(acct, simulator.Fault{Status: 429, RetryAfter: 30 * time.Second, Times: 1})
	_, err = c.Send(context.Background(), batch(1))
	de := destErr(t, err)
	assert.Equal(t, destinations.ReasonRateLimited, de.Reason)
	assert.Equal(t, 30*time.Second, de.RetryAfter)

	// The next call does not hit Pinterest while the account is paused: it
	// is refused at once, carrying the remaining wait.
	requests := sim.Stats(acct).Requests
	start := time.Now()
	_, err = c.Send(context.Background(), batch(1))
	de = destErr(t, err)
	assert.Equal(t, destinations.ReasonRateLimited, de.Reason)
	assert.Greater(t, de.RetryAfter, 25*time.Second)
	assert.Less(t, time.Since(start), 500*time.Millisecond)
	assert.Equal(t, requests, sim.Stats(acct).Requests, "no request while paused")
}

func TestABurstOf429sCutsTheBudgetOncePerEpisode(t *testing.T) {
	sim, err := simulator.Start(simulator.Options{Accounts: map[string]string{acct: token}, KnownUserShare: 1, RateLimitPerMinute: -1})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sim.Close() })
	cfg := testConfig("")
	cfg.BaseURL = sim.URL()
	cfg.CallsPerMinute = 60_000
	cfg.RetryMax = -1
	c := newClient(t, cfg)
	full := c.CallsPerMinute(acct)

	// 16 calls from 8 goroutines, all refused within one episode.
	sim.SetFault(acct, simulator.Fault{Status: 429, Times: 16})
	assert.Equal(t, 16, sendConcurrently(t, c, 16))
	assert.InDelta(t, full/2, c.CallsPerMinute(acct), 1, "16 refusals in one episode are one signal: halved once")

}
