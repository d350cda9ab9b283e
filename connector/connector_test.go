package connector_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/connector"
	"github.com/cohort-connector/cohort-connector/destinations/pinterest"
	"github.com/cohort-connector/cohort-connector/destinations/pinterest/simulator"
)

// sha256Hex is computed here, independently of the cohorts package.
func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func countIDs(rs []simulator.Received) map[string]int {
	out := map[string]int{}
	for _, r := range rs {
		out[r.Event.EventID]++
	}
	return out
}

func TestEveryMembershipOfAnActivatedCohortReachesItsAdAccountHashedAndCounted(t *testing.T) {
	h := newHarness(t, harnessConfig{activations: []cohorts.Activation{activation("c1-default", "c1", "")}})
	ms := memberships("c1", 0, 50)
	for _, m := range ms {
		h.publishMembership(m)
	}

	require.Eventually(t, func() bool { return len(h.sim.Received(acctA)) >= len(ms) }, waitFor, tick)
	h.requireNothingPending()

	got := h.sim.Received(acctA)
	require.Len(t, got, len(ms), "account A must get each membership exactly once")
	byID := map[string]simulator.Received{}
	for _, r := range got {
		require.NotContains(t, byID, r.Event.EventID, "duplicate event id")
		byID[r.Event.EventID] = r
	}
	for _, m := range ms {
		r, ok := byID[m.EventID()]
		require.True(t, ok, "event %s of %s missing", m.EventID(), m.UserID)
		ev := r.Event
		assert.Equal(t, pinterest.StatusProcessed, r.Status, m.UserID)
		assert.Equal(t, m.TS.Unix(), ev.EventTime, m.UserID)
		require.NotNil(t, ev.CustomData, m.UserID)
		assert.Equal(t, []string{"c1"}, ev.CustomData.ContentIDs, m.UserID)
		wantName := pinterest.ContentNameEnter
		if m.Action == cohorts.ActionExit {
			wantName = pinterest.ContentNameExit
		}
		assert.Equal(t, wantName, ev.CustomData.ContentName, m.UserID)
		ids, ud := m.Identifiers, ev.UserData
		switch {
		case ids.Email != "":
			assert.Equal(t, []string{sha256Hex(strings.ToLower(strings.TrimSpace(ids.Email)))}, ud.Em, m.UserID)
			assert.Empty(t, ud.HashedMaids, m.UserID)
			assert.Empty(t, ud.ClientIPAddress, m.UserID)
		case ids.MAID != "":
			assert.Equal(t, []string{sha256Hex(strings.ToLower(strings.TrimSpace(ids.MAID)))}, ud.HashedMaids, m.UserID)
			assert.Empty(t, ud.Em, m.UserID)
		default:
			assert.Equal(t, ids.IP, ud.ClientIPAddress, m.UserID)
			assert.Equal(t, ids.UserAgent, ud.ClientUserAgent, m.UserID)
			assert.Empty(t, ud.Em, m.UserID)
			assert.Empty(t, ud.HashedMaids, m.UserID)
		}
		raw, err := json.Marshal(ev)
		require.NoError(t, err)
		assert.NotContains(t, strings.ToLower(string(raw)), "example.com", "a plain email left the process")
	}

	assert.Empty(t, h.sim.Received(acctB))
	assert.Zero(t, h.sim.Stats(acctB).Requests)
	assert.Equal(t, connector.ActivationCounts{Received: 50, WithIdentifiers: 50, Sent: 50, Processed: 50},
		h.stats.Snapshot()["c1-default"])
	assert.Equal(t, 50.0, h.settled("ack", "ok"))
	assert.Equal(t, 50.0, h.counter("cohort_connector_delivery_latency_seconds", nil), "a latency per accepted change")
	assert.Zero(t, h.counter("cohort_connector_messages_redelivered_total", nil))
	assert.Empty(t, h.dlqMessages())
}

