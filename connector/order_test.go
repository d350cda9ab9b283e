package connector_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/connector"
	"github.com/cohort-connector/cohort-connector/destinations/pinterest"
	"github.com/cohort-connector/cohort-connector/destinations/pinterest/simulator"
)

// enterExit is user i's enter followed, one second later, by its exit.
func enterExit(cohort string, i int) (cohorts.Membership, cohorts.Membership) {
	enter := cohorts.Membership{UserID: fmt.Sprintf("ord-%d", i), CohortID: cohort, Action: cohorts.ActionEnter,
		TS:          testEpoch.Add(time.Duration(i) * time.Millisecond),
		Identifiers: cohorts.Identifiers{Email: fmt.Sprintf("ord%d@example.com", i)}}
	exit := enter
	exit.Action = cohorts.ActionExit
	exit.TS = enter.TS.Add(time.Second)
	return enter, exit
}

func TestAnExitNeverReachesPinterestBeforeItsEnterEvenWhenTheEnterIsRetried(t *testing.T) {
	h := newHarness(t, harnessConfig{
		maxDeliver: 50,
		options: func(o *connector.Options) {
			// One event per call: the enter's call can fail while the
			// exit's next call succeeds, the case that reorders.
			o.BatchSize = 1
			o.MaxInFlight = 1
			o.RetryDelayMax = 200 * time.Millisecond
			o.OrderWait = 30 * time.Millisecond
		},
		client:      func(c *pinterest.Config) { c.CallsPerMinute = -1 },
		activations: []cohorts.Activation{activation("ord-a", "c-ord", "")},
	})
	// The first call fails (both of its attempts): it carries the first
	// enter, which is retried while its exit is already here.
	h.sim.SetFault(acctA, simulator.Fault{Status: 503, Times: 2})
	const users = 100
	for i := range users {
		enter, exit := enterExit("c-ord", i)
		h.publishMembership(enter)
		h.publishMembership(exit)
	}
	require.Eventually(t, func() bool { return len(h.eventsFor(acctA, "c-ord")) >= 2*users }, waitFor, tick)
	h.requireNothingPending()

	firstSeen := map[string]int{} // event id → index of its first arrival
	for i, r := range h.eventsFor(acctA, "c-ord") {
		if _, ok := firstSeen[r.Event.EventID]; !ok {
			firstSeen[r.Event.EventID] = i
		}
	}
	for i := range users {
		enter, exit := enterExit("c-ord", i)
		e, okE := firstSeen[enter.EventID()]
		x, okX := firstSeen[exit.EventID()]
		require.True(t, okE && okX, "user %d: both changes delivered", i)
		assert.Less(t, e, x, "user %d: the exit reached Pinterest before its enter", i)
	}
	assert.Positive(t, h.sim.Stats(acctA).Injected, "the fault was hit")
	assert.Positive(t, h.settled("nak", "waiting_for_earlier"), "some exits had to wait for their enter")
	assert.Empty(t, h.dlqMessages())
}

func TestAnExitPublishedAfterARestartWaitsForItsEnterStillAwaitingRedelivery(t *testing.T) {
	h := newHarness(t, harnessConfig{
		maxDeliver:  50,
		orderBucket: true,
		options: func(o *connector.Options) {
			o.RetryDelayMin = time.Second // the enter's first redelivery delay
			o.RetryDelayMax = 2 * time.Second
			o.OrderWait = 30 * time.Millisecond
		},
		activations: []cohorts.Activation{activation("rst-a", "c-rst", "")},
	})
	enter, exit := enterExit("c-rst", 1)

	// The enter's call fails (both attempts): it is nak'd for 1 s and a
	// record of it is written to the order bucket.
	h.sim.SetFault(acctA, simulator.Fault{Status: 503, Times: 2})
	h.publishMembership(enter)
	require.Eventually(t, func() bool { return h.settled("nak", "server_error") >= 1 }, waitFor, tick)
	require.Eventually(t, func() bool { return h.orderRecords() == 1 }, waitFor, tick,
		"the nak'd enter has a record in the order bucket")

	// Restart: a fresh Connector knows nothing but what the bucket holds.
	h.stopRun(waitFor)
	h.startRun()
	// The exit is published after the restart, while the enter still
	// waits for its redelivery.
	h.publishMembership(exit)

	require.Eventually(t, func() bool { return len(h.eventsFor(acctA, "c-rst")) >= 2 }, waitFor, tick)
	h.requireNothingPending()
	got := h.eventsFor(acctA, "c-rst")
	assert.Equal(t, enter.EventID(), got[0].Event.EventID, "the enter reached Pinterest first")
	assert.Equal(t, exit.EventID(), got[1].Event.EventID)
	assert.Positive(t, h.settled("nak", "waiting_for_earlier"), "the exit waited for its enter")
	require.Eventually(t, func() bool { return h.orderRecords() == 0 }, waitFor, tick,
		"the record is deleted once the enter is acked")
}

// orderRecords counts the live records of the order bucket, -1 on error.
func (h *harness) orderRecords() int {
	keys, err := h.objs.Order.ListKeys(h.t.Context(), jetstream.IgnoreDeletes())
	if err != nil {
		return -1
	}
	n := 0
	for range keys.Keys() {
		n++
	}
	return n
}
