package faults_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/destinations/pinterest/simulator"
)

// sizes are the scenario sizes: the CI subset, or -faults.full.
type sizes struct {
	killN, kills int           // SIGKILL: messages, kills
	outageN      int           // 503: messages
	outage       time.Duration // 503: how long
	faultN       int           // 429 and hang: messages
	rateLimited  int           // 429: calls refused
	authN        int           // 401: messages (half per account)
	restartN     int           // NATS restart: messages
	termN        int           // SIGTERM: messages
	limit        time.Duration // bound on each wait

	// The rows that combine faults (combined_test.go).
	l1N         int           // L1: messages before, and during, A's outage
	l2Users     int           // L2: users (an enter and an exit each)
	l3N         int           // L3: messages (enters, then the exits)
	l4KillN     int           // L4a: messages
	l4DLQN      int           // L4b: messages
	l5N         int           // L5: messages before, and after, the stream's deletion
	l7N         int           // L7: messages parked
	shortOutage time.Duration // L1–L4b: how long a fault lasts
	check       time.Duration // bound on a wait for what a passing daemon does in seconds
}

func currentSizes() sizes {
	if *fullFlag {
		return sizes{killN: 200_000, kills: 10, outageN: 20_000, outage: 60 * time.Second, faultN: 20_000, rateLimited: 20,
			authN: 20_000, restartN: 50_000, termN: 5_000, limit: 10 * time.Minute,
			l1N: 5_000, l2Users: 2_000, l3N: 20_000, l4KillN: 2_000, l4DLQN: 5_000, l5N: 5_000, l7N: 10_000,
			shortOutage: 20 * time.Second, check: 3 * time.Minute}
	}
	return sizes{killN: 20_000, kills: 3, outageN: 2_000, outage: 5 * time.Second, faultN: 2_000, rateLimited: 10,
		authN: 2_000, restartN: 5_000, termN: 5_000, limit: 2 * time.Minute,
		l1N: 1_000, l2Users: 200, l3N: 2_000, l4KillN: 200, l4DLQN: 500, l5N: 500, l7N: 1_000,
		shortOutage: 3 * time.Second, check: 30 * time.Second}
}

// newRand is scenario order's random source, derived from the run's seed so
// that one scenario can be replayed alone (-run and -faults.seed).
func newRand(order int) *rand.Rand { return rand.New(rand.NewPCG(seed(), uint64(order))) }

// TestFaults runs the scenarios in order, each against a fresh NATS server,
// simulator and daemon, and adds one row each to the table TestMain prints.
func TestFaults(t *testing.T) {
	if daemonBin == "" {
		t.Skip("-short: the fault-injection suite builds and runs the daemon")
	}
	require.NoError(t, readSources(moduleRoot), "reading the daemon's sources (for go test's cache)")
	sz := currentSizes()
	scenarios := []struct {
		name string
		run  func(*testing.T, int, string, sizes)
	}{
		{"SIGKILL at random moments", sigkillAtRandomMoments},
		{"Pinterest answers 503 for " + sz.outage.String(), pinterestAnswers503},
		{"429 with Retry-After", rateLimitedWithRetryAfter},
		{"Pinterest hangs past the timeout", pinterestHangs},
		{"one account answers 401 while the other is healthy", oneAccountUnauthorized},
		{"the NATS server restarted mid-drain", natsServerRestarted},
		{"a poison corpus interleaved with good messages", poisonCorpus},
		{"SIGTERM during a large batch", sigtermDuringLargeBatch},
		{"exits published after a SIGKILL that cut their enters' calls", orderAcrossSIGKILL},
		{"L1 an unknown Tag ID beside an account outage", unknownTagBesideAnOutage},
		{"L2 exits while A answers 503 and B 401", exitsWhileBothAccountsFail},
		{"L3 SIGTERM and restart with parked messages", restartWithParkedOrderRecords},
		{"L4a SIGKILL during the last delivery of parked messages", sigkillAtLastDelivery},
		{"L4b the DLQ refusing writes at the last delivery", dlqRefusingWrites},
		{"L5 the input stream deleted and recreated", inputStreamRecreated},
		{"L7 a parking consumer deleted while the daemon runs", parkingConsumerDeleted},
	}
	for i, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) { sc.run(t, i+1, sc.name, sz) })
	}
}

