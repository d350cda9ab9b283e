package faults_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/destinations/pinterest/simulator"
)

// The rows that combine faults (L1–L7). Each one reproduces a way
// the daemon lost, dead-lettered or reordered messages, and states what
// must hold instead.
//
// Where a finding is about losing messages rather than about order, its
// data are enters of distinct users, not the standard enter/exit pairs: an
// exit waits for its enter, so a held enter would also hold its exit and
// the scenario would measure that wait instead of the loss.

// unknownTag is a Tag ID that no account of the env owns.
const unknownTag = "9999"

// parkedDurable is the name of ad account acct's parking consumer on
// parkingStream (the daemon's <CONNECTOR_DURABLE>-parked-<ad_account_id>).
func parkedDurable(acct string) string { return durableName + "-parked-" + acct }

// enters returns the enters of n distinct users from.. of cohort, each
// expected at the given accounts.
func (e *env) enters(cohort string, from, n int, accounts ...string) []outMsg {
	out := make([]outMsg, n)
	for k := range out {
		d := membership(cohort, from+k, "enter")
		for _, acct := range accounts {
			e.expect(acct, d)
		}
		out[k] = outMsg{subject: subjectPrefix + cohort, data: d}
	}
	return out
}

// eventID is the event id the daemon gives a valid message.
func eventID(t *testing.T, data []byte) string {
	t.Helper()
	m, err := cohorts.Decode(data, time.Now())
	require.NoError(t, err)
	return m.EventID()
}

// expectAt records msgs as expected at acct too.
func (e *env) expectAt(acct string, msgs []outMsg) {
	for _, m := range msgs {
		e.expect(acct, m.data)
	}
}

// outageFor lets an injected fault last d from since: the timer is the
// fault, not a wait for the daemon. It returns false if the test ended.
func outageFor(t *testing.T, since time.Time, d time.Duration) bool {
	timer := time.NewTimer(d - time.Since(since))
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-t.Context().Done():
		return false
	}
}

// consumerOwes is what one consumer still has to settle (0 and an error
// when it does not exist).
func (e *env) consumerOwes(stream, durable string) (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := e.js.Consumer(ctx, stream, durable)
	if err != nil {
		return 0, err
	}
	ci, err := c.Info(ctx)
	if err != nil {
		return 0, err
	}
	return ci.NumPending + uint64(ci.NumAckPending), nil
}

// mainOwes is consumerOwes of the input stream's durable consumer.
func (e *env) mainOwes() (uint64, error) { return e.consumerOwes(streamName, durableName) }

// lastDeliveriesPending reports whether some consumer of the input or the
// parking stream has messages pending whose delivery count is above 1
// (NumRedelivered): with MaxDeliver 2, messages at their last delivery.
func (e *env) lastDeliveriesPending() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, name := range []string{streamName, parkingStream} {
		s, err := e.js.Stream(ctx, name)
		if err != nil {
			continue
		}
		for ci := range s.ListConsumers(ctx).Info() {
			if ci.NumRedelivered > 0 {
				return true
			}
		}
	}
	return false
}

// accounted reports whether every message is settled and every expected
// event either reached its account or has its message in the DLQ.
func (e *env) accounted() bool {
	if n, err := e.owed(); err != nil || n > 0 {
		return false
	}
	missing := e.missing()
	if missing == 0 {
		return true
	}
	if d, err := e.dlqCount(); err != nil || d < missing {
		return false // cheap test first: the DLQ cannot hold them all
	}
	o := e.outcome()
	return o.dlqErr == nil && o.lost == 0
}