func TestActivationsRouteByTagAndHoldUnknownTagsUntilTheActivationIsFixed(t *testing.T) {
	unknown := activation("route-unknown", "c-unknown", "9999")
	h := newHarness(t, harnessConfig{
		maxDeliver: 50, // an unknown tag is held for a while: not dead-lettered meanwhile
		activations: []cohorts.Activation{
			activation("route-default", "c-default", ""),
			activation("route-override", "c-override", tagB),
			{ID: "route-disabled", CohortID: "c-disabled", Destination: cohorts.DestinationPinterest, Mode: cohorts.ModeEvents},
			unknown, // written straight to the bucket: no Check on the way
		},
	})
	var (
		def      = memberships("c-default", 0, 2)
		override = memberships("c-override", 0, 2)
		disabled = memberships("c-disabled", 0, 2)
		none     = memberships("c-none", 0, 2)
		held     = memberships("c-unknown", 0, 2)
	)
	for _, group := range [][]cohorts.Membership{def, override, disabled, none, held} {
		for _, m := range group {
			h.publishMembership(m)
		}
	}

	// Default tag → A, override 2001 → B, nothing else anywhere.
	require.Eventually(t, func() bool {
		return len(h.eventsFor(acctA, "c-default")) == 2 && len(h.eventsFor(acctB, "c-override")) == 2
	}, waitFor, tick)
	assert.ElementsMatch(t, eventIDs(def), slices.Collect(maps.Keys(countIDs(h.eventsFor(acctA, "c-default")))))
	assert.ElementsMatch(t, eventIDs(override), slices.Collect(maps.Keys(countIDs(h.eventsFor(acctB, "c-override")))))

	// Disabled and not activated: acked without a call.
	require.Eventually(t, func() bool { return h.settled("ack", "not_activated") == 4 }, waitFor, tick)
	for _, acct := range []string{acctA, acctB} {
		for _, c := range []string{"c-disabled", "c-none", "c-unknown"} {
			assert.Empty(t, h.eventsFor(acct, c), "%s got events of %s", acct, c)
		}
	}
	assert.Zero(t, h.stats.Snapshot()["route-disabled"].Received)
	assert.Equal(t, int64(2), h.stats.Snapshot()["route-disabled"].NotActivated, "its cohort's memberships while it is off")
	assert.Equal(t, 2.0, h.counter("cohort_connector_activation_not_activated_total", map[string]string{"activation_id": "route-disabled"}))

	// Unknown tag: held (nak, redelivered), never sent, never dead-lettered.
	require.Eventually(t, func() bool {
		ci := h.consumerInfo()
		return ci.NumRedelivered >= 2 && ci.NumPending+uint64(ci.NumAckPending) == 2 &&
			h.stats.Snapshot()["route-unknown"].Held >= 4
	}, waitFor, tick, "messages of an unknown tag must be redelivered, not acked")
	assert.GreaterOrEqual(t, h.settled("nak", "unknown_tag"), 4.0)
	assert.Empty(t, h.dlqMessages())
	assert.Empty(t, h.eventsFor(acctA, "c-unknown"))

	// Fixing the activation releases them to A.
	unknown.TagID = tagA2
	h.putActivation(unknown)
	require.Eventually(t, func() bool { return len(h.eventsFor(acctA, "c-unknown")) >= 2 }, waitFor, tick)
	h.requireNothingPending()
	assert.Equal(t, map[string]int{held[0].EventID(): 1, held[1].EventID(): 1}, countIDs(h.eventsFor(acctA, "c-unknown")))
	assert.Empty(t, h.eventsFor(acctB, "c-unknown"))
	assert.Empty(t, h.dlqMessages())
	got := h.stats.Snapshot()["route-unknown"]
	assert.Equal(t, int64(2), got.Received, "first deliveries only")
	assert.Equal(t, int64(2), got.Processed)
}

