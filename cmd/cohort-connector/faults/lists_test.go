package faults_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/destinations/pinterest/simulator"
)

// The rows that combine customer_list mode with the other faults (C1–C4).
// An activation in customer_list mode mirrors its cohort into a Pinterest
// customer list (enter → ADD, exit → REMOVE) through the same lanes,
// settlement, retries, parking and per-user order as events, keeping the
// last change per (list, user) in the state bucket. Each row compares the
// list the simulator holds with what was published: a user must be in it
// iff the change with the latest ts published for that user is an enter.
// In the table, delivered and lost count the expected events (as for the
// other rows) plus the list's users in the right / the wrong state; the
// notes give the list's figures.

// listSizes are the sizes of rows C1–C4: the CI subset, or -faults.full.
type listSizes struct {
	c1Users int           // C1: users entering before A's outage (as many more during it, half of the first leave)
	c2Users int           // C2: users entering (half of them leave later)
	c3Users int           // C3: users entering before the credentials are revoked (as many during, half of the first leave)
	c3Hold  time.Duration // C3: how long the revoked credentials hold A's list changes
	c4Users int           // C4: users entering (half leave), then the late older copies
}

func currentListSizes() listSizes {
	if *fullFlag {
		return listSizes{c1Users: 3_000, c2Users: 5_000, c3Users: 2_000, c3Hold: 30 * time.Second, c4Users: 4_000}
	}
	return listSizes{c1Users: 300, c2Users: 600, c3Users: 200, c3Hold: 3 * time.Second, c4Users: 400}
}

// TestCustomerListFaults runs rows C1–C4 after TestFaults' rows (its table
// positions follow theirs).
func TestCustomerListFaults(t *testing.T) {
	if daemonBin == "" {
		t.Skip("-short: the fault-injection suite builds and runs the daemon")
	}
	require.NoError(t, readSources(moduleRoot), "reading the daemon's sources (for go test's cache)")
	sz, ls := currentSizes(), currentListSizes()
	rows := []struct {
		name string
		run  func(*testing.T, int, string, sizes, listSizes)
	}{
		{"C1 customer list beside an account outage", listBesideAnOutage},
		{"C2 customer list across SIGTERM and restart", listAcrossSIGTERM},
		{"C3 customer list with its OAuth grant revoked while events flow", listWithRevokedGrant},
		{"C4 late older copies of list changes", listLateOlderCopies},
		{"C5 a customer list created late beside an events activation", listCreatedLateBesideEvents},
	}
	for i, r := range rows {
		t.Run(r.name, func(t *testing.T) { r.run(t, 100+i, r.name, sz, ls) })
	}
}

// exits returns the exits of n distinct users from.. of cohort, each
// expected at the given accounts.
func (e *env) exits(cohort string, from, n int, accounts ...string) []outMsg {
	out := make([]outMsg, n)
	for k := range out {
		d := membership(cohort, from+k, "exit")
		for _, acct := range accounts {
			e.expect(acct, d)
		}
		out[k] = outMsg{subject: subjectPrefix + cohort, data: d}
	}
	return out
}

// listNotes sums up an activation's list for a row's notes.
func (e *env) listNotes(id string) string {
	lc := e.listCheck(id)
	added, removed := 0, 0
	if lc.listID != "" {
		added, removed = e.sim.CustomerListRecords(e.lists[id].account, lc.listID)
	}
	return fmt.Sprintf("list %s: %d records added, %d removed in %d PATCHes", lc.listID, added, removed,
		e.sim.Stats(e.lists[id].account).ListUpdates)
}