// L1. A cohort has two activations: one to A (the default Tag ID), one
// naming a Tag ID no account owns, whose share of every message is held
// until the activation is fixed. A accepts the first n, then answers 503
// for an outage while n more arrive, then recovers: all 2n must reach A
// while the other activation is still broken. (With a 12s outage, 1,000 of
// the second 1,000 never reached A: their parked copies were acked because
// a memo of "accounts that already accepted" was keyed by stream sequence
// alone, and the parking stream's sequences collide with the input
// stream's.) Then the activation is fixed (Tag ID tagB) and everything
// settles: B gets all 2n.
func unknownTagBesideAnOutage(t *testing.T, order int, name string, sz sizes) {
	const cohort = "l1"
	n := sz.l1N
	e := newEnv(t, order, name, envOptions{activations: map[string]string{cohort: ""}})
	e.putActivation("act-l1-unknown-tag", cohort, unknownTag)
	e.expectLog(logWant{first: map[string]map[string]string{
		"activation loaded": {"activation_id": "act-l1-unknown-tag", "tag_id": unknownTag, "reason": "unknown_tag"}},
		end: msgRecovered, most: 3})
	first := e.enters(cohort, 0, n, acctA)
	e.publish(first)
	e.startDaemon()
	e.waitFor(fmt.Sprintf("A to accept the first %d", n), sz.limit, func() bool { return e.missingFor(acctA) == 0 })

	e.sim.SetFault(acctA, simulator.Fault{Status: 503})
	faultOn := time.Now()
	second := e.enters(cohort, n, n, acctA)
	e.publish(second)
	e.waitFor("a call to A refused", sz.limit, func() bool { return e.sim.Stats(acctA).Injected > 0 })
	if !outageFor(t, faultOn, sz.shortOutage) {
		return
	}
	e.sim.ClearFaults()
	recovered := time.Now()
	e.await(fmt.Sprintf("all %d at A after its recovery, the other activation still broken", 2*n), sz.check,
		func() bool { return e.missingFor(acctA) == 0 })
	missingA := e.missingFor(acctA)
	tookA := time.Since(recovered)

	e.expectAt(acctB, first)
	e.expectAt(acctB, second)
	e.putActivation("act-l1-unknown-tag", cohort, tagB)
	// Not awaitComplete: what A misses is counted by finish; this waits
	// for what the fix must bring.
	e.await("every message settled and all of them at B after the fix", sz.check, func() bool {
		n, err := e.owed()
		return err == nil && n == 0 && e.missingFor(acctB) == 0
	})
	e.finish(time.Since(e.began), 0, fmt.Sprintf("A 503 for %s (%d calls refused) with the other activation on Tag ID %s; "+
		"after A's recovery %d of the %d never reached A (waited %s); then tag_id %s: B got %d of %d",
		sz.shortOutage, e.sim.Stats(acctA).Injected, unknownTag, missingA, 2*n, tookA.Round(100*time.Millisecond), tagB,
		2*n-e.missingFor(acctB), 2*n))
}

// L2. A cohort activated to A and B; A answers 503 and B 401. The enters of
// some users are published, then (once both refused them) their exits; A
// recovers, then B, as soon as A has every enter (while B's share of the
// enters waits for its redelivery). No exit may reach either account
// before its enter (the daemon delivered the exit before the enter at B
// for 200 of 200 users).
func exitsWhileBothAccountsFail(t *testing.T, order int, name string, sz sizes) {
	const cohort = "l2"
	users := sz.l2Users
	e := newEnv(t, order, name, envOptions{activations: map[string]string{cohort: ""}})
	e.putActivation("act-l2-b", cohort, tagB)
	e.expectLog(logWant{first: map[string]map[string]string{
		msgFailing: account(acctA, tagA, "act-l2", "server_error"), msgAuth: account(acctB, tagB, "act-l2-b", "auth")},
		end: msgRecovered, most: 4})
	e.sim.SetFault(acctA, simulator.Fault{Status: 503})
	e.sim.SetToken(acctB, "other")
	batch := e.goodBatch(acctA, cohort, 0, 2*users, acctB)
	enters, exits := batch[:users], batch[users:]
	e.publish(enters)
	faultOn := time.Now()
	e.startDaemon()
	e.waitFor("the enters refused by A (503) and B (401)", sz.limit, func() bool {
		return e.sim.Stats(acctA).Injected > 0 && e.sim.Stats(acctB).Unauthorized > 0
	})
	e.publish(exits)
	if !outageFor(t, faultOn, sz.shortOutage) {
		return
	}
	e.sim.ClearFaults()
	aBack := time.Now()
	enterIDs := make([]string, 0, users)
	for _, m := range enters {
		enterIDs = append(enterIDs, eventID(t, m.data))
	}
	e.await("every enter at A after its recovery", sz.check, func() bool {
		got := e.sim.EventIDs(acctA)
		for _, id := range enterIDs {
			if got[id] == 0 {
				return false
			}
		}
		return true
	})
	// B's token is accepted again as soon as A has every enter.
	e.sim.SetToken(acctB, tokenB)
	bGap := time.Since(aBack)
	took := e.awaitComplete(sz.check)
	e.finish(took, 0, fmt.Sprintf("%d users' enters, then their exits; A 503 for %s, B 401 until %s after A's recovery; %d exits before their enter",
		users, sz.shortOutage, bGap.Round(10*time.Millisecond), e.outcome().order))
}