func TestOneFailingAccountDoesNotResendToTheHealthyOneAndCatchesUpWhenItRecovers(t *testing.T) {
	h := newHarness(t, harnessConfig{
		maxDeliver: 50,
		options:    func(o *connector.Options) { o.RetryDelayMax = 100 * time.Millisecond },
		activations: []cohorts.Activation{
			activation("fan-a", "c-fan", ""),
			activation("fan-b", "c-fan", tagB),
		},
	})
	h.sim.SetFault(acctB, simulator.Fault{Status: 503})
	ms := memberships("c-fan", 0, 20)
	for _, m := range ms {
		h.publishMembership(m)
	}

	require.Eventually(t, func() bool { return len(h.eventsFor(acctA, "c-fan")) >= 20 }, waitFor, tick)
	// B keeps failing over several redeliveries (2 attempts per call).
	require.Eventually(t, func() bool {
		return h.sim.Stats(acctB).Injected >= 8 && h.consumerInfo().NumRedelivered > 0
	}, waitFor, tick)
	assert.Positive(t, h.consumerPending(), "messages B has not accepted must not be acked")
	assert.Positive(t, h.counter("cohort_connector_messages_redelivered_total", nil), "B's messages come back")
	assert.Empty(t, h.sim.Received(acctB))
	ck := h.accountCheck(acctB)
	assert.Equal(t, connector.CheckWarn, ck.State, "a Pinterest outage is waited out: a warning, not unready")
	assert.Contains(t, ck.Detail, ": server_error: ")
	assert.Equal(t, 1.0, h.counter("cohort_connector_account_state", map[string]string{"ad_account_id": acctB, "state": "failing"}))
	assert.Equal(t, connector.CheckOK, h.accountCheck(acctA).State)
	assert.Empty(t, h.dlqMessages())

	h.sim.ClearFaults()
	require.Eventually(t, func() bool { return len(h.eventsFor(acctB, "c-fan")) >= 20 }, waitFor, tick)
	h.requireNothingPending()

	want := map[string]int{}
	for _, id := range eventIDs(ms) {
		want[id] = 1
	}
	assert.Equal(t, want, countIDs(h.eventsFor(acctB, "c-fan")), "B: every event once")
	gotA := h.sim.EventIDs(acctA)
	for _, id := range eventIDs(ms) {
		assert.GreaterOrEqual(t, gotA[id], 1, "A lost %s", id)
	}
	assert.Equal(t, want, gotA, "A: the memo must prevent re-sending what A already accepted")
	assert.Empty(t, h.dlqMessages())
	snap := h.stats.Snapshot()
	assert.Equal(t, int64(20), snap["fan-a"].Processed)
	assert.Equal(t, int64(20), snap["fan-b"].Processed)
	assert.Equal(t, int64(20), snap["fan-b"].Received)
	assert.Positive(t, snap["fan-b"].Held)
}

func TestAWrongTokenHoldsMessagesUntilTheTokenIsFixedAndLosesNone(t *testing.T) {
	h := newHarness(t, harnessConfig{
		maxDeliver:  50,
		activations: []cohorts.Activation{activation("auth-a", "c-auth", "")},
	})
	h.sim.SetToken(acctA, "other")
	ms := memberships("c-auth", 0, 10)
	for _, m := range ms {
		h.publishMembership(m)
	}

	require.Eventually(t, func() bool {
		return h.sim.Stats(acctA).Unauthorized >= 3 && h.consumerInfo().NumRedelivered > 0
	}, waitFor, tick, "401s must lead to redelivery")
	assert.Equal(t, uint64(10), h.consumerPending(), "nothing acked while the token is wrong")
	assert.Empty(t, h.dlqMessages(), "a destination fault is not a message fault")
	assert.Empty(t, h.sim.Received(acctA))
	assert.Equal(t, 1.0, h.counter("cohort_connector_account_failing", map[string]string{"ad_account_id": acctA}))
	assert.Positive(t, h.settled("nak", "auth"))
	assert.Equal(t, 1.0, h.counter("cohort_connector_account_state", map[string]string{"ad_account_id": acctA, "state": "auth_failing"}))
	assert.Equal(t, 0.0, h.counter("cohort_connector_account_state", map[string]string{"ad_account_id": acctA, "state": "healthy"}))
	ck := h.accountCheck(acctA)
	assert.Equal(t, connector.CheckFail, ck.State, "an account Pinterest refuses makes the daemon unready")
	assert.Regexp(t, `^failing since \d{4}-\d\d-\d\dT\S+Z \(\d+s\): auth: `, ck.Detail)

	h.sim.SetToken(acctA, tokenA)
	require.Eventually(t, func() bool { return len(h.eventsFor(acctA, "c-auth")) >= 10 }, waitFor, tick)
	h.requireNothingPending()
	want := map[string]int{}
	for _, id := range eventIDs(ms) {
		want[id] = 1
	}
	assert.Equal(t, want, countIDs(h.eventsFor(acctA, "c-auth")))
	assert.Empty(t, h.dlqMessages())
	assert.Equal(t, 0.0, h.counter("cohort_connector_account_failing", map[string]string{"ad_account_id": acctA}))
	assert.Equal(t, connector.Check{Name: "ad_account_" + acctA, State: connector.CheckOK}, h.accountCheck(acctA))
	assert.Equal(t, 1.0, h.counter("cohort_connector_account_state", map[string]string{"ad_account_id": acctA, "state": "healthy"}))
	assert.Equal(t, 0.0, h.counter("cohort_connector_account_state", map[string]string{"ad_account_id": acctA, "state": "auth_failing"}))
}

