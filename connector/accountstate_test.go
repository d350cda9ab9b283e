package connector_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/connector"
	"github.com/cohort-connector/cohort-connector/destinations/pinterest/simulator"
)

// An ad account's calls as the metrics tell them: a 503 retried within
// its call (a retry, by status class and code), then 429s (throttled, a
// warning; the calls after them wait out the pause: rate-limit waits),
// then healthy again, and token_expiring while its token needs a person
// although its calls succeed.
func TestAnAccountsCallsRetriesWaitsAndStatesAreMeasured(t *testing.T) {
	var expiring atomic.Bool
	h := newHarness(t, harnessConfig{
		maxDeliver: 50,
		options: func(o *connector.Options) {
			o.RetryDelayMax = 100 * time.Millisecond
			o.TokenExpiring = func(acct string) bool { return acct == acctA && expiring.Load() }
		},
		activations: []cohorts.Activation{activation("calls-a", "c-calls", "")},
	})
	state := func(s string) float64 {
		return h.counter("cohort_connector_account_state", map[string]string{"ad_account_id": acctA, "state": s})
	}
	requests := func(class, code string) float64 {
		return h.counter("cohort_connector_pinterest_requests_total", map[string]string{"ad_account_id": acctA, "class": class, "code": code})
	}
	acct := map[string]string{"ad_account_id": acctA}
	assert.Equal(t, 1.0, state("healthy"))

	h.sim.SetFault(acctA, simulator.Fault{Status: 503, Times: 1})
	h.publishMembership(membership("c-calls", 0))
	require.Eventually(t, func() bool { return len(h.eventsFor(acctA, "c-calls")) == 1 }, waitFor, tick)
	assert.Equal(t, 1.0, requests("5xx", "503"))
	assert.Equal(t, 1.0, requests("2xx", "200"))
	assert.Equal(t, 1.0, h.counter("cohort_connector_pinterest_retries_total", acct), "the 503's call tried again")

	h.sim.SetFault(acctA, simulator.Fault{Status: 429, RetryAfter: time.Second})
	h.publishMembership(membership("c-calls", 1))
	require.Eventually(t, func() bool { return state("throttled") == 1 }, waitFor, tick)
	assert.Equal(t, 0.0, state("failing"))
	assert.Equal(t, 1.0, h.counter("cohort_connector_account_failing", acct), "a throttled account's last call failed")
	assert.Equal(t, connector.CheckWarn, h.accountCheck(acctA).State, "a 429 is waited out")
	assert.Contains(t, h.accountCheck(acctA).Detail, "rate_limited")
	assert.Positive(t, requests("4xx", "429"))

	h.sim.ClearFaults()
	require.Eventually(t, func() bool { return len(h.eventsFor(acctA, "c-calls")) == 2 }, waitFor, tick)
	require.Eventually(t, func() bool { return state("healthy") == 1 }, waitFor, tick)
	assert.Positive(t, h.counter("cohort_connector_pinterest_rate_limit_waits_total", acct), "a call after the 429 waited out its pause")
	assert.Greater(t, h.counter("cohort_connector_pinterest_rate_limit_wait_seconds_total", acct), 0.1)

	expiring.Store(true)
	assert.Equal(t, 1.0, state("token_expiring"))
	assert.Equal(t, 0.0, state("healthy"))
	assert.Equal(t, 0.0, h.counter("cohort_connector_account_failing", acct), "its calls succeed")
	h.requireNothingPending()
}