// L3. A cohort activated to A (healthy) and B: the enters, and later the
// exits, of n/2 users. B accepts the first quarter (enters), then answers
// 503 after a second (so that a call testing B is nearly always running
// and B's later messages are set aside at once) while A keeps answering,
// in 300ms; the exits arrive during B's outage. SIGTERM while B is
// failing; B is fixed; a new daemon starts. Nothing may be dead-lettered,
// everything must arrive, in order, within 2×AckWait of the restart. (The
// daemon's order records of a parked copy refused before A answered for
// its original stored the parking stream's sequence; after the restart
// those phantom sequences held the users' changes, with thousands of
// needless naks, until they were forgotten about 32s later here, and
// dead-lettered 112 as max_deliveries "waiting_for_earlier" in a longer
// run.) MaxDeliver is the realistic 50 here, not the suite's 1000.
func restartWithParkedOrderRecords(t *testing.T, order int, name string, sz sizes) {
	const cohort = "l3"
	n := sz.l3N
	e := newEnv(t, order, name, envOptions{activations: map[string]string{cohort: ""}, maxDeliver: 50})
	e.putActivation("act-l3-b", cohort, tagB)
	// B is fixed while the daemon is stopped: the restarted one finds it
	// healthy, so no line ends the outage.
	e.expectLog(logWant{first: map[string]map[string]string{msgFailing: account(acctB, tagB, "act-l3-b", "server_error")}, most: 2})
	batch := e.goodBatch(acctA, cohort, 0, n, acctB)
	early := batch[:n/4]
	e.publish(early)
	e.startDaemon()
	earlyIDs := make([]string, len(early))
	for i, m := range early {
		earlyIDs[i] = eventID(t, m.data)
	}
	e.waitFor(fmt.Sprintf("B to accept the first %d", len(early)), sz.limit, func() bool {
		got := e.sim.EventIDs(acctB)
		for _, id := range earlyIDs {
			if got[id] == 0 {
				return false
			}
		}
		return true
	})
	e.sim.SetFault(acctB, simulator.Fault{Status: 503, Latency: time.Second})
	// A stays healthy, answering in 300ms (below the 1s after which an
	// account counts as congested).
	e.sim.SetFault(acctA, simulator.Fault{Latency: 300 * time.Millisecond})
	e.publish(batch[n/4 : n/2])
	e.waitFor("4 requests to B refused", sz.limit, func() bool { return e.sim.Stats(acctB).Injected >= 4 })
	e.publish(batch[n/2:])
	if !outageFor(t, time.Now(), sz.shortOutage) {
		return
	}
	beforeA, beforeB := e.received(acctA), e.received(acctB)
	took, code := e.termDaemon(shutdownTimeout + 5*time.Second)
	assert.Equal(t, 0, code, "exit code after SIGTERM")
	e.sim.ClearFaults()
	deliveries := e.deliveries()
	restarted := time.Now()
	e.startDaemon()
	bound := 2 * e.ackWait
	done := e.await(fmt.Sprintf("every message settled and every expected event received within %s of the restart", bound),
		bound, e.complete)
	late := ""
	if !done {
		late = fmt.Sprintf(", %d expected events still missing %s after the restart", e.missing(),
			time.Since(restarted).Round(100*time.Millisecond))
	}
	redelivered := e.deliveries() - deliveries
	e.finish(time.Since(e.began), 0, fmt.Sprintf("MaxDeliver 50; B 503 after the first %d of %d, exits during the outage, SIGTERM "+
		"%s later (exit %d in %s; A had %d, B %d), B fixed, restart: %d deliveries after it%s",
		len(early), n, sz.shortOutage, code, took.Round(10*time.Millisecond), beforeA, beforeB, redelivered, late))
}