func TestUndecodableMessagesAreDeadLetteredVerbatimWithTheirReasonAndGoodOnesFlow(t *testing.T) {
	h := newHarness(t, harnessConfig{activations: []cohorts.Activation{activation("bad-a", "c-bad", "")}})
	ts := testEpoch.Format(time.RFC3339Nano)
	bad := []struct {
		reason string
		body   []byte
	}{
		{"malformed_json", []byte(`{"user_id":"u-x","cohort_id":"c-bad",`)},
		{"missing_field", []byte(`{"user_id":"u-y","action":"enter","ts":"` + ts + `","identifiers":{"email":"a@b.c"}}`)},
		{"invalid_field", []byte(`{"user_id":"u-z","cohort_id":"c-bad","action":"join","ts":"` + ts + `","identifiers":{"email":"a@b.c"}}`)},
	}
	good := memberships("c-bad", 0, 10)
	badSeq := map[uint64]int{}
	for i, m := range good {
		h.publishMembership(m)
		if i%3 == 1 {
			b := bad[i/3]
			badSeq[h.publish("c-bad", b.body)] = i / 3
		}
	}
	require.Len(t, badSeq, 3)

	require.Eventually(t, func() bool {
		return len(h.dlqMessages()) >= 3 && len(h.eventsFor(acctA, "c-bad")) >= 10
	}, waitFor, tick)
	h.requireNothingPending()

	dl := h.dlqMessages()
	require.Len(t, dl, 3)
	seen := map[uint64]bool{}
	for _, m := range dl {
		seq, err := strconv.ParseUint(m.Header.Get(connector.HeaderDLQSequence), 10, 64)
		require.NoError(t, err)
		i, ok := badSeq[seq]
		require.True(t, ok, "dead letter of sequence %d, which was not a bad message", seq)
		seen[seq] = true
		want := bad[i]
		assert.Equal(t, want.reason, m.Header.Get(connector.HeaderDLQReason), "seq %d", seq)
		assert.Equal(t, dlqSubject+"."+want.reason, m.Subject)
		assert.Equal(t, subjectPrefix+"c-bad", m.Header.Get(connector.HeaderDLQSubject))
		assert.Equal(t, "COHORTS", m.Header.Get(connector.HeaderDLQStream))
		assert.Equal(t, "1", m.Header.Get(connector.HeaderDLQDeliveries))
		assert.NotEmpty(t, m.Header.Get(connector.HeaderDLQDetail))
		assert.Equal(t, want.body, m.Data, "the dead letter's body must be the original, byte for byte")
		assert.Equal(t, 1.0, h.settled("term", want.reason))
	}
	assert.Len(t, seen, 3)

	want := map[string]int{}
	for _, id := range eventIDs(good) {
		want[id] = 1
	}
	assert.Equal(t, want, countIDs(h.eventsFor(acctA, "c-bad")))
}

