package connector_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/connector"
	"github.com/cohort-connector/cohort-connector/destinations"
	"github.com/cohort-connector/cohort-connector/destinations/pinterest"
	"github.com/cohort-connector/cohort-connector/destinations/pinterest/simulator"
)

// lateToken is a TokenSource whose token is set once the simulator has
// issued one (after the harness, and so the client, exist).
type lateToken struct{ v atomic.Pointer[string] }

func (l *lateToken) Token(context.Context) (string, error) {
	if p := l.v.Load(); p != nil {
		return *p, nil
	}
	return "", errors.New("no access token yet")
}

// listHarness is a harness with one customer_list activation "list-a" of
// cohort "c-list" at account A, its list created in the simulator through
// the OAuth flow.
func listHarness(t *testing.T, cfg harnessConfig) (*harness, string) {
	h, create := listHarnessLate(t, cfg)
	return h, create()
}

// listHarnessLate is listHarness whose list is created when create is
// called: until then, the connector is told it does not exist yet.
func listHarnessLate(t *testing.T, cfg harnessConfig) (h *harness, create func() string) {
	tok := &lateToken{}
	var listID atomic.Pointer[string]
	a := activation("list-a", "c-list", "")
	a.Mode = cohorts.ModeCustomerList
	cfg.activations = append(cfg.activations, a)
	cfg.stateBucket = true
	cfg.client = func(c *pinterest.Config) { c.AdsTokens = map[string]destinations.TokenSource{acctA: tok} }
	options := cfg.options
	cfg.options = func(o *connector.Options) {
		o.CustomerLists = func(id string) string {
			if p := listID.Load(); p != nil && id == "list-a" {
				return *p
			}
			return ""
		}
		if options != nil {
			options(o)
		}
	}
	h = newHarness(t, cfg)
	h.sim.AddApp("9001", "app-secret", "refresh-1", acctA)
	grant, err := h.client.RefreshToken(t.Context(), "9001", "app-secret", "refresh-1")
	require.NoError(t, err)
	tok.v.Store(&grant.AccessToken)
	return h, func() string {
		list, err := h.client.CreateCustomerList(t.Context(), acctA, "cohort-connector · list-a · cohort c-list")
		require.NoError(t, err)
		listID.Store(&list.ID)
		return list.ID
	}
}

// TestAChangeWaitsWholeForItsCustomerListToExist: cohort c-list has an
// events activation and a customer_list activation at account A. While the
// list does not exist, neither share is sent (a delivery goes to an
// account whole: had the event been accepted alone, the account would be
// done for it and the list never reached); once it exists, every enter is
// in the list and every event arrived, nothing dead-lettered.
func TestAChangeWaitsWholeForItsCustomerListToExist(t *testing.T) {
	h, create := listHarnessLate(t, harnessConfig{orderBucket: true, maxDeliver: 50, quiet: true,
		activations: []cohorts.Activation{activation("events-a", "c-list", "")},
		options:     func(o *connector.Options) { o.RetryDelayMax = 200 * time.Millisecond }})
	ms := make([]cohorts.Membership, 40)
	var want []string
	for i := range ms {
		ms[i] = cohorts.Membership{UserID: fmt.Sprintf("u%02d", i), CohortID: "c-list", Action: cohorts.ActionEnter,
			TS: time.Now().Add(-time.Minute), Identifiers: cohorts.Identifiers{Email: fmt.Sprintf("u%02d@example.com", i)}}
		want = append(want, ms[i].Identifiers.Hash().Em)
		h.publishMembership(ms[i])
	}
	slices.Sort(want)
	require.Eventually(t, func() bool { return h.settled("nak", "audience_pending") >= 40 }, waitFor, tick)
	require.Empty(t, h.eventsFor(acctA, "c-list"), "no event sent while the list does not exist")
	listID := create()
	require.Eventually(t, func() bool { return slices.Equal(want, h.sim.ListMembers(acctA, listID)) }, waitFor, tick)
	h.requireNothingPending()
	require.Equal(t, map[string]int(countIDs(h.eventsFor(acctA, "c-list"))), wantOnce(ms))
	require.Empty(t, h.dlqMessages())
}

// TestAnExitWaitsForItsEnterHeldUntilTheListExists: the enters of 40 users
// arrive while their customer list does not exist, and are nak'd for a
// second. The list is created and the users' exits published at once:
// they arrive before the enters come back, and must wait for them (found
// by fault row C2: an enter held for its list kept no place in the order,
// and its exit was applied first).
func TestAnExitWaitsForItsEnterHeldUntilTheListExists(t *testing.T) {
	h, create := listHarnessLate(t, harnessConfig{orderBucket: true, maxDeliver: 50, quiet: true,
		options: func(o *connector.Options) {
			o.RetryDelayMin, o.RetryDelayMax, o.OrderWait = time.Second, time.Second, 50*time.Millisecond
		}})
	const users = 40
	exits := make([]cohorts.Membership, users)
	for i := range exits {
		enter := cohorts.Membership{UserID: fmt.Sprintf("u%02d", i), CohortID: "c-list", Action: cohorts.ActionEnter,
			TS: time.Now().Add(-time.Minute), Identifiers: cohorts.Identifiers{Email: fmt.Sprintf("u%02d@example.com", i)}}
		h.publishMembership(enter)
		exits[i] = enter
		exits[i].Action, exits[i].TS = cohorts.ActionExit, enter.TS.Add(time.Second)
	}
	require.Eventually(t, func() bool { return h.settled("nak", "audience_pending") >= users }, waitFor, tick)
	listID := create()
	for _, m := range exits {
		h.publishMembership(m)
	}
	require.Eventually(t, func() bool {
		added, removed := h.sim.CustomerListRecords(acctA, listID)
		return added == users && removed == users
	}, waitFor, tick, "every enter added and every exit removed")
	h.requireNothingPending()
	require.Empty(t, h.sim.RemovedFirst(acctA, listID), "users whose exit reached the list before their enter")
	require.Empty(t, h.sim.ListMembers(acctA, listID))
	require.Positive(t, h.settled("nak", "waiting_for_earlier"), "no exit had to wait: the test did not reach the case")
	require.Empty(t, h.dlqMessages())
}