// C1. Cohort c1 has an events activation and a customer_list activation,
// both at A. Once the daemon has created the list (its record is in the
// state bucket: see C5 for changes that arrive before), n users enter and
// reach A (events and list); then A answers
// 503 to every call (its messages are parked) while half of them leave and
// n new users enter; A recovers. Then: every event reached A, no exit
// before its enter, nothing dead-lettered, and the list holds exactly the
// current members (the n/2 who stayed and the n new).
func listBesideAnOutage(t *testing.T, order int, name string, sz sizes, ls listSizes) {
	const cohort, listAct = "c1", "act-c1-list"
	n := ls.c1Users
	e := newEnv(t, order, name, envOptions{oauth: true, activations: map[string]string{cohort: ""}})
	e.putListActivation(listAct, cohort, "")
	e.startDaemon()
	e.expectLog(logWant{first: map[string]map[string]string{msgFailing: account(acctA, tagA, listAct, "server_error")},
		end: msgRecovered, setUp: []string{msgTooSmall}, most: 4})
	e.waitListRecorded(listAct, sz.limit)
	first := e.enters(cohort, 0, n, acctA)
	e.expectList(listAct, first)
	e.publish(first)
	e.waitFor(fmt.Sprintf("the first %d enters at A, as events and in the list", n), sz.limit, func() bool {
		return e.missingFor(acctA) == 0 && e.listsRight()
	})

	e.sim.SetFault(acctA, simulator.Fault{Status: 503})
	faultOn := time.Now()
	second := append(e.exits(cohort, 0, n/2, acctA), e.enters(cohort, n, n, acctA)...)
	e.expectList(listAct, second)
	e.publish(second)
	e.waitFor("a call to A refused", sz.limit, func() bool { return e.sim.Stats(acctA).Injected > 0 })
	if !outageFor(t, faultOn, sz.shortOutage) {
		return
	}
	refused := e.sim.Stats(acctA).Injected
	e.sim.ClearFaults()
	e.await("every message settled, every event at A and the list equal to the current members", sz.check, e.completeWithLists)
	took := time.Since(e.began)
	e.finish(took, 0, fmt.Sprintf("events + customer_list activations at A; A 503 for %s (%d calls refused) while %d left and %d entered; %s",
		sz.shortOutage, refused, n/2, n, e.listNotes(listAct)))
}

// C2. Cohort c2: a customer_list activation at A, an events activation at
// B. n users enter, then half of them leave (each user at most an enter
// then an exit); A's list calls take 1s, in batches of 25, so that the
// daemon is SIGTERMed in the middle of the list's stream. It must exit 0
// within its shutdown timeout; restarted, it must bring the list to
// exactly the current members, every event to B, with nothing
// dead-lettered, and no exit may reach the list before its enter (order
// column: users whose first operation on the list was a REMOVE).
//
// Found by this row at full size: 126 to 367 of the 2,500 exits reached
// A's list before their enter. The cause was not the restart: an enter
// that arrived while the list did not exist yet (audience_pending, nak'd
// with a growing delay) kept no place in the order book at A, and its exit,
// first delivered after the list was created, went first. A held change
// now keeps its place (orderBook.hold).
func listAcrossSIGTERM(t *testing.T, order int, name string, sz sizes, ls listSizes) {
	const cohort, listAct = "c2", "act-c2-list"
	n := ls.c2Users
	e := newEnv(t, order, name, envOptions{oauth: true, activations: map[string]string{cohort: tagB},
		env: map[string]string{"CONNECTOR_BATCH_SIZE": "25"}})
	// Slow calls and a requested stop; B has no OAuth app, so no audience.
	e.expectLog(logWant{first: quiet.first, setUp: []string{msgNotManaged, msgTooSmall}, most: 6})
	e.putListActivation(listAct, cohort, "")
	msgs := append(e.enters(cohort, 0, n, acctB), e.exits(cohort, 0, n/2, acctB)...)
	e.expectList(listAct, msgs)
	e.sim.SetFault(acctA, simulator.Fault{Latency: time.Second})
	e.publish(msgs)
	e.startDaemon()
	e.waitFor("2 PATCHes of A's list accepted", sz.limit, func() bool { return e.sim.Stats(acctA).ListUpdates >= 2 })
	took, code := e.termDaemon(shutdownTimeout + 5*time.Second)
	assert.Equal(t, 0, code, "exit code after SIGTERM")
	assert.LessOrEqual(t, took, shutdownTimeout, "exit after SIGTERM took longer than CONNECTOR_SHUTDOWN_TIMEOUT")
	at := e.listCheck(listAct)
	assert.Less(t, at.right, n, "the SIGTERM came after the list was complete: the row tested no restart mid-stream")
	patches := e.sim.Stats(acctA).ListUpdates
	e.sim.ClearFaults()
	e.startDaemon()
	e.await("every message settled, every event at B and the list equal to the current members", sz.check, e.completeWithLists)
	total := time.Since(e.began)
	e.finish(total, 0, fmt.Sprintf("%d enters, %d exits; SIGTERM after %d PATCHes (list then %d members, %d of %d users in their final state): exit %d in %s; restart; %s",
		n, n/2, patches, at.have, at.right, n, code, took.Round(10*time.Millisecond), e.listNotes(listAct)))
}