func TestEventsPinterestRejectsAreDeadLetteredAndCountedAsFailed(t *testing.T) {
	h := newHarness(t, harnessConfig{activations: []cohorts.Activation{activation("rej-a", "c-rej", "")}})
	// Pinterest refuses the events as invalid, for a rule the spec does not
	// state (an unknown user is not one: it is processed).
	h.sim.SetFault(acctA, simulator.Fault{RejectEvents: "event_time is older than 7 days"})
	ms := memberships("c-rej", 0, 9)
	seqs := map[string]bool{}
	for _, m := range ms {
		seqs[strconv.FormatUint(h.publishMembership(m), 10)] = true
	}

	require.Eventually(t, func() bool { return len(h.dlqMessages()) >= len(ms) }, waitFor, tick)
	h.requireNothingPending()
	dl := h.dlqMessages()
	require.Len(t, dl, len(ms))
	for _, m := range dl {
		assert.Equal(t, "rejected_by_pinterest", m.Header.Get(connector.HeaderDLQReason))
		assert.Equal(t, "event_time is older than 7 days", m.Header.Get(connector.HeaderDLQDetail), "Pinterest's message")
		assert.True(t, seqs[m.Header.Get(connector.HeaderDLQSequence)], "unexpected sequence %s", m.Header.Get(connector.HeaderDLQSequence))
		delete(seqs, m.Header.Get(connector.HeaderDLQSequence))
	}
	assert.Empty(t, seqs, "every message is dead-lettered once")
	got := h.stats.Snapshot()["rej-a"]
	require.NotNil(t, got.LastError, "the activation's last error is Pinterest's refusal")
	assert.Equal(t, "rejected_by_pinterest", got.LastError.Reason)
	assert.Equal(t, "event_time is older than 7 days", got.LastError.Detail)
	got.LastError = nil
	assert.Equal(t, connector.ActivationCounts{Received: 9, WithIdentifiers: 9, Sent: 9, Failed: 9}, got)
	for reason, want := range map[string]float64{"rejected_by_pinterest": 9, "no_identifiers": 0, "no_list_identifiers": 0} {
		assert.Equal(t, want, h.counter("cohort_connector_activation_rejected_total", map[string]string{"activation_id": "rej-a", "reason": reason}), reason)
	}
	assert.Equal(t, int64(9), h.sim.Stats(acctA).Failed)
	assert.Equal(t, 9.0, h.settled("term", "rejected_by_pinterest"))
}

func TestTogglingAnActivationOffStopsForwardingWithinASecondAndOnResumesIt(t *testing.T) {
	act := activation("toggle", "c-toggle", "")
	h := newHarness(t, harnessConfig{activations: []cohorts.Activation{act}})
	first, whileOff, after := memberships("c-toggle", 0, 5), memberships("c-toggle", 5, 5), memberships("c-toggle", 10, 5)
	for _, m := range first {
		h.publishMembership(m)
	}
	require.Eventually(t, func() bool { return len(h.eventsFor(acctA, "c-toggle")) >= 5 }, waitFor, tick)
	h.requireNothingPending()

	act.Enabled = false
	h.kvPut(act)
	start := time.Now()
	require.Eventually(t, func() bool { return len(h.resolver.Resolve(whileOff[0])) == 0 }, time.Second, tick,
		"disabling must be applied within 1s")
	t.Logf("toggle off applied in %s", time.Since(start))

	for _, m := range whileOff {
		h.publishMembership(m)
	}
	require.Eventually(t, func() bool { return h.settled("ack", "not_activated") == 5 }, waitFor, tick)
	h.requireNothingPending()
	assert.Len(t, h.eventsFor(acctA, "c-toggle"), 5, "nothing new may be sent while disabled")

	act.Enabled = true
	h.kvPut(act)
	start = time.Now()
	require.Eventually(t, func() bool { return len(h.resolver.Resolve(after[0])) == 1 }, time.Second, tick,
		"enabling must be applied within 1s")
	t.Logf("toggle on applied in %s", time.Since(start))
	for _, m := range after {
		h.publishMembership(m)
	}
	require.Eventually(t, func() bool { return len(h.eventsFor(acctA, "c-toggle")) >= 10 }, waitFor, tick)
	h.requireNothingPending()

	want := map[string]int{}
	for _, id := range append(eventIDs(first), eventIDs(after)...) {
		want[id] = 1
	}
	assert.Equal(t, want, countIDs(h.eventsFor(acctA, "c-toggle")), "exactly the enabled-time memberships")
}