// wantOnce is every membership's event id, once.
func wantOnce(ms []cohorts.Membership) map[string]int {
	out := map[string]int{}
	for _, m := range ms {
		out[m.EventID()] = 1
	}
	return out
}

// TestCustomerListHoldsExactlyTheCurrentMembers: after rounds of random
// enters and exits of 400 users, with older changes published again late
// (out of order) and Pinterest failing calls now and then, the customer
// list holds exactly the users whose latest change is an enter, and nothing
// valid was dead-lettered. Each round is settled before the next is
// published: a user changes a few times a round, as users do, not dozens
// of times in a second (a chain that long exhausts MaxDeliver while each
// change waits for the one before it; see the README's per-user order).
func TestCustomerListHoldsExactlyTheCurrentMembers(t *testing.T) {
	h, listID := listHarness(t, harnessConfig{orderBucket: true, maxDeliver: 50, quiet: true,
		options: func(o *connector.Options) { o.RetryDelayMax, o.OrderWait = 500*time.Millisecond, 50*time.Millisecond }})
	rng := rand.New(rand.NewPCG(7, 8))
	t0 := time.Now().Add(-2 * time.Hour).Truncate(time.Second)
	latest := map[int]cohorts.Membership{}
	var history []cohorts.Membership
	published := 0
	for round := range 6 {
		if round%2 == 1 {
			h.sim.SetFault(acctA, simulator.Fault{Status: 503, Times: 3})
		}
		for _, u := range rng.Perm(400)[:200] {
			m := cohorts.Membership{UserID: fmt.Sprintf("u%03d", u), CohortID: "c-list", Action: cohorts.ActionEnter,
				TS: t0.Add(time.Duration(published) * time.Second), Identifiers: cohorts.Identifiers{Email: fmt.Sprintf("u%03d@example.com", u)}}
			if prev, ok := latest[u]; ok && prev.Action == cohorts.ActionEnter {
				m.Action = cohorts.ActionExit
			}
			latest[u] = m
			history = append(history, m)
			h.publishMembership(m)
			published++
			if published%10 == 0 { // an older change of some user, published again late
				h.publishMembership(history[rng.IntN(len(history))])
			}
		}
		require.Eventually(t, func() bool { return h.consumerPending() == 0 }, 4*waitFor, tick, "round %d", round)
	}
	var want []string
	for _, m := range latest {
		if m.Action == cohorts.ActionEnter {
			want = append(want, m.Identifiers.Hash().Em)
		}
	}
	slices.Sort(want)
	require.Empty(t, h.dlqMessages(), "nothing valid is dead-lettered")
	require.Equal(t, want, h.sim.ListMembers(acctA, listID), "the list holds the users whose latest change is an enter")
	require.Positive(t, h.sim.Stats(acctA).Injected, "the injected failures happened")
	// The connector's own member count (the match rate's denominator)
	// agrees, once flushed to the state bucket.
	var members int64
	require.Eventually(t, func() bool {
		var err error
		members, err = connector.ReadListMembers(t.Context(), h.objs.State, listID)
		return err == nil && members == int64(len(want))
	}, waitFor, tick, "member count %d, want %d", members, len(want))
	t.Logf("%d users, %d in the list, %d changes + %d late older copies, %d injected failures",
		len(latest), len(want), published, published/10, h.sim.Stats(acctA).Injected)
}

// A customer_list activation counts, by reason, the changes it can never
// take: a user known only by IP and user agent (no_list_identifiers: a
// list holds emails and mobile ad ids), one with no identifier at all
// (no_identifiers). The user with an email is in the list.
func TestACustomerListCountsWhatItCannotTakeByReason(t *testing.T) {
	h, listID := listHarness(t, harnessConfig{})
	for i, ids := range []cohorts.Identifiers{{Email: "u0@example.com"}, {IP: "203.0.113.9", UserAgent: "Mozilla/5.0"}, {}} {
		h.publishMembership(cohorts.Membership{UserID: fmt.Sprintf("u%d", i), CohortID: "c-list", Action: cohorts.ActionEnter,
			TS: time.Now().Add(-time.Minute), Identifiers: ids})
	}
	require.Eventually(t, func() bool {
		return h.settled("ack", "ok") == 1 && h.settled("ack", "no_list_identifiers") == 1 && h.settled("ack", "no_identifiers") == 1
	}, waitFor, tick)
	h.requireNothingPending()
	assert.Len(t, h.sim.ListMembers(acctA, listID), 1)
	for reason, want := range map[string]float64{"rejected_by_pinterest": 0, "no_identifiers": 1, "no_list_identifiers": 1} {
		assert.Equal(t, want, h.counter("cohort_connector_activation_rejected_total", map[string]string{"activation_id": "list-a", "reason": reason}), reason)
	}
	got := h.stats.Snapshot()["list-a"]
	assert.Equal(t, connector.ActivationCounts{Received: 3, WithIdentifiers: 2, Sent: 1, Processed: 1, NoListIdentifiers: 1}, got)
}