// deliveries is the number of deliveries (first ones and redeliveries)
// made so far by every consumer of the input and the parking stream.
func (e *env) deliveries() uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var n uint64
	for _, name := range []string{streamName, parkingStream} {
		s, err := e.js.Stream(ctx, name)
		if err != nil {
			continue
		}
		for ci := range s.ListConsumers(ctx).Info() {
			n += ci.Delivered.Consumer
		}
	}
	return n
}

// L4a. MaxDeliver 2; B answers 503 after 1.5s, past a 1s attempt timeout
// (calls bounded at 2s, AckWait 5s: this scenario's own, shorter timings).
// The daemon is SIGKILLed while a call to B is in flight and messages are
// at their last allowed delivery (some consumer of the input or parking
// stream has NumRedelivered > 0), then restarted with B healthy. Every
// message must end delivered to B or in the DLQ (the daemon lost 200 of
// 200: JetStream drops a parked copy whose last delivery expires, and
// nothing watched the parking consumers' MAX_DELIVERIES advisories).
func sigkillAtLastDelivery(t *testing.T, order int, name string, sz sizes) {
	const cohort = "l4k"
	n := sz.l4KillN
	e := newEnv(t, order, name, envOptions{
		activations: map[string]string{cohort: tagB},
		maxDeliver:  2,
		ackWait:     5 * time.Second,
		env: map[string]string{
			"CONNECTOR_HTTP_TIMEOUT":      "1s",
			"CONNECTOR_HTTP_CALL_TIMEOUT": "2s",
		},
	})
	e.dlqAccounts = true
	e.sim.SetFault(acctB, simulator.Fault{Status: 503, Latency: 1500 * time.Millisecond})
	// Killed during a call to B (its first timeout may be seen first).
	e.expectLog(logWant{first: map[string]map[string]string{"": nil, msgFailing: account(acctB, tagB, "act-l4k", "timeout")}, most: 2})
	e.publish(e.enters(cohort, 0, n, acctB))
	e.startDaemon()
	e.waitFor("a call to B in flight while messages are at their last delivery (MaxDeliver 2)", sz.limit, func() bool {
		return e.sim.InFlight() > 0 && e.lastDeliveriesPending()
	})
	calls := e.sim.Stats(acctB).Requests
	e.killDaemon()
	e.sim.ClearFaults()
	e.startDaemon()
	// The last deliveries in flight at the kill expire after AckWait.
	took := e.awaitAccounted(3*e.ackWait + 15*time.Second)
	e.finish(took, -1, fmt.Sprintf("MaxDeliver 2, AckWait %s, B 503 after 1.5s (attempt timeout 1s); SIGKILL during request %d to B "+
		"with last deliveries pending; B healthy after the restart", e.ackWait, calls))
}

// awaitAccounted waits (as a check, see await) until accounted holds.
func (e *env) awaitAccounted(limit time.Duration) time.Duration {
	e.t.Helper()
	e.await("every message settled, every expected event delivered or its message in the DLQ", limit, e.accounted)
	return time.Since(e.began)
}