// 1. N messages across 4 cohorts; the daemon is SIGKILLed each time the
// simulator's distinct count has grown by a random amount, and restarted.
func sigkillAtRandomMoments(t *testing.T, order int, name string, sz sizes) {
	rng := newRand(order)
	cohortIDs := []string{"k0", "k1", "k2", "k3"}
	acts := map[string]string{}
	for _, c := range cohortIDs {
		acts[c] = ""
	}
	e := newEnv(t, order, name, envOptions{activations: acts})
	e.expectLog(quiet) // a SIGKILL is not seen by the process it ends
	// The standard data (pairedAt) with each user's two changes in one of
	// the cohorts.
	msgs := make([]outMsg, sz.killN)
	for k := range msgs {
		user, action := pairedAt(0, sz.killN, k)
		c := cohortIDs[user%len(cohortIDs)]
		d := membership(c, user, action)
		e.expect(acctA, d)
		msgs[k] = outMsg{subject: subjectPrefix + c, data: d}
	}
	e.publish(msgs)
	e.startDaemon()

	step := sz.killN / (sz.kills + 1)
	var at []string
	for k := range sz.kills {
		base := e.received(acctA)
		grow := 1 + rng.IntN(step)
		e.waitFor(fmt.Sprintf("kill %d: %d more distinct events", k+1, grow), sz.limit, func() bool {
			// Processed counts every reception: a cheap upper bound of the
			// distinct count, checked first.
			return int(e.sim.Stats(acctA).Processed) >= base+grow && e.received(acctA) >= base+grow
		})
		at = append(at, strconv.Itoa(e.received(acctA)))
		e.killDaemon()
		e.startDaemon()
	}
	took := e.waitComplete(sz.limit)
	e.finish(took, 0, fmt.Sprintf("%d SIGKILLs at %s distinct", sz.kills, strings.Join(at, ",")))
}

// 2. Pinterest answers 503 to every call for a while, then recovers.
func pinterestAnswers503(t *testing.T, order int, name string, sz sizes) {
	e := newEnv(t, order, name, envOptions{activations: map[string]string{"o1": ""}})
	e.sim.SetFault(acctA, simulator.Fault{Status: 503})
	e.expectLog(logWant{first: map[string]map[string]string{msgFailing: account(acctA, tagA, "act-o1", "server_error")},
		end: msgRecovered, most: 2})
	e.publish(e.goodBatch(acctA, "o1", 0, sz.outageN))
	faultOn := time.Now()
	e.startDaemon()
	e.waitFor("a first refused call", sz.limit, func() bool { return e.sim.Stats(acctA).Injected > 0 })
	// The outage lasts sz.outage: this timer is the fault, not a wait for
	// the daemon.
	outage := time.NewTimer(sz.outage - time.Since(faultOn))
	select {
	case <-outage.C:
	case <-t.Context().Done():
		outage.Stop()
		return
	}
	st := e.sim.Stats(acctA)
	require.Zero(t, st.Accepted200, "a call was accepted during the outage")
	e.sim.SetFault(acctA, simulator.Fault{})
	took := e.waitComplete(sz.limit)
	e.finish(took, 0, fmt.Sprintf("%d calls refused with 503", e.sim.Stats(acctA).Injected))
}

// 3. Calls answered 429 with Retry-After: 2s (ten in the CI subset,
// twenty in full), then normal service.
func rateLimitedWithRetryAfter(t *testing.T, order int, name string, sz sizes) {
	n := sz.rateLimited
	e := newEnv(t, order, name, envOptions{activations: map[string]string{"r1": ""}})
	// Each 429 may start an episode (the next call may succeed): a line
	// per refused call at most, not per message.
	e.expectLog(logWant{first: map[string]map[string]string{msgFailing: account(acctA, tagA, "act-r1", "rate_limited")},
		end: msgRecovered, most: n})
	e.sim.SetFault(acctA, simulator.Fault{Status: 429, RetryAfter: 2 * time.Second, Times: n})
	e.publish(e.goodBatch(acctA, "r1", 0, sz.faultN))
	e.startDaemon()
	// n waits of 2s, two calls in flight: well under n×4s when Retry-After
	// is honoured as asked.
	took := e.waitComplete(time.Duration(n)*2*time.Second*2 + 10*time.Second)
	assert.EqualValues(t, n, e.sim.Stats(acctA).Injected, "calls answered 429")
	e.finish(took, 0, fmt.Sprintf("%d calls answered 429, Retry-After 2s", n))
}

