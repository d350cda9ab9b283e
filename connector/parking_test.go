package connector_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/connector"
	"github.com/cohort-connector/cohort-connector/destinations/pinterest/simulator"
)

// parkedPending is what A's parking consumer still owes.
func (h *harness) parkedPending(account string) uint64 {
	h.t.Helper()
	cons, err := h.js.Consumer(h.t.Context(), h.topo.ParkingStream, h.topo.Durable+"-parked-"+account)
	require.NoError(h.t, err)
	ci, err := cons.Info(h.t.Context())
	require.NoError(h.t, err)
	return ci.NumPending + uint64(ci.NumAckPending)
}

func TestAFailingAccountsMessagesAreParkedSoTheOthersNeverStallAndArriveWhenItRecovers(t *testing.T) {
	h := newHarness(t, harnessConfig{
		maxDeliver:    50,
		maxAckPending: 100, // far fewer than A's messages: without parking B would stall
		parking:       true,
		options: func(o *connector.Options) {
			o.RetryDelayMax = 200 * time.Millisecond
		},
		activations: []cohorts.Activation{activation("park-a", "c-park-a", ""), activation("park-b", "c-park-b", tagB)},
	})
	h.sim.SetFault(acctA, simulator.Fault{Status: 503})
	msA, msB := memberships("c-park-a", 0, 300), memberships("c-park-b", 0, 300)
	for i := range msA {
		h.publishMembership(msA[i])
		h.publishMembership(msB[i])
	}

	require.Eventually(t, func() bool { return len(h.eventsFor(acctB, "c-park-b")) >= 300 }, waitFor, tick,
		"B receives everything while A fails")
	require.Eventually(t, func() bool { return h.consumerPending() == 0 }, waitFor, tick,
		"the main consumer is not held up by A: A's messages wait in A's parking consumer")
	assert.Empty(t, h.sim.Received(acctA))
	assert.Positive(t, h.parkedPending(acctA))
	assert.Positive(t, h.settled("ack", "parked"))
	assert.Positive(t, h.counter("cohort_connector_messages_parked_total", map[string]string{"ad_account_id": acctA}))
	assert.Zero(t, h.counter("cohort_connector_messages_parked_total", map[string]string{"ad_account_id": acctB}))

	h.sim.ClearFaults()
	require.Eventually(t, func() bool { return len(h.eventsFor(acctA, "c-park-a")) >= 300 && h.parkedPending(acctA) == 0 },
		waitFor, tick, "A's parked messages arrive once A recovers")
	got := h.sim.EventIDs(acctA)
	for _, id := range eventIDs(msA) {
		assert.GreaterOrEqual(t, got[id], 1, "A lost %s", id)
	}
	assert.Empty(t, h.dlqMessages())
	snap := h.stats.Snapshot()
	assert.Equal(t, int64(300), snap["park-a"].Received, "a parked copy is not counted as received again")
	assert.Equal(t, int64(300), snap["park-a"].Processed)
}

func TestAParkedEnterStillComesBeforeItsExit(t *testing.T) {
	h := newHarness(t, harnessConfig{
		maxDeliver: 50,
		parking:    true,
		options: func(o *connector.Options) {
			o.RetryDelayMin = 100 * time.Millisecond
			o.RetryDelayMax = 200 * time.Millisecond
			o.OrderWait = 30 * time.Millisecond
		},
		activations: []cohorts.Activation{activation("pord-a", "c-pord", "")},
	})
	// The enter's call fails, so it is parked; its parked copy's first call
	// fails too (2 attempts each), so it waits for a redelivery. The exit,
	// published then, must wait for the parked enter.
	h.sim.SetFault(acctA, simulator.Fault{Status: 503, Times: 4})
	enter, exit := enterExit("c-pord", 7)
	h.publishMembership(enter)
	require.Eventually(t, func() bool { return h.settled("ack", "parked") >= 1 && h.sim.Stats(acctA).Injected == 4 }, waitFor, tick)
	h.publishMembership(exit)

	require.Eventually(t, func() bool { return len(h.eventsFor(acctA, "c-pord")) >= 2 }, waitFor, tick)
	got := h.eventsFor(acctA, "c-pord")
	assert.Equal(t, enter.EventID(), got[0].Event.EventID, "the parked enter reached Pinterest first")
	assert.Equal(t, exit.EventID(), got[1].Event.EventID)
	require.Eventually(t, func() bool { return h.parkedPending(acctA) == 0 && h.consumerPending() == 0 }, waitFor, tick)
}