// L4b. MaxDeliver 2; B answers 503 while the DLQ stream refuses writes (a
// full store: MaxBytes 1, DiscardNew), for a while; then both recover.
// Every message must end delivered to B or in the DLQ (the daemon lost 243:
// a dead-letter publish that failed at the last delivery was followed by a
// nak JetStream never honours).
func dlqRefusingWrites(t *testing.T, order int, name string, sz sizes) {
	const cohort = "l4d"
	n := sz.l4DLQN
	e := newEnv(t, order, name, envOptions{activations: map[string]string{cohort: tagB}, maxDeliver: 2})
	// A dead letter refused for every message at its last delivery: one
	// line per cause, and one when they are written again.
	e.expectLog(logWant{first: map[string]map[string]string{
		msgFailing: account(acctB, tagB, "act-l4d", "server_error"),
		"dead-letter publish failed: message kept for redelivery (repeats are counted, not logged, until one works)": {
			"reason": "max_deliveries", "stream": parkingStream},
	}, end: "dead-letter publishes work again", most: 6})
	e.dlqAccounts = true
	e.sim.SetFault(acctB, simulator.Fault{Status: 503})
	restore := e.fillDLQ()
	e.publish(e.enters(cohort, 0, n, acctB))
	faultOn := time.Now()
	e.startDaemon()
	e.waitFor("a call to B refused", sz.limit, func() bool { return e.sim.Stats(acctB).Injected > 0 })
	if !outageFor(t, faultOn, sz.shortOutage) {
		return
	}
	restore()
	e.sim.ClearFaults()
	took := e.awaitAccounted(sz.check)
	e.finish(took, -1, fmt.Sprintf("MaxDeliver 2; B 503 and the DLQ refusing writes for %s (%d calls refused), then both back",
		sz.shortOutage, e.sim.Stats(acctB).Injected))
}

// fillDLQ makes the DLQ stream refuse every write, as a full store does
// (MaxBytes 1 with DiscardNew), checks that it does, and returns the
// function that restores its configuration.
func (e *env) fillDLQ() (restore func()) {
	t := e.t
	t.Helper()
	ctx := t.Context()
	s, err := e.js.Stream(ctx, dlqStreamName)
	require.NoError(t, err)
	orig := s.CachedInfo().Config
	full := orig
	full.MaxBytes, full.Discard = 1, jetstream.DiscardNew
	_, err = e.js.UpdateStream(ctx, full)
	require.NoError(t, err, "making the DLQ stream refuse writes")
	_, err = e.js.Publish(ctx, "cohorts.dlq.faults_probe", []byte("x"))
	require.Error(t, err, "the DLQ stream still accepts writes")
	return func() {
		t.Helper()
		_, err := e.js.UpdateStream(ctx, orig)
		require.NoError(t, err, "restoring the DLQ stream")
	}
}

// poisonL5 is a message that does not decode (malformed JSON).
func poisonL5(i int) []byte {
	return fmt.Appendf(nil, `{"user_id":"l5-poison-%d","cohort_id":"l5","action":"enter",`, i)
}

