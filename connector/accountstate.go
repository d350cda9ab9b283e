package connector

import (
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cohort-connector/cohort-connector/destinations"
)

// AccountState is an ad account's health as the metrics, /status and
// /readyz show it (cohort_connector_account_state).
type AccountState string

// The states of an ad account, the first that applies.
const (
	AccountHealthy AccountState = "healthy"
	// AccountAuthFailing: Pinterest refuses its token, ad account or base
	// URL (401, 403, 404, a redirect): someone must act.
	AccountAuthFailing AccountState = "auth_failing"
	// AccountFailing: its calls fail for a passing reason (5xx, timeouts,
	// network errors): waited out.
	AccountFailing AccountState = "failing"
	// AccountThrottled: its last call was refused with a 429 (or could
	// not wait for the call budget): waited out, at a lower rate.
	AccountThrottled AccountState = "throttled"
	// AccountTokenExpiring: its calls succeed, but its OAuth refresh
	// token expires within the keeper's warning time, or a refresh was
	// refused: someone must re-authorise the app before the calls fail.
	AccountTokenExpiring AccountState = "token_expiring"
)

// AccountStates lists every AccountState.
var AccountStates = []AccountState{AccountHealthy, AccountAuthFailing, AccountFailing, AccountThrottled, AccountTokenExpiring}

// stateOf is the state of an account whose calls fail for reason.
func stateOf(reason destinations.Reason) AccountState {
	switch {
	case reason.DestinationFault():
		return AccountAuthFailing
	case reason == destinations.ReasonRateLimited:
		return AccountThrottled
	}
	return AccountFailing
}

// accountState is the state of an account whose calls are in state calls
// (a lane's), given whether its token is expiring: a failure of the calls
// comes first, being what is happening now.
func accountState(calls AccountState, tokenExpiring bool) AccountState {
	if calls == AccountHealthy && tokenExpiring {
		return AccountTokenExpiring
	}
	return calls
}

var (
	descAccountState = prometheus.NewDesc("cohort_connector_account_state",
		"1 for the ad account's current state, 0 for the others: healthy; auth_failing (Pinterest refuses its token, ad account or base URL: someone must act); failing (5xx, timeouts: waited out); throttled (429: waited out at a lower rate); token_expiring (calls succeed, but the OAuth refresh token expires within 7 days or a refresh was refused).",
		[]string{"ad_account_id", "state"}, nil)
	descAccountFailing = prometheus.NewDesc("cohort_connector_account_failing",
		"1 while the last call for the ad account failed (auth_failing, failing or throttled), else 0.",
		[]string{"ad_account_id"}, nil)
)

// accountStates are the ad accounts' states as the lanes last reported
// them, exposed at scrape time with the token keepers' view (a token's
// expiry comes with time, not with a call).
type accountStates struct {
	mu       sync.Mutex
	calls    map[string]AccountState
	expiring atomic.Pointer[func(adAccountID string) bool]
}

func newAccountStates(accounts []string) *accountStates {
	s := &accountStates{calls: make(map[string]AccountState, len(accounts))}
	for _, a := range accounts {
		s.calls[a] = AccountHealthy
	}
	return s
}

func (s *accountStates) set(adAccountID string, state AccountState) {
	s.mu.Lock()
	s.calls[adAccountID] = state
	s.mu.Unlock()
}

// watchTokens sets what says whether an account's token is expiring; nil
// for none.
func (s *accountStates) watchTokens(expiring func(adAccountID string) bool) {
	if expiring != nil {
		s.expiring.Store(&expiring)
	}
}

func (s *accountStates) tokenExpiring(adAccountID string) bool {
	f := s.expiring.Load()
	return f != nil && (*f)(adAccountID)
}

func (s *accountStates) Describe(ch chan<- *prometheus.Desc) {
	ch <- descAccountState
	ch <- descAccountFailing
}

func (s *accountStates) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	calls := maps.Clone(s.calls)
	s.mu.Unlock()
	for _, a := range slices.Sorted(maps.Keys(calls)) {
		cur := accountState(calls[a], s.tokenExpiring(a))
		for _, st := range AccountStates {
			ch <- prometheus.MustNewConstMetric(descAccountState, prometheus.GaugeValue, boolValue(st == cur), a, string(st))
		}
		ch <- prometheus.MustNewConstMetric(descAccountFailing, prometheus.GaugeValue, boolValue(calls[a] != AccountHealthy), a)
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