// C3. Cohort c3: a customer_list activation at A (list calls need A's
// OAuth access token), an events activation at B (conversion token). n
// users enter and reach both. Then A's OAuth grant is revoked: every
// access and refresh token the simulator issued expires, so A's list calls
// get 401 and a refresh is refused. Half of the users leave and n new ones
// enter: the events flow to B; A's list changes are held, neither applied,
// acked nor dead-lettered, for a while; the daemon must say why: an error
// log naming A, cohort_connector_account_failing{A} 1, and /readyz 503
// naming A's OAuth token (the 401 makes the keeper drop the access token
// and refresh, which is refused).
//
// Recovery needs an operator, by design: the daemon keeps using the access
// token it believes valid (it has no way to get another: the refresh
// token is dead too), and it prefers the rotated refresh token stored in
// the state bucket to the environment's. The operator re-authorises the
// app (a new refresh token), puts it in CONNECTOR_ACCOUNT_A_REFRESH_TOKEN,
// deletes token.<ad_account_id> from the state bucket and restarts the
// daemon (the documented procedure for a lost key, see connector.TokenKeeper).
// Then the list must hold exactly the current members, with nothing lost
// or dead-lettered.
func listWithRevokedGrant(t *testing.T, order int, name string, sz sizes, ls listSizes) {
	const cohort, listAct = "c3", "act-c3-list"
	n := ls.c3Users
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	e := newEnv(t, order, name, envOptions{oauth: true, activations: map[string]string{cohort: tagB},
		env: map[string]string{"CONNECTOR_LISTEN_ADDR": addr}})
	// The operator's fix is a restart: no line ends the fault.
	e.expectLog(logWant{first: map[string]map[string]string{
		msgAuth: account(acctA, tagA, listAct, "auth"),
		"Pinterest refused the oauth access token before its expiry: refreshing it": {"ad_account_id": acctA},
		"oauth token refresh failed": {"ad_account_id": acctA, "reason": "auth"},
	}, setUp: []string{msgNotManaged, msgTooSmall}, most: 8})
	e.putListActivation(listAct, cohort, "")
	first := e.enters(cohort, 0, n, acctB)
	e.expectList(listAct, first)
	e.publish(first)
	e.startDaemon()
	e.waitFor(fmt.Sprintf("the first %d at B and in A's list", n), sz.limit, func() bool {
		return e.missingFor(acctB) == 0 && e.listsRight()
	})
	before := e.sim.ListMembers(acctA, e.listIDOf(listAct))

	e.sim.ExpireAccessTokens()
	e.sim.ExpireRefreshTokens()
	revoked := time.Now()
	second := append(e.exits(cohort, 0, n/2, acctB), e.enters(cohort, n, n, acctB)...)
	e.expectList(listAct, second)
	e.publish(second)
	// After the first 401 the keeper drops the access token and its
	// refresh is refused: later list calls fail before any request.
	e.waitFor("every event of the second part at B (events flow) and a list call at A refused (401)", sz.limit, func() bool {
		return e.missingFor(acctB) == 0 && e.sim.Stats(acctA).Unauthorized >= 1
	})
	e.waitFor(fmt.Sprintf("the consumers (main and parking) to owe exactly A's share of the %d changes", len(second)), sz.limit, func() bool {
		owed, err := e.owed()
		return err == nil && owed == uint64(len(second))
	})
	if !outageFor(t, revoked, ls.c3Hold) {
		return
	}
	// What holds while the grant is revoked.
	owed, err := e.owed()
	require.NoError(t, err)
	assert.EqualValues(t, len(second), owed, "A's list changes held (neither acked nor dropped)")
	dlq, err := e.dlqCount()
	require.NoError(t, err)
	assert.Zero(t, dlq, "A's list changes were dead-lettered")
	assert.Equal(t, before, e.sim.ListMembers(acctA, e.listIDOf(listAct)), "A's list changed without credentials")
	// Why: the error log and cohort_connector_account_failing (README,
	// "401, 403, 404"), and /readyz.
	assert.Contains(t, tail(e.logPath, 200, 64<<10), `"ad_account_id":"`+acctA+`"`, "no log line names A")
	assert.Contains(t, tail(e.logPath, 200, 64<<10), "Pinterest rejected the token or ad account", "no error log says why A's changes are held")
	_, metrics := e.get(addr, "/metrics")
	assert.Contains(t, metrics, `cohort_connector_account_failing{ad_account_id="`+acctA+`"} 1`, "A not reported failing in /metrics")
	code, body := e.get(addr, "/readyz")
	t.Logf("/readyz while A's grant is revoked: %d\n%s", code, body)
	readyWhy := readyLines(body)
	assert.Equal(t, http.StatusServiceUnavailable, code, "/readyz while A's list calls are refused (401) and no refresh can succeed")
	assert.Contains(t, body, "fail oauth_token_"+acctA, "/readyz names A's OAuth token")
	held := time.Since(revoked)
	unauthorized := e.sim.Stats(acctA).Unauthorized

	// The operator: re-authorise, new refresh token, forget the stored one,
	// restart.
	const reauthorised = "pinr.faults-reauthorised"
	e.sim.AddApp(oauthAppID, oauthSecret, reauthorised, acctA)
	state, err := e.js.KeyValue(t.Context(), stateBucket)
	require.NoError(t, err)
	require.NoError(t, state.Delete(t.Context(), "token."+acctA), "deleting the stored token")
	e.daemonEnv["CONNECTOR_ACCOUNT_A_REFRESH_TOKEN"] = reauthorised
	_, exit := e.termDaemon(shutdownTimeout + 5*time.Second)
	assert.Equal(t, 0, exit, "exit code after SIGTERM")
	e.startDaemon()
	e.await("every message settled and A's list equal to the current members after the operator's fix", sz.check, e.completeWithLists)
	took := time.Since(e.began)
	e.finish(took, 0, fmt.Sprintf("A's OAuth grant revoked (access and refresh tokens): events flowed to B, A's %d list changes held %s (%d calls got 401; DLQ %d; /readyz %d: %s); "+
		"operator: re-authorised, new refresh token in the env, token.%s deleted, restart; %s",
		len(second), held.Round(100*time.Millisecond), unauthorized, dlq, code, readyWhy, acctA, e.listNotes(listAct)))
}