// L5. B answers 503; n messages and a poison one are published; once the
// input consumer owes nothing (B's messages wait elsewhere, the poison is
// dead-lettered) the input stream is deleted (`nats stream rm COHORTS`).
// The daemon recreates it: by itself, or, exiting, after a supervisor
// restarts it (this scenario is that supervisor: it starts an exited daemon
// again, at most once a second, and counts restarts). n new messages and a
// new poison one are published at the same stream sequences as the first;
// B recovers. All 2n must reach B and both poison messages must be in the
// DLQ (the daemon lost the second n and terminated the second poison
// without dead-lettering it: its park:<stream>:<seq>:<acct> and
// dlq:<stream>:<seq> message ids were reused within the streams'
// two-minute duplicate window).
func inputStreamRecreated(t *testing.T, order int, name string, sz sizes) {
	const cohort = "l5"
	n := sz.l5N
	e := newEnv(t, order, name, envOptions{activations: map[string]string{cohort: tagB}})
	e.supervise = true
	e.expectLog(logWant{first: map[string]map[string]string{msgFailing: account(acctB, tagB, "act-l5", "server_error")},
		end: msgRecovered, most: 6})
	e.sim.SetFault(acctB, simulator.Fault{Status: 503})
	subject := subjectPrefix + cohort
	seqs1 := e.publish(append(e.enters(cohort, 0, n, acctB), outMsg{subject: subject, data: poisonL5(1)}))
	e.startDaemon()
	e.waitFor("the input consumer owing nothing: the poison message dead-lettered, B's messages set aside", sz.limit, func() bool {
		owed, err := e.mainOwes()
		d, derr := e.dlqCount()
		return err == nil && owed == 0 && derr == nil && d >= 1
	})

	require.NoError(t, e.js.DeleteStream(t.Context(), streamName), "deleting the input stream")
	e.waitFor("the daemon to recreate the input stream", sz.check, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := e.js.Stream(ctx, streamName)
		return err == nil
	})
	seqs2 := e.publish(append(e.enters(cohort, n, n, acctB), outMsg{subject: subject, data: poisonL5(2)}))
	require.Equal(t, seqs1[n], seqs2[n], "the second poison message must take the first one's stream sequence")
	e.await("the input consumer owing nothing again", sz.check, func() bool {
		owed, err := e.mainOwes()
		return err == nil && owed == 0
	})
	e.sim.ClearFaults()
	took := e.awaitComplete(sz.check)
	dlq, _ := e.dlqCount()
	e.finish(took, 2, fmt.Sprintf("B 503; input stream deleted with %d set aside and a poison dead-lettered, recreated "+
		"(daemon restarts by the supervisor: %d); %d more and a poison at the same sequences (poison at %d); %d of 2 poison messages in the DLQ",
		n, e.restarts, n, seqs2[n], dlq))
}

// L7. B answers 503 and its messages wait in its parking consumer; that
// consumer (durable cohort-connector-parked-<acctB> on COHORTS_PARKED) is
// deleted while the daemon runs, and B recovers. Everything must reach B
// within a bound, without a restart (the daemon left them stranded until
// it was restarted).
func parkingConsumerDeleted(t *testing.T, order int, name string, sz sizes) {
	const cohort = "l7"
	n := sz.l7N
	e := newEnv(t, order, name, envOptions{activations: map[string]string{cohort: tagB}})
	e.expectLog(logWant{first: map[string]map[string]string{msgFailing: account(acctB, tagB, "act-l7", "server_error")},
		end: msgRecovered, most: 4})
	e.sim.SetFault(acctB, simulator.Fault{Status: 503})
	e.publish(e.enters(cohort, 0, n, acctB))
	e.startDaemon()
	durable := parkedDurable(acctB)
	e.waitFor(fmt.Sprintf("all %d parked: the input consumer owing nothing, %s/%s owing %d", n, parkingStream, durable, n),
		sz.limit, func() bool {
			owed, err := e.mainOwes()
			parked, perr := e.consumerOwes(parkingStream, durable)
			return err == nil && owed == 0 && perr == nil && parked == uint64(n)
		})
	err := e.js.DeleteConsumer(t.Context(), parkingStream, durable)
	require.NoError(t, err, "deleting %s/%s", parkingStream, durable)
	deleted := time.Now()
	e.sim.ClearFaults()
	const bound = time.Minute
	took := e.awaitComplete(bound)
	assert.Equal(t, 1, e.starts, "the daemon was restarted")
	e.finish(took, 0, fmt.Sprintf("%s/%s deleted with %d parked, B back at once: %d of %d at B %s later (bound %s), restarts: %d",
		parkingStream, durable, n, n-e.missingFor(acctB), n, time.Since(deleted).Round(100*time.Millisecond), bound, e.starts-1))
}