// TestShutdownFlushesTheOpenBatchAndAcksItBeforeRunReturns: the only
// sender is busy with a slow call, so 30 memberships wait in the open
// batch when Run is cancelled; they are sent and acked before Run returns.
func TestShutdownFlushesTheOpenBatchAndAcksItBeforeRunReturns(t *testing.T) {
	h := newHarness(t, harnessConfig{
		options: func(o *connector.Options) {
			o.BatchPeriod = 10 * time.Second
			o.BatchSize = 1000
			o.MaxInFlight = 1
			o.SlowCall = 10 * time.Second // the slow call is not a hanging account here
		},
		// The slow first call must not time out (and be retried, a second
		// request) while the test publishes: the harness's attempt
		// timeout is 500ms.
		client:      func(c *pinterest.Config) { c.AttemptTimeout, c.CallTimeout = 10*time.Second, 20*time.Second },
		activations: []cohorts.Activation{activation("flush-a", "c-flush", "")},
	})
	h.sim.SetFault(acctA, simulator.Fault{Latency: 3 * time.Second, Times: 1})
	ms := memberships("c-flush", 0, 31)
	h.publishMembership(ms[0])
	require.Eventually(t, func() bool { return h.sim.Stats(acctA).Requests == 1 }, waitFor, tick, "the slow first call")
	for _, m := range ms[1:] {
		h.publishMembership(m)
	}
	require.Eventually(t, func() bool {
		ci := h.consumerInfo()
		return ci.NumAckPending == 31 && ci.NumPending == 0
	}, waitFor, tick, "all 31 delivered to the process")
	require.Equal(t, int64(1), h.sim.Stats(acctA).Requests, "the 30 must still be in the open batch (its one sender busy)")

	took := h.stopRun(5 * time.Second)
	t.Logf("Run returned %s after cancel", took)

	// Flushed and answered before Run returned.
	want := map[string]int{}
	for _, id := range eventIDs(ms) {
		want[id] = 1
	}
	assert.Equal(t, want, countIDs(h.eventsFor(acctA, "c-flush")))
	assert.Equal(t, 31.0, h.settled("ack", "ok"))
	// The acks reach the server (fresh Info each poll).
	h.requireNothingPending()
	assert.Equal(t, uint64(31), h.consumerInfo().AckFloor.Stream)
}