// 4. Ten calls hang for 3s, past the 2s attempt timeout.
func pinterestHangs(t *testing.T, order int, name string, sz sizes) {
	e := newEnv(t, order, name, envOptions{activations: map[string]string{"h1": ""}})
	e.expectLog(logWant{first: map[string]map[string]string{msgFailing: account(acctA, tagA, "act-h1", "timeout")},
		end: msgRecovered, most: 10})
	e.sim.SetFault(acctA, simulator.Fault{Latency: 3 * time.Second, Times: 10})
	e.publish(e.goodBatch(acctA, "h1", 0, sz.faultN))
	e.startDaemon()
	took := e.waitComplete(sz.limit)
	e.finish(took, 0, "10 calls held 3s (attempt timeout 2s)")
}

// 5. Account B's token is refused (401) while A is healthy: A's messages
// all arrive, B's are held (not dead-lettered), and arrive once the token
// is accepted again.
func oneAccountUnauthorized(t *testing.T, order int, name string, sz sizes) {
	e := newEnv(t, order, name, envOptions{activations: map[string]string{"pa": "", "pb": tagB}})
	e.expectLog(logWant{first: map[string]map[string]string{msgAuth: account(acctB, tagB, "act-pb", "auth")},
		end: msgRecovered, most: 2})
	e.sim.SetToken(acctB, "other")
	half := sz.authN / 2
	// The standard data of each account, A's and B's messages alternating.
	toA, toB := e.goodBatch(acctA, "pa", 0, half), e.goodBatch(acctB, "pb", 0, half)
	msgs := make([]outMsg, 0, 2*half)
	for i := range half {
		msgs = append(msgs, toA[i], toB[i])
	}
	e.publish(msgs)
	e.startDaemon()

	e.waitFor("every event of the healthy account A", sz.limit, func() bool { return e.missingFor(acctA) == 0 })
	e.waitFor("the consumers (main and parking) to owe exactly B's messages", sz.limit, func() bool {
		n, err := e.owed()
		return err == nil && n == uint64(half)
	})
	// B's messages keep coming back (held, not dropped) while the token is refused.
	e.waitFor("three 401 answers to B", sz.limit, func() bool { return e.sim.Stats(acctB).Unauthorized >= 3 })
	require.Zero(t, e.received(acctB), "events accepted for B with a refused token")
	require.Positive(t, e.sim.Stats(acctB).Unauthorized, "B was never called")
	dlq, err := e.dlqCount()
	require.NoError(t, err)
	require.Zero(t, dlq, "B's messages were dead-lettered")
	held := time.Since(e.began)

	e.sim.SetToken(acctB, tokenB)
	took := e.waitComplete(sz.limit)
	e.finish(took, 0, fmt.Sprintf("B held %d for %s (%d calls got 401), then delivered", half,
		held.Round(100*time.Millisecond), e.sim.Stats(acctB).Unauthorized))
}