// get GETs path from the daemon's listener at addr (/readyz, /metrics).
func (e *env) get(addr, path string) (int, string) {
	ctx, cancel := context.WithTimeout(e.t.Context(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	require.NoError(e.t, err)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// readyLines are the lines of a /readyz body that are not "ok", joined.
func readyLines(body string) string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(body), "\n") {
		if !strings.HasPrefix(l, "ok ") {
			out = append(out, strings.TrimSpace(l))
		}
	}
	return strings.Join(out, " | ")
}

// C4. Cohort c4: a customer_list activation at A only. n users enter and
// half of them leave; the list settles. Then A answers 503 for a while
// and older changes arrive after newer ones: the enters of the users who
// left are published again (older than their exits), and m new users'
// exits are published before their (older) enters. Last change wins: the
// list must still hold exactly the users whose latest change is an enter
// (the n/2 who stayed), no event may be sent (no events activation), and
// nothing may be dead-lettered.
func listLateOlderCopies(t *testing.T, order int, name string, sz sizes, ls listSizes) {
	const cohort, listAct = "c4", "act-c4-list"
	n := ls.c4Users
	m := n / 4
	e := newEnv(t, order, name, envOptions{oauth: true})
	e.expectLog(logWant{first: map[string]map[string]string{msgFailing: account(acctA, tagA, listAct, "server_error")},
		end: msgRecovered, setUp: []string{msgTooSmall}, most: 4})
	e.putListActivation(listAct, cohort, "")
	e.lists[listAct].unordered = true // older changes after newer ones, on purpose
	msgs := append(e.enters(cohort, 0, n), e.exits(cohort, 0, n/2)...)
	e.expectList(listAct, msgs)
	e.publish(msgs)
	e.startDaemon()
	e.waitFor("the list settled: the users who stayed", sz.limit, func() bool {
		owed, err := e.owed()
		return err == nil && owed == 0 && e.listsRight()
	})

	e.sim.SetFault(acctA, simulator.Fault{Status: 503})
	faultOn := time.Now()
	late := e.enters(cohort, 0, n/2)                 // older than the exits already applied
	late = append(late, e.exits(cohort, n, m)...)    // new users: the exit first…
	late = append(late, e.enters(cohort, n, m)...)   // …then the older enter
	late = append(late, e.exits(cohort, n/2, m)...)  // stayers leave (newer)…
	late = append(late, e.enters(cohort, n/2, m)...) // …and their enter comes again (older)
	e.expectList(listAct, late)
	e.publish(late)
	e.waitFor("a call to A refused", sz.limit, func() bool { return e.sim.Stats(acctA).Injected > 0 })
	if !outageFor(t, faultOn, sz.shortOutage) {
		return
	}
	refused := e.sim.Stats(acctA).Injected
	e.sim.ClearFaults()
	e.await("every message settled and the list equal to the latest state", sz.check, func() bool {
		owed, err := e.owed()
		return err == nil && owed == 0 && e.listsRight()
	})
	took := time.Since(e.began)
	e.finish(took, 0, fmt.Sprintf("%d enters, %d exits; then, A 503 for %s (%d calls refused), %d older copies after newer changes; %s",
		n, n/2, sz.shortOutage, refused, len(late), e.listNotes(listAct)))
}

// waitListRecorded waits until activation id's audience record in the
// state bucket is ready (its customer list created and recorded): from
// then on the daemon routes the activation's changes to the list.
func (e *env) waitListRecorded(id string, limit time.Duration) {
	e.t.Helper()
	e.waitFor("the customer list of "+id+" created and recorded", limit, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		kv, err := e.js.KeyValue(ctx, stateBucket)
		if err != nil {
			return false
		}
		en, err := kv.Get(ctx, "audience."+id)
		return err == nil && strings.Contains(string(en.Value()), `"state":"ready"`) && e.listIDOf(id) != ""
	})
	// The daemon learns the list's id right after storing the record.
	time.Sleep(100 * time.Millisecond)
}