func TestShutdownWhilePinterestHangsAcksNothingAndTheNextRunDeliversEverything(t *testing.T) {
	var logs logBuffer
	h := newHarness(t, harnessConfig{
		maxDeliver: 50,
		options: func(o *connector.Options) {
			o.DrainTimeout = 300 * time.Millisecond
			o.Logger = zerolog.New(&logs)
		},
		// The call must outlast DrainTimeout (and the 2s bound below), or the
		// client's own 500ms attempt timeout would end it first and the drain
		// bound would go untested. CallTimeout stays below AckWait (5s).
		client: func(c *pinterest.Config) {
			c.AttemptTimeout = 4 * time.Second
			c.CallTimeout = 4500 * time.Millisecond
		},
		activations: []cohorts.Activation{activation("hang-a", "c-hang", "")},
	})
	h.sim.SetFault(acctA, simulator.Fault{Latency: time.Minute})
	ms := memberships("c-hang", 0, 10)
	for _, m := range ms {
		h.publishMembership(m)
	}
	require.Eventually(t, func() bool {
		return h.consumerInfo().NumAckPending == 10 && h.sim.InFlight() > 0
	}, waitFor, tick, "a call must be hanging with all 10 delivered")

	took := h.stopRun(2 * time.Second)
	t.Logf("Run returned %s after cancel", took)

	assert.Less(t, took, time.Second, "DrainTimeout (300ms) must bound the shutdown")
	assert.Empty(t, h.sim.Received(acctA))
	assert.Zero(t, h.settled("ack", "ok"), "nothing Pinterest did not accept may be acked")
	assert.Equal(t, 10.0, h.settled("nak", "shutdown"), "the cancelled call's messages are nak'd for prompt redelivery")
	last := logs.lines("shutdown: every message settled")
	require.Len(t, last, 1)
	assert.Equal(t, 10.0, last[0]["handed_back"], "the shutdown says how many it handed back")
	assert.Empty(t, h.dlqMessages())
	ci := h.consumerInfo()
	assert.Equal(t, uint64(10), ci.NumPending+uint64(ci.NumAckPending), "all 10 still owed")
	assert.Zero(t, ci.AckFloor.Stream, "nothing acked")

	h.sim.ClearFaults()
	h.startRun()
	require.Eventually(t, func() bool { return len(h.eventsFor(acctA, "c-hang")) >= 10 }, waitFor, tick)
	h.requireNothingPending()
	want := map[string]int{}
	for _, id := range eventIDs(ms) {
		want[id] = 1
	}
	assert.Equal(t, want, countIDs(h.eventsFor(acctA, "c-hang")))
	assert.Empty(t, h.dlqMessages())
}

func TestAMessageThatFailsAtEveryDeliveryIsDeadLetteredAtMaxDeliver(t *testing.T) {
	h := newHarness(t, harnessConfig{
		maxDeliver:  3,
		options:     func(o *connector.Options) { o.RetryDelayMin = 20 * time.Millisecond },
		activations: []cohorts.Activation{activation("max-a", "c-max", "")},
	})
	h.sim.SetFault(acctA, simulator.Fault{Status: 500})
	m := membership("c-max", 0)
	body, err := json.Marshal(m)
	require.NoError(t, err)
	seq := h.publish("c-max", body)

	require.Eventually(t, func() bool { return len(h.dlqMessages()) >= 1 }, waitFor, tick)
	h.requireNothingPending()
	dl := h.dlqMessages()
	require.Len(t, dl, 1)
	d := dl[0]
	assert.Equal(t, "max_deliveries", d.Header.Get(connector.HeaderDLQReason))
	assert.Equal(t, dlqSubject+".max_deliveries", d.Subject)
	assert.Equal(t, "3", d.Header.Get(connector.HeaderDLQDeliveries))
	assert.Equal(t, fmt.Sprint(seq), d.Header.Get(connector.HeaderDLQSequence))
	assert.Contains(t, d.Header.Get(connector.HeaderDLQDetail), "server_error")
	assert.Equal(t, body, d.Data)
	assert.Equal(t, int64(6), h.sim.Stats(acctA).Injected, "3 deliveries × 2 attempts")
	assert.Equal(t, 2.0, h.settled("nak", "server_error"))
	assert.Equal(t, 1.0, h.settled("term", "max_deliveries"))
	assert.Empty(t, h.sim.Received(acctA))
}

func TestADeadLetterDoesNotInheritTheOriginalsPublishExpectations(t *testing.T) {

	h := newHarness(t, harnessConfig{activations: []cohorts.Activation{activation("exp-a", "c-exp", "")}})
	good := membership("c-exp", 0)
	body, err := json.Marshal(good)
	require.NoError(t, err)
	// A producer keeping per-subject order with optimistic concurrency.
	ack, err := h.js.Publish(t.Context(), subjectPrefix+"c-exp", body, jetstream.WithExpectLastSequencePerSubject(0))
	require.NoError(t, err)
	bad := nats.NewMsg(subjectPrefix + "c-exp")
	bad.Data = []byte(`{"user_id":"u-bad",`)
	badAck, err := h.js.PublishMsg(t.Context(), bad, jetstream.WithExpectLastSequencePerSubject(ack.Sequence))
	require.NoError(t, err)

	require.Eventually(t, func() bool { return len(h.eventsFor(acctA, "c-exp")) == 1 }, waitFor, tick)
	h.requireNothingPending()
	dl := h.dlqMessages()
	require.Len(t, dl, 1, "the bad message must be dead-lettered, not lost")
	assert.Equal(t, "malformed_json", dl[0].Header.Get(connector.HeaderDLQReason))
	assert.Equal(t, fmt.Sprint(badAck.Sequence), dl[0].Header.Get(connector.HeaderDLQSequence))
	assert.Equal(t, bad.Data, dl[0].Data)
	assert.Zero(t, h.settled("nak", "dlq_publish_failed"))
}