// 6. The NATS server is shut down mid-drain and a new one started on the
// same port and store.
func natsServerRestarted(t *testing.T, order int, name string, sz sizes) {
	rng := newRand(order)
	// Small batches answered after 50ms make the drain last long enough
	// (50 calls a second) for the restart to land in its middle.
	e := newEnv(t, order, name, envOptions{
		env:         map[string]string{"CONNECTOR_BATCH_SIZE": "100"},
		activations: map[string]string{"n1": ""},
	})
	// The consumers may see the server go before the connection does.
	e.expectLog(logWant{first: map[string]map[string]string{"consuming: transient error": nil, msgNATSDown: nil},
		end: msgNATSBack, most: 8})
	e.sim.SetFault(acctA, simulator.Fault{Latency: 50 * time.Millisecond})
	e.publish(e.goodBatch(acctA, "n1", 0, sz.restartN))
	e.startDaemon()
	k := sz.restartN/10 + rng.IntN(sz.restartN/2)
	e.waitFor(fmt.Sprintf("%d events received", k), sz.limit, func() bool {
		return int(e.sim.Stats(acctA).Processed) >= k && e.received(acctA) >= k
	})
	at := e.received(acctA)
	e.restartServer()
	took := e.waitComplete(sz.limit)
	e.finish(took, 0, fmt.Sprintf("restarted at %d distinct", at))
}

// poison is one message the daemon must dead-letter, with its reason.
type poison struct {
	what   string
	reason string
	data   []byte
}