// stateBucket is the daemon's default CONNECTOR_STATE_BUCKET.
const stateBucket = "COHORT_CONNECTOR_STATE"

// C5. Cohort c5 has an events activation and a customer_list activation,
// both at A, and a backlog of n enters when the daemon starts; the OAuth
// token endpoint answers 503 at first, so the list cannot be created yet.
// Meanwhile no event goes to A either (a delivery goes to an account
// whole) and nothing is dead-lettered. The token endpoint recovers; the
// list is created. Every enter must then be in the list and every event
// at A: a change held for a list not created yet must not be dropped
// because another activation at the same ad account accepted it.
//
// Found by this row: the list stayed empty and every message was acked (a
// redelivery skipped every activation at an ad account that had accepted
// the event). A delivery now goes to an ad account whole: its event waits
// with its list (connector/route.go, holdWaiting).
func listCreatedLateBesideEvents(t *testing.T, order int, name string, sz sizes, ls listSizes) {
	const cohort, listAct = "c5", "act-c5-list"
	n := ls.c1Users
	e := newEnv(t, order, name, envOptions{oauth: true, activations: map[string]string{cohort: ""}})
	e.putListActivation(listAct, cohort, "")
	e.sim.SetFault(simulator.OAuthFaultKey, simulator.Fault{Status: 503})
	// Without a token the audiences cannot be made yet either.
	e.expectLog(logWant{first: map[string]map[string]string{
		"oauth token refresh failed": {"ad_account_id": acctA, "reason": "server_error"},
		msgNotManaged:                {"activation_id": "act-c5"},
	}, end: "oauth token valid again", setUp: []string{msgTooSmall}, most: 8})
	msgs := e.enters(cohort, 0, n, acctA)
	e.expectList(listAct, msgs)
	e.publish(msgs)
	e.startDaemon()
	e.waitFor("the token endpoint refusing (503) while the events wait with their list", sz.limit, func() bool {
		return strings.Contains(tail(e.logPath, 200, 64<<10), `"message":"oauth token refresh failed"`)
	})
	if !outageFor(t, time.Now(), 3*time.Second) {
		return
	}
	assert.Equal(t, n, e.missingFor(acctA), "no event at A before its list exists (a delivery goes to an account whole)")
	dlq, err := e.dlqCount()
	require.NoError(t, err)
	assert.Zero(t, dlq, "changes waiting for their list were dead-lettered")
	e.sim.ClearFaults()
	e.waitListRecorded(listAct, sz.check)
	created := time.Now()
	e.await("every message settled and every enter in the list created late", sz.check, e.completeWithLists)
	took := time.Since(e.began)
	e.finish(took, 0, fmt.Sprintf("events + customer_list at A; token endpoint 503 for 3s: none of the %d events sent meanwhile; list created, then waited %s; %s",
		n, time.Since(created).Round(100*time.Millisecond), e.listNotes(listAct)))
}