func TestRunReportsAClosedNATSConnectionAsAnErrorNotACleanShutdown(t *testing.T) {

	h := newHarness(t, harnessConfig{activations: []cohorts.Activation{activation("close-a", "c-close", "")}})
	h.publishMembership(membership("c-close", 0))
	require.Eventually(t, func() bool { return len(h.eventsFor(acctA, "c-close")) == 1 }, waitFor, tick)
	h.requireNothingPending()

	r := h.takeRun()
	defer r.cancel()
	h.stopWatcher() // it rightly fails on a closed connection: not under test here
	h.nc.Close()
	select {
	case err := <-r.done:
		require.Error(t, err, "the connection closed under Run: not a clean shutdown")
		assert.True(t, errors.Is(err, jetstream.ErrConnectionClosed) || errors.Is(err, nats.ErrConnectionClosed),
			"want a connection-closed error, got %v", err)
	case <-time.After(waitFor):
		t.Fatal("Run did not return after its NATS connection closed")
	}
}

func TestABodyWhoseCohortDiffersFromItsSubjectIsDeadLetteredNotRouted(t *testing.T) {
	h := newHarness(t, harnessConfig{activations: []cohorts.Activation{
		activation("subj-a", "c-subj-a", ""), activation("subj-b", "c-subj-b", tagB)}})
	// Published on c-subj-a's subject, but the body says c-subj-b: routing
	// by the body would send it to B, which the producer never meant.
	stray := memberships("c-subj-b", 0, 1)[0]
	body, err := json.Marshal(stray)
	require.NoError(t, err)
	seq := h.publish("c-subj-a", body)
	good := memberships("c-subj-a", 1, 1)[0]
	h.publishMembership(good)

	require.Eventually(t, func() bool { return len(h.dlqMessages()) == 1 && len(h.eventsFor(acctA, "c-subj-a")) == 1 }, waitFor, tick)
	h.requireNothingPending()
	dl := h.dlqMessages()[0]
	assert.Equal(t, "invalid_field", dl.Header.Get(connector.HeaderDLQReason))
	assert.Equal(t, strconv.FormatUint(seq, 10), dl.Header.Get(connector.HeaderDLQSequence))
	assert.Contains(t, dl.Header.Get(connector.HeaderDLQDetail), `"c-subj-b" differs from the subject's "c-subj-a"`)
	assert.Empty(t, h.sim.Received(acctB), "nothing reached the body's cohort's account")
}

// The liveness check fails when the loop has not turned for 30s: a
// wedged loop is only mended by a restart.
func TestAliveFailsWhenTheLoopHasNotTurnedFor30s(t *testing.T) {
	h := newHarness(t, harnessConfig{activations: []cohorts.Activation{activation("alive-a", "c-alive", "")}})
	h.mu.Lock()
	conn := h.run.conn
	h.mu.Unlock()
	// OK before the loop starts; once it runs, a minute without a turn fails.
	require.Eventually(t, func() bool { return conn.Alive(time.Now().Add(time.Minute)).State == connector.CheckFail }, waitFor, tick)
	assert.Equal(t, connector.CheckOK, conn.Alive(time.Now()).State, "it turns at least every second")
	later := conn.Alive(time.Now().Add(time.Minute))
	assert.Regexp(t, `^has not turned for 1m\d+s$`, later.Detail)
	assert.Equal(t, connector.CheckLoop, later.Name)
}