// 7. Bad messages of every kind interleaved with good ones; more good ones
// published after the bad ones reached the DLQ.
func poisonCorpus(t *testing.T, order int, name string, sz sizes) {
	e := newEnv(t, order, name, envOptions{record: true, activations: map[string]string{"p7": ""}})
	// Bad messages are dead-lettered with their reason (the DLQ, the
	// dead-letter metrics): not a fault of the daemon or of Pinterest.
	e.expectLog(quiet)
	const cohort = "p7"
	subject := subjectPrefix + cohort
	ts := baseEpoch.Format(time.RFC3339Nano)
	msg := func(user, action, ts, ids string) []byte {
		return fmt.Appendf(nil, `{"user_id":%q,"cohort_id":%q,"action":%q,"ts":%q,"identifiers":%s}`, user, cohort, action, ts, ids)
	}
	big := fmt.Appendf(nil, `{"user_id":"bad-big","cohort_id":%q,"action":"enter","ts":%q,"identifiers":{"email":"big@example.com"},"padding":"`, cohort, ts)
	big = append(big, strings.Repeat("x", 1<<20-len(big)-2)...)
	big = append(big, `"}`...)
	require.Len(t, big, 1<<20)
	bad := []poison{
		{"malformed JSON", "malformed_json", []byte(`{"user_id":"bad-syntax","cohort_id":"p7","action":"enter",`)},
		{"not an object", "malformed_json", []byte(`["bad-array"]`)},
		{"user_id a number", "invalid_field", fmt.Appendf(nil, `{"user_id":42,"cohort_id":%q,"action":"enter","ts":%q,"identifiers":{"email":"n@example.com"}}`, cohort, ts)},
		{"missing cohort_id, ts", "missing_field", []byte(`{"user_id":"bad-missing","action":"enter","identifiers":{"email":"m@example.com"}}`)},
		{"unknown action", "invalid_field", msg("bad-action", "join", ts, `{"email":"a@example.com"}`)},
		{"invalid UTF-8", "invalid_utf8", fmt.Appendf(nil, `{"user_id":"bad-%s-utf8","cohort_id":%q,"action":"enter","ts":%q,"identifiers":{"email":"u@example.com"}}`, "\xff\xfe", cohort, ts)},
		{"1 MiB message", "too_large", big},
		{"ts in 2099", "invalid_field", msg("bad-2099", "enter", "2099-01-01T00:00:00Z", `{"email":"f@example.com"}`)},
		{"ts in 1900", "invalid_field", msg("bad-1900", "enter", "1900-01-01T00:00:00Z", `{"email":"p@example.com"}`)},
	}
	for _, p := range bad {
		_, err := cohorts.Decode(p.data, time.Now())
		require.Error(t, err, "poison %q decodes", p.what)
	}

	// Valid messages with something special about them.
	noIDs := [][]byte{
		msg("noid-empty", "enter", ts, `{}`),
		msg("noid-blank-email", "exit", ts, `{"email":""}`),
	}
	unsentIDs := map[string]bool{}
	for _, d := range noIDs {
		m, err := cohorts.Decode(d, time.Now())
		require.NoError(t, err)
		require.False(t, m.Identifiers.Hash().Matchable())
		unsentIDs[m.EventID()] = true
	}
	hashed := sha256hex("already.hashed@example.com")
	mixed := "  Mixed.Case@Example.COM "
	wantEm := map[string]string{}
	hashedMsg := msg("hashed-email", "enter", ts, fmt.Sprintf(`{"email":%q}`, hashed))
	wantEm[e.expect(acctA, hashedMsg)] = hashed
	mixedMsg := msg("mixed-case-email", "enter", ts, fmt.Sprintf(`{"email":%q}`, mixed))
	wantEm[e.expect(acctA, mixedMsg)] = sha256hex("mixed.case@example.com")
	special := [][]byte{noIDs[0], hashedMsg, noIDs[1], mixedMsg}

	var msgs []outMsg
	badAt := map[int]int{} // index in msgs → index in bad
	next := 0
	for i, p := range bad {
		badAt[len(msgs)] = i
		msgs = append(msgs, outMsg{subject: subject, data: p.data})
		if i < len(special) {
			msgs = append(msgs, outMsg{subject: subject, data: special[i]})
		}
		msgs = append(msgs, e.goodBatch(acctA, cohort, next, 10)...)
		next += 10
	}
	e.startDaemon()
	seqs := e.publish(msgs)
	badSeq := map[uint64]poison{}
	for idx, bi := range badAt {
		badSeq[seqs[idx]] = bad[bi]
	}
	e.waitFor("every poison message in the DLQ", sz.limit, func() bool {
		n, err := e.dlqCount()
		return err == nil && n >= len(bad)
	})
	// The stream is not blocked: good messages published after the poison
	// was set aside arrive too.
	e.publish(e.goodBatch(acctA, cohort, next, 100))
	took := e.waitComplete(sz.limit)

	// Every dead letter is one of the poison messages, with its reason.
	seen := map[uint64]bool{}
	for _, dm := range e.dlqMessages() {
		seq, err := strconv.ParseUint(dm.Header.Get("Dlq-Original-Sequence"), 10, 64)
		require.NoError(t, err, "Dlq-Original-Sequence")
		p, ok := badSeq[seq]
		if !assert.True(t, ok, "dead letter of stream sequence %d, which is not a poison message (reason %q)", seq, dm.Header.Get("Dlq-Reason")) {
			continue
		}
		assert.False(t, seen[seq], "poison %q dead-lettered twice", p.what)
		seen[seq] = true
		assert.Equal(t, p.reason, dm.Header.Get("Dlq-Reason"), "Dlq-Reason of poison %q", p.what)
		assert.Equal(t, p.data, dm.Data, "body of poison %q not kept byte for byte", p.what)
	}
	for seq, p := range badSeq {
		assert.True(t, seen[seq], "poison %q (stream sequence %d) is not in the DLQ", p.what, seq)
	}
	// Identifiers: a digest is sent as is, an email normalised then hashed;
	// memberships without identifiers are acked and never sent.
	emSeen := 0
	for _, r := range e.sim.Received(acctA) {
		assert.False(t, unsentIDs[r.Event.EventID], "a membership without identifiers was sent")
		if want, ok := wantEm[r.Event.EventID]; ok {
			emSeen++
			assert.Equal(t, []string{want}, r.Event.UserData.Em, "em of event %s", r.Event.EventID)
		}
	}
	assert.GreaterOrEqual(t, emSeen, len(wantEm), "events with a hashed / mixed-case email")
	e.finish(took, len(bad), fmt.Sprintf("%d poison dead-lettered with their reasons; %d valid without identifiers acked, not sent", len(bad), len(noIDs)))
}

// 8. SIGTERM while a large batch is being sent: the daemon exits 0 within
// its shutdown timeout, and a restarted one delivers the rest.
func sigtermDuringLargeBatch(t *testing.T, order int, name string, sz sizes) {
	e := newEnv(t, order, name, envOptions{
		env:         map[string]string{"CONNECTOR_BATCH_PERIOD": "2s"},
		activations: map[string]string{"t8": ""},
	})
	e.expectLog(quiet) // slow calls and a requested stop
	// The first calls take a second, so that SIGTERM finds full batches in
	// flight, more waiting for a sender and messages fetched but unbatched.
	e.sim.SetFault(acctA, simulator.Fault{Latency: time.Second, Times: 2})
	e.startDaemon()
	e.publish(e.goodBatch(acctA, "t8", 0, sz.termN))
	ci := e.waitDelivered(sz.limit)
	took, code := e.termDaemon(shutdownTimeout + 5*time.Second)
	assert.Equal(t, 0, code, "exit code after SIGTERM")
	assert.LessOrEqual(t, took, shutdownTimeout, "exit after SIGTERM took longer than CONNECTOR_SHUTDOWN_TIMEOUT")
	before := e.received(acctA)
	e.startDaemon()
	total := e.waitComplete(sz.limit)
	e.finish(total, 0, fmt.Sprintf("SIGTERM with %d unacked: exit %d in %s, %d delivered before exit",
		ci.NumAckPending, code, took.Round(10*time.Millisecond), before))
}

// waitDelivered waits until the consumer has messages delivered but not
// acked, or the simulator has received some, and returns the consumer info.
func (e *env) waitDelivered(limit time.Duration) *jetstream.ConsumerInfo {
	e.t.Helper()
	var ci *jetstream.ConsumerInfo
	e.waitFor("messages delivered to the daemon", limit, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		c, err := e.js.Consumer(ctx, streamName, durableName)
		if err != nil {
			return false
		}
		if ci, err = c.Info(ctx); err != nil {
			return false
		}
		return ci.NumAckPending > 0 || e.sim.Stats(acctA).Events > 0
	})
	return ci
}

// missingFor counts the expected ids of one account not received.
func (e *env) missingFor(acct string) int {
	got := e.sim.EventIDs(acct)
	n := 0
	for id := range e.expected[acct] {
		if got[id] == 0 {
			n++
		}
	}
	return n
}

// dlqMessage is one message of the dead-letter stream.
type dlqMessage struct {
	Header nats.Header
	Data   []byte
}

// dlqMessages reads the whole dead-letter stream.
func (e *env) dlqMessages() []dlqMessage {
	e.t.Helper()
	out, err := e.readDLQ()
	require.NoError(e.t, err)
	return out
}

// readDLQ reads the whole dead-letter stream.
func (e *env) readDLQ() ([]dlqMessage, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, dlqStreamName)
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, err
	}
	var out []dlqMessage
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // deleted (an interior gap)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, dlqMessage{Header: m.Header, Data: m.Data})
	}
	return out, nil
}

func sha256hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// 9. Per-user order across a crash: the enters' first call is in flight
// (Pinterest hangs) when the daemon is SIGKILLed; after the restart the
// exits of the same users are published. JetStream redelivers the enters
// only when their AckWait expires, so the new process gets the exits
// first: every exit must still reach Pinterest after its enter (the order
// column, which finish checks).
func orderAcrossSIGKILL(t *testing.T, order int, name string, sz sizes) {
	const users = 200
	e := newEnv(t, order, name, envOptions{activations: map[string]string{"o1": ""}})
	e.sim.SetFault(acctA, simulator.Fault{Latency: time.Minute})
	// Killed while its first call hangs: it may have seen the timeout.
	e.expectLog(logWant{first: map[string]map[string]string{"": nil, msgFailing: account(acctA, tagA, "act-o1", "timeout")}, most: 1})
	batch := e.goodBatch(acctA, "o1", 0, 2*users)
	enters, exits := batch[:users], batch[users:]
	e.publish(enters)
	e.startDaemon()
	e.waitFor("the enters' call in flight", sz.limit, func() bool { return e.sim.InFlight() > 0 })
	e.killDaemon()
	e.sim.ClearFaults()
	e.startDaemon()
	e.waitConsuming()
	e.publish(exits)
	took := e.waitComplete(sz.limit)
	e.finish(took, 0, fmt.Sprintf("SIGKILL with %d enters in flight; %d of %d exits overtook their enter", users,
		e.outcome().order, users))
}
