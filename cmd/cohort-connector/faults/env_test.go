package faults_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/connector"
	"github.com/cohort-connector/cohort-connector/destinations/pinterest/simulator"
)

// The two ad accounts, their tokens and Tag IDs (A owns the default Tag ID).
const (
	acctA  = "111111111111"
	acctB  = "222222222222"
	tokenA = "tok-a"
	tokenB = "tok-b"
	tagA   = "1001"
	tagB   = "2001"
)

// JetStream names: the daemon's defaults, which the env also uses to create
// the objects before the daemon starts.
const (
	streamName    = "COHORTS"
	parkingStream = "COHORTS_PARKED" // the daemon's default CONNECTOR_PARKING_STREAM
	dlqStreamName = "COHORTS_DLQ"
	durableName   = "cohort-connector"
	bucketName    = "COHORT_ACTIVATIONS"
	subjectPrefix = "cohorts.membership."
)

// Daemon timing (see the brief): fast redelivery, AckWait 10s.
const (
	ackWait         = 10 * time.Second
	shutdownTimeout = 10 * time.Second
	maxPayload      = 2 << 20 // the server's max_payload, room for a 1 MiB message
	pollEvery       = 50 * time.Millisecond
)

// baseEpoch is the ts of user 0; user i is i milliseconds later. Fixed, so
// that every run publishes the same bytes and event ids.
var baseEpoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// env is one scenario's world: an embedded JetStream server on a fixed port
// (so that a restart comes back where the daemon reconnects), the
// simulator, the daemon subprocess, and what the scenario expects.
type env struct {
	t         *testing.T
	order     int // position in the table
	name      string
	finished  bool
	port      int
	storeDir  string
	srv       *server.Server
	nc        *nats.Conn
	js        jetstream.JetStream
	sim       *simulator.Simulator
	logPath   string
	daemonEnv map[string]string

	proc    *daemonProc
	starts  int
	ackWait time.Duration      // the main consumer's
	kv      jetstream.KeyValue // the activations bucket

	// supervise makes the waits act like a process supervisor: a daemon
	// that exits by itself is started again (at most once a second), and
	// counted in restarts, instead of failing the scenario.
	supervise bool
	restarts  int
	lastStart time.Time

	// expected event ids per ad account, and what was published.
	expected  map[string]map[string]bool
	published int
	began     time.Time
	// pairs holds, per ad account and (cohort, user), the event ids of the
	// user's enter and exit expected there: an exit must not reach the
	// account before its enter (the order column).
	pairs map[string]map[string]*pair
	// dlqAccounts makes finish count an expected event whose message is in
	// the DLQ as accounted for (not lost): for scenarios where giving up
	// on a message, visibly, is an allowed outcome.
	dlqAccounts bool
	// lists are the customer_list activations whose list finish compares
	// with what was published (expectList), by activation id.
	lists map[string]*listExpect
	// logWant is what the daemon's log must say of the row's fault
	// (expectLog); every row states it.
	logWant *logWant
}

// expectLog states what the daemon's log must say of the row's fault:
// finish checks it (logs_test.go).
func (e *env) expectLog(w logWant) { e.logWant = &w }

// pair is one user's enter and exit event ids ("" until expected).
type pair struct{ enter, exit string }

type envOptions struct {
	rateLimit int               // simulator RateLimitPerMinute; 0 = -1 (none)
	record    bool              // record full events (memory heavy at full sizes)
	env       map[string]string // extra or overriding CONNECTOR_* variables
	// activations: cohort → Tag ID ("" = the default Tag ID), one
	// activation "act-<cohort>" each; putActivation adds more.
	activations map[string]string
	// maxDeliver is the main consumer's MaxDeliver (and
	// CONNECTOR_MAX_DELIVER); 0 = 1000.
	maxDeliver int
	// ackWait is the main consumer's AckWait (and CONNECTOR_ACK_WAIT);
	// 0 = ackWait (10s).
	ackWait time.Duration
	// oauth registers account A's OAuth app in the simulator (refresh
	// token oauthRefresh, Tag tagA) and gives the daemon its app id,
	// secret, refresh token and CONNECTOR_SECRETS_KEY: what customer_list
	// activations at A need (the daemon creates their list and audience).
	oauth bool
}

// Account A's OAuth app when envOptions.oauth is set.
const (
	oauthAppID   = "1484960"
	oauthSecret  = "app-secret-faults"
	oauthRefresh = "pinr.faults-first"
	secretsKey   = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // 32 bytes, base64
)

func newEnv(t *testing.T, order int, name string, o envOptions) *env {
	t.Helper()
	if daemonBin == "" {
		t.Skip("-short: the fault-injection suite builds and runs the daemon")
	}
	e := &env{
		t:        t,
		order:    order,
		name:     name,
		storeDir: t.TempDir(),
		logPath:  logPath(t, order),
		expected: map[string]map[string]bool{acctA: {}, acctB: {}},
		pairs:    map[string]map[string]*pair{acctA: {}, acctB: {}},
	}
	maxDeliver := o.maxDeliver
	if maxDeliver == 0 {
		maxDeliver = 1000
	}
	e.ackWait = o.ackWait
	if e.ackWait == 0 {
		e.ackWait = ackWait
	}
	rate := o.rateLimit
	if rate == 0 {
		rate = -1
	}
	var err error
	e.sim, err = simulator.Start(simulator.Options{
		Addr:               "127.0.0.1:0",
		Accounts:           map[string]string{acctA: tokenA, acctB: tokenB},
		KnownUserShare:     1,
		RateLimitPerMinute: rate,
	})
	require.NoError(t, err)
	e.sim.SetRecord(o.record)
	// Cleanups run last-registered first: daemon, NATS client, server, simulator.
	t.Cleanup(func() { _ = e.sim.Close() })

	e.port = freePort(t)
	e.startServer()
	t.Cleanup(e.stopServer)

	e.nc, err = nats.Connect(e.url(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.Name("faults-test"))
	require.NoError(t, err)
	t.Cleanup(e.nc.Close)
	e.js, err = jetstream.New(e.nc, jetstream.WithPublishAsyncMaxPending(4096))
	require.NoError(t, err)
	e.createObjects(o.activations, maxDeliver, e.ackWait)

	e.daemonEnv = map[string]string{
		"CONNECTOR_NATS_URL":                e.url(),
		"CONNECTOR_PINTEREST_BASE_URL":      e.sim.URL(),
		"CONNECTOR_DEFAULT_TAG_ID":          tagA,
		"CONNECTOR_ACCOUNTS":                "a,b",
		"CONNECTOR_ACCOUNT_A_AD_ACCOUNT_ID": acctA,
		"CONNECTOR_ACCOUNT_A_TOKEN":         tokenA,
		"CONNECTOR_ACCOUNT_A_TAG_IDS":       tagA,
		"CONNECTOR_ACCOUNT_B_AD_ACCOUNT_ID": acctB,
		"CONNECTOR_ACCOUNT_B_TOKEN":         tokenB,
		"CONNECTOR_ACCOUNT_B_TAG_IDS":       tagB,
		"CONNECTOR_LISTEN_ADDR":             "",
		"CONNECTOR_RETRY_DELAY_MIN":         "200ms",
		"CONNECTOR_RETRY_DELAY_MAX":         "2s",
		"CONNECTOR_AUTH_RETRY_DELAY":        "1s",
		"CONNECTOR_HTTP_TIMEOUT":            "2s",
		"CONNECTOR_HTTP_CALL_TIMEOUT":       "5s",
		"CONNECTOR_ACK_WAIT":                e.ackWait.String(),
		"CONNECTOR_MAX_DELIVER":             strconv.Itoa(maxDeliver),
		"CONNECTOR_SHUTDOWN_TIMEOUT":        shutdownTimeout.String(),
		"CONNECTOR_LOG_LEVEL":               "info", // the recovery lines are info (see logs_test.go)
	}
	if o.oauth {
		e.sim.AddApp(oauthAppID, oauthSecret, oauthRefresh, acctA)
		e.sim.SetTags(acctA, tagA)
		e.daemonEnv["CONNECTOR_ACCOUNT_A_APP_ID"] = oauthAppID
		e.daemonEnv["CONNECTOR_ACCOUNT_A_APP_SECRET"] = oauthSecret
		e.daemonEnv["CONNECTOR_ACCOUNT_A_REFRESH_TOKEN"] = oauthRefresh
		e.daemonEnv["CONNECTOR_SECRETS_KEY"] = secretsKey
	}
	if lvl := os.Getenv("FAULTS_DAEMON_LOG_LEVEL"); lvl != "" {
		e.daemonEnv["CONNECTOR_LOG_LEVEL"] = lvl
	}
	for k, v := range o.env {
		e.daemonEnv[k] = v
	}
	t.Cleanup(func() {
		e.stopDaemonAtCleanup()
		if t.Failed() || os.Getenv("FAULTS_DAEMON_LOG_LEVEL") != "" {
			n, err := e.owed()
			t.Logf("consumer owes %d (%v); simulator: A %+v; B %+v", n, err, e.sim.Stats(acctA), e.sim.Stats(acctB))
			t.Logf("daemon log (%s), last lines:\n%s", e.logPath, tail(e.logPath, 60, 12<<10))
		}
	})
	t.Cleanup(e.recordAborted)
	return e
}

// logPath is where the daemon of scenario order logs: a temporary file,
// or one in -faults.logs, kept.
func logPath(t *testing.T, order int) string {
	if *logsFlag == "" {
		return filepath.Join(t.TempDir(), "daemon.log")
	}
	require.NoError(t, os.MkdirAll(*logsFlag, 0o755))
	path := filepath.Join(*logsFlag, fmt.Sprintf("%02d.log", order))
	if err := os.Remove(path); !errors.Is(err, fs.ErrNotExist) {
		require.NoError(t, err, "removing an earlier run's log")
	}
	return path
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	return port
}

func (e *env) url() string { return "nats://127.0.0.1:" + strconv.Itoa(e.port) }

// startServer starts the embedded JetStream server on e.port and e.storeDir.
func (e *env) startServer() {
	e.t.Helper()
	srv, err := server.NewServer(&server.Options{
		ServerName: "faults",
		Host:       "127.0.0.1",
		Port:       e.port,
		JetStream:  true,
		StoreDir:   e.storeDir,
		MaxPayload: maxPayload,
		NoLog:      true,
		NoSigs:     true,
	})
	require.NoError(e.t, err)
	go srv.Start()
	require.True(e.t, srv.ReadyForConnections(10*time.Second), "embedded NATS server not ready on port %d", e.port)
	e.srv = srv
}

func (e *env) stopServer() {
	if e.srv != nil {
		e.srv.Shutdown()
		e.srv.WaitForShutdown()
		e.srv = nil
	}
}

// restartServer shuts the server down and starts a new one on the same port
// and store.
func (e *env) restartServer() {
	e.t.Helper()
	e.stopServer()
	e.startServer()
}

// createObjects creates the stream, the DLQ stream, the consumer and the KV
// bucket from deploy/nats/*.json (consumer with the given AckWait and
// MaxDeliver), and puts one activation per cohort.
func (e *env) createObjects(activations map[string]string, maxDeliver int, ackWait time.Duration) {
	t := e.t
	t.Helper()
	ctx := t.Context()
	var sc, dc jetstream.StreamConfig
	var cc jetstream.ConsumerConfig
	var kc jetstream.KeyValueConfig
	readDeploy(t, "stream.json", &sc)
	readDeploy(t, "dlq-stream.json", &dc)
	readDeploy(t, "consumer.json", &cc)
	readDeploy(t, "kv.json", &kc)
	require.Equal(t, streamName, sc.Name)
	require.Equal(t, dlqStreamName, dc.Name)
	require.Equal(t, durableName, cc.Durable)
	require.Equal(t, bucketName, kc.Bucket)
	cc.AckWait = ackWait
	cc.MaxDeliver = maxDeliver

	stream, err := e.js.CreateStream(ctx, sc)
	require.NoError(t, err)
	_, err = e.js.CreateStream(ctx, dc)
	require.NoError(t, err)
	_, err = stream.CreateConsumer(ctx, cc)
	require.NoError(t, err)
	e.kv, err = e.js.CreateKeyValue(ctx, kc)
	require.NoError(t, err)
	for cohort, tag := range activations {
		e.putActivation("act-"+cohort, cohort, tag)
	}
}

// putActivation writes an enabled events-mode activation of cohort to the
// bucket, as `nats kv put` would: tag "" is the default Tag ID, and a Tag
// ID no account owns is written anyway (the daemon must hold its messages).
func (e *env) putActivation(id, cohort, tag string) {
	e.t.Helper()
	a := cohorts.Activation{ID: id, CohortID: cohort, Destination: cohorts.DestinationPinterest,
		Enabled: true, TagID: tag, Mode: cohorts.ModeEvents}
	b, err := json.Marshal(a)
	require.NoError(e.t, err)
	_, err = e.kv.Put(e.t.Context(), a.ID, b)
	require.NoError(e.t, err)
}

// putListActivation writes an enabled customer_list activation of cohort
// (tag "" is the default Tag ID) and makes finish compare its list with
// the changes given to expectList. Put before the daemon starts, it is
// loaded at startup: no backfill, the list is built by the live changes.
func (e *env) putListActivation(id, cohort, tag string) {
	e.t.Helper()
	a := cohorts.Activation{ID: id, CohortID: cohort, Destination: cohorts.DestinationPinterest,
		Enabled: true, TagID: tag, Mode: cohorts.ModeCustomerList}
	b, err := json.Marshal(a)
	require.NoError(e.t, err)
	_, err = e.kv.Put(e.t.Context(), a.ID, b)
	require.NoError(e.t, err)
	if e.lists == nil {
		e.lists = map[string]*listExpect{}
	}
	e.lists[id] = &listExpect{account: acctA, cohort: cohort, users: map[string]listState{}, entered: map[string]bool{}}
}

// readDeploy decodes deploy/nats/<name> of the module into v.
func readDeploy(t *testing.T, name string, v any) {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	require.NoError(t, err)
	path := filepath.Join(filepath.Dir(strings.TrimSpace(string(out))), "deploy", "nats", name)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, v), path)
}

// --- the daemon subprocess ---------------------------------------------

type daemonProc struct {
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
	err  error // cmd.Wait's result, valid after done
}

// startDaemon runs the daemon binary with e.daemonEnv, appending its output
// to e.logPath.
func (e *env) startDaemon() {
	e.t.Helper()
	require.Nil(e.t, e.proc, "daemon already running")
	e.starts++
	f, err := os.OpenFile(e.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	require.NoError(e.t, err)
	fmt.Fprintf(f, "=== start #%d at %s\n", e.starts, time.Now().UTC().Format(time.RFC3339Nano))
	cmd := exec.Command(daemonBin)
	for _, kv := range os.Environ() {
		// Unknown CONNECTOR_* variables are fatal to the daemon: pass none
		// of the caller's.
		if !strings.HasPrefix(strings.ToUpper(kv), "CONNECTOR_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	for k, v := range e.daemonEnv {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		require.NoError(e.t, err)
	}
	p := &daemonProc{cmd: cmd, log: f, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		p.log.Close()
		close(p.done)
	}()
	e.proc = p
	e.lastStart = time.Now()
	if e.began.IsZero() {
		e.began = time.Now()
	}
}

// exited reports whether the running daemon exited by itself (and how).
func (e *env) exited() (bool, error) {
	if e.proc == nil {
		return false, nil
	}
	select {
	case <-e.proc.done:
		return true, e.proc.err
	default:
		return false, nil
	}
}

// killDaemon SIGKILLs the daemon and waits for it.
func (e *env) killDaemon() {
	e.t.Helper()
	p := e.proc
	require.NotNil(e.t, p, "no daemon running")
	e.proc = nil
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		e.t.Fatal("daemon did not die after SIGKILL")
	}
}

// termDaemon sends SIGTERM and waits up to limit for the exit. It returns
// how long the exit took and the exit code (-1 when killed after limit).
func (e *env) termDaemon(limit time.Duration) (time.Duration, int) {
	e.t.Helper()
	p := e.proc
	require.NotNil(e.t, p, "no daemon running")
	e.proc = nil
	start := time.Now()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return time.Since(start), p.cmd.ProcessState.ExitCode()
	case <-time.After(limit):
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		return time.Since(start), -1
	}
}

// stopDaemon ends a scenario: SIGTERM, and the daemon must exit 0 within
// its shutdown timeout (plus process start/exit slack).
func (e *env) stopDaemon() {
	e.t.Helper()
	if e.proc == nil {
		return
	}
	if done, err := e.exited(); done {
		e.proc = nil
		if !e.supervise {
			e.t.Errorf("daemon exited by itself before the end of the scenario: %v", err)
		}
		return
	}
	e.waitConsuming()
	took, code := e.termDaemon(shutdownTimeout + 5*time.Second)
	if code != 0 {
		e.t.Errorf("daemon exit code %d after SIGTERM (took %s), want 0", code, took)
	}
}

// waitConsuming waits (best effort, up to 15s) until the daemon's NATS
// connection has its three subscriptions (JetStream API replies, the
// activations watch, the pull iterator), that is, until it is consuming.
// A SIGTERM during startup makes the daemon exit 1 ("startup failed:
// context canceled"), which is not what stopDaemon checks.
func (e *env) waitConsuming() {
	deadline := time.Now().Add(15 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		if done, _ := e.exited(); done {
			return
		}
		if cz, err := e.srv.Connz(&server.ConnzOptions{}); err == nil {
			for _, c := range cz.Conns {
				if c.Name == "cohort-connector" && c.NumSubs >= 3 {
					return
				}
			}
		}
		<-tick.C
	}
}

func (e *env) stopDaemonAtCleanup() {
	if e.proc == nil {
		return
	}
	e.termDaemon(shutdownTimeout + 5*time.Second)
}

// tail returns the last lines of a file, at most max bytes.
func tail(path string, lines, max int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > max {
		b = b[len(b)-max:]
	}
	parts := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return string(bytes.Join(parts, []byte("\n")))
}

// --- messages ------------------------------------------------------------

// wireMsg is the JSON shape of a membership change as a producer sends it.
type wireMsg struct {
	UserID      string            `json:"user_id"`
	CohortID    string            `json:"cohort_id"`
	Action      string            `json:"action"`
	TS          string            `json:"ts"`
	Identifiers map[string]string `json:"identifiers"`
}

// membership is the deterministic valid change of user in cohort: user
// u<user>, email user<user>@example.com, ts baseEpoch + user ms for the
// enter and one second later for the exit. The same arguments give the
// same bytes and event id on every run.
func membership(cohort string, user int, action string) []byte {
	ts := baseEpoch.Add(time.Duration(user) * time.Millisecond)
	if action == "exit" {
		ts = ts.Add(time.Second)
	}
	b, err := json.Marshal(wireMsg{
		UserID:      "u" + strconv.Itoa(user),
		CohortID:    cohort,
		Action:      action,
		TS:          ts.Format(time.RFC3339Nano),
		Identifiers: map[string]string{"email": "user" + strconv.Itoa(user) + "@example.com"},
	})
	if err != nil {
		panic(err)
	}
	return b
}

// pairedAt is message k of the standard data: a batch of n changes of
// users from, from+1, … whose first half are the users' enters and whose
// second half are the exits of the same users in the same order, so that
// every exit is published n/2 messages after its enter. (An exit right
// behind its enter would make every exit wait for its enter's call, which
// is not how cohorts change.) With n odd the last enter has no exit.
func pairedAt(from, n, k int) (user int, action string) {
	h := (n + 1) / 2
	if k < h {
		return from + k, "enter"
	}
	return from + k - h, "exit"
}

// outMsg is one message to publish.
type outMsg struct {
	subject string
	data    []byte
}

// expect decodes data as the daemon will and records its event id as
// expected at account (and, for the order column, as its user's enter or
// exit there); it returns the id.
func (e *env) expect(account string, data []byte) string {
	e.t.Helper()
	m, err := cohorts.Decode(data, time.Now())
	require.NoError(e.t, err, "a message the scenario means to be valid: %.200s", data)
	id := m.EventID()
	e.expected[account][id] = true
	key := m.CohortID + "\x00" + m.UserID
	p := e.pairs[account][key]
	if p == nil {
		p = &pair{}
		e.pairs[account][key] = p
	}
	slot := &p.enter
	if m.Action == cohorts.ActionExit {
		slot = &p.exit
	}
	require.True(e.t, *slot == "" || *slot == id,
		"scenario bug: user %s of cohort %s has two %ss expected at %s", m.UserID, m.CohortID, m.Action, account)
	*slot = id
	return id
}

// goodBatch returns the standard data for a cohort (n changes of users
// from.., see pairedAt), each expected at the given accounts.
func (e *env) goodBatch(account, cohort string, from, n int, more ...string) []outMsg {
	out := make([]outMsg, n)
	for k := range out {
		user, action := pairedAt(from, n, k)
		d := membership(cohort, user, action)
		for _, acct := range append([]string{account}, more...) {
			e.expect(acct, d)
		}
		out[k] = outMsg{subject: subjectPrefix + cohort, data: d}
	}
	return out
}

// publish publishes msgs in order with asynchronous acks and returns their
// stream sequences. Every publish must be acknowledged.
func (e *env) publish(msgs []outMsg) []uint64 {
	e.t.Helper()
	ctx := e.t.Context()
	seqs := make([]uint64, 0, len(msgs))
	const window = 2000
	for start := 0; start < len(msgs); start += window {
		end := min(start+window, len(msgs))
		futs := make([]jetstream.PubAckFuture, 0, end-start)
		for _, m := range msgs[start:end] {
			f, err := e.js.PublishMsgAsync(&nats.Msg{Subject: m.subject, Data: m.data})
			require.NoError(e.t, err)
			futs = append(futs, f)
		}
		for _, f := range futs {
			select {
			case ack := <-f.Ok():
				seqs = append(seqs, ack.Sequence)
			case err := <-f.Err():
				e.t.Fatalf("publish to %s: %v", f.Msg().Subject, err)
			case <-ctx.Done():
				e.t.Fatal("publish: test ended")
			}
		}
	}
	e.published += len(msgs)
	return seqs
}

// --- observation -----------------------------------------------------------

// owed is what the consumer still has to settle: not yet delivered plus
// delivered and unsettled (a nak with delay stays ack-pending).
func (e *env) owed() (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := e.js.Consumer(ctx, streamName, durableName)
	if err != nil {
		return 0, err
	}
	ci, err := c.Info(ctx)
	if err != nil {
		return 0, err
	}
	owed := ci.NumPending + uint64(ci.NumAckPending)
	// Messages of a failing account wait in its parking consumer: owed too.
	ps, err := e.js.Stream(ctx, parkingStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return owed, nil // the daemon has not created it yet
	}
	if err != nil {
		return 0, err
	}
	for name := range ps.ConsumerNames(ctx).Name() {
		pc, err := ps.Consumer(ctx, name)
		if err != nil {
			return 0, err
		}
		pi, err := pc.Info(ctx)
		if err != nil {
			return 0, err
		}
		owed += pi.NumPending + uint64(pi.NumAckPending)
	}
	return owed, nil
}

func (e *env) dlqCount() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, dlqStreamName)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	return int(info.State.Msgs), nil
}

// missing counts the expected ids the simulator never received.
func (e *env) missing() int {
	n := 0
	for acct, ids := range e.expected {
		got := e.sim.EventIDs(acct)
		for id := range ids {
			if got[id] == 0 {
				n++
			}
		}
	}
	return n
}

// received is the number of distinct event ids the simulator holds for acct.
func (e *env) received(acct string) int { return len(e.sim.EventIDs(acct)) }

// errDeadline is poll's error when cond did not hold in time.
var errDeadline = errors.New("not done")

// restartEvery is the supervisor's shortest interval between two starts of
// the daemon (systemd's RestartSec, a pod's back-off).
const restartEvery = time.Second

// poll checks cond every pollEvery until it holds. It returns an error
// wrapping errDeadline when limit has passed, or one saying the daemon
// exited by itself; when e.supervise is set, such a daemon is started
// again instead (and counted in e.restarts).
func (e *env) poll(limit time.Duration, cond func() bool) error {
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		if cond() {
			return nil
		}
		if done, err := e.exited(); done {
			if !e.supervise {
				return fmt.Errorf("the daemon exited by itself: %v", err)
			}
			if time.Since(e.lastStart) >= restartEvery {
				e.proc = nil
				e.restarts++
				e.t.Logf("supervisor: the daemon exited (%v): restart #%d", err, e.restarts)
				e.startDaemon()
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w after %s", errDeadline, limit)
		}
		select {
		case <-tick.C:
		case <-e.t.Context().Done():
			return errors.New("test ended")
		}
	}
}

// waitFor polls cond until it holds; it fails the test at the deadline or
// if the daemon exits by itself (unless supervised).
func (e *env) waitFor(what string, limit time.Duration, cond func() bool) {
	e.t.Helper()
	if err := e.poll(limit, cond); err != nil {
		e.t.Fatalf("waiting for %s: %v", what, err)
	}
}

// await is waitFor for what a scenario checks rather than sets up: at the
// deadline it marks the test failed and returns false, so that the
// scenario goes on to finish and its row shows the figures. A daemon that
// exits by itself (unsupervised) still ends the scenario.
func (e *env) await(what string, limit time.Duration, cond func() bool) bool {
	e.t.Helper()
	err := e.poll(limit, cond)
	switch {
	case err == nil:
		return true
	case errors.Is(err, errDeadline):
		e.t.Errorf("waiting for %s: %v", what, err)
		return false
	}
	e.t.Fatalf("waiting for %s: %v", what, err)
	return false
}

// waitComplete waits until the consumer owes nothing and every expected id
// reached the simulator; it returns the time since the daemon first started.
func (e *env) waitComplete(limit time.Duration) time.Duration {
	e.t.Helper()
	e.waitFor("every message settled and every expected event received", limit, e.complete)
	return time.Since(e.began)
}

// awaitComplete is waitComplete as a check (see await).
func (e *env) awaitComplete(limit time.Duration) time.Duration {
	e.t.Helper()
	e.await("every message settled and every expected event received", limit, e.complete)
	return time.Since(e.began)
}

func (e *env) complete() bool {
	n, err := e.owed()
	return err == nil && n == 0 && e.missing() == 0
}

// outcome is what a scenario's counts come to, from the simulator's
// record and the DLQ.
type outcome struct {
	delivered    int // expected (account, event id) received at least once
	deadLettered int // not received, its message in the DLQ (e.dlqAccounts only)
	lost         int // neither
	duplicates   int // receptions minus distinct ids
	order        int // exits whose first arrival at an account preceded their enter's there
	unexpected   int // ids received that the scenario did not expect there
	dlq          int // messages in the DLQ stream
	dlqErr       error
	// Customer lists (e.lists): users in the state their latest published
	// change says (a member or not), and users in the other one.
	listRight, listWrong int
}

func (e *env) outcome() outcome {
	var o outcome
	o.dlq, o.dlqErr = e.dlqCount()
	inDLQ := map[string]bool{}
	if e.dlqAccounts && o.dlqErr == nil {
		var dms []dlqMessage
		dms, o.dlqErr = e.readDLQ()
		for _, dm := range dms {
			if m, err := cohorts.Decode(dm.Data, time.Now()); err == nil {
				inDLQ[m.EventID()] = true
			}
		}
	}
	total, distinct := 0, 0
	for _, acct := range []string{acctA, acctB} {
		got := e.sim.EventIDs(acct)
		for id, n := range got {
			total += n
			distinct++
			if !e.expected[acct][id] {
				o.unexpected++
			}
		}
		for id := range e.expected[acct] {
			switch {
			case got[id] > 0:
				o.delivered++
			case inDLQ[id]:
				o.deadLettered++
			default:
				o.lost++
			}
		}
		first := e.sim.FirstArrivals(acct)
		for _, p := range e.pairs[acct] {
			fe, okE := first[p.enter]
			fx, okX := first[p.exit]
			if p.enter != "" && p.exit != "" && okE && okX && fx < fe {
				o.order++
			}
		}
	}
	o.duplicates = total - distinct
	for id := range e.lists {
		lc := e.listCheck(id)
		o.listRight += lc.right
		o.listWrong += lc.missing + lc.stale
		o.order += lc.overtaken
	}
	return o
}

// finish stops the daemon, counts, checks lost == 0, no unexpected event
// and no exit before its enter (order), and adds the scenario's row.
// wantDLQ < 0 skips the DLQ check.
func (e *env) finish(took time.Duration, wantDLQ int, notes string) {
	e.t.Helper()
	e.stopDaemon()
	e.finished = true
	o := e.outcome()
	r := row{order: e.order, scenario: e.name, published: e.published, took: took, notes: notes,
		delivered: o.delivered + o.listRight, lost: o.lost + o.listWrong, duplicates: o.duplicates, violations: o.order, dlq: o.dlq}
	for _, id := range slices.Sorted(maps.Keys(e.lists)) {
		lc := e.listCheck(id)
		r.notes += fmt.Sprintf("; list of %s: %d members, want %d: %d missing, %d that should have left (delivered/lost count its %d users: right/wrong state)",
			id, lc.have, lc.want, lc.missing, lc.stale, len(e.lists[id].users))
		if lc.overtaken > 0 {
			e.t.Errorf("list of %s: %d exits reached it before their enter, of users %v…", id, lc.overtaken, lc.overtakenUsers)
		}
		if !e.lists[id].unordered {
			r.notes += fmt.Sprintf(", %d exits reached the list before their enter (counted in order)", lc.overtaken)
		}
		if lc.missing > 0 || lc.stale > 0 || lc.have != lc.want || lc.listID == "" {
			e.t.Errorf("customer list of activation %s (%q): %d members, want %d: %d missing (latest change an enter), %d present whose latest change is an exit",
				id, lc.listID, lc.have, lc.want, lc.missing, lc.stale)
		}
	}
	if o.dlqErr != nil {
		e.t.Errorf("reading the DLQ: %v", o.dlqErr)
	}
	if e.dlqAccounts {
		r.notes += fmt.Sprintf("; accounted for = delivered to its account (%d) or its message in the DLQ (%d); lost = neither",
			o.delivered, o.deadLettered)
	}
	if o.lost > 0 {
		what := "expected event ids never reached Pinterest"
		if e.dlqAccounts {
			what = "expected event ids never reached Pinterest and are not in the DLQ either"
		}
		e.t.Errorf("%d %s", o.lost, what)
	}
	if o.unexpected > 0 {
		e.t.Errorf("%d event ids reached Pinterest that the scenario did not expect (sent where they do not belong, or sent without identifiers)", o.unexpected)
	}
	if o.order > 0 {
		e.t.Errorf("%d exits reached an ad account before their enter", o.order)
	}
	if wantDLQ >= 0 && o.dlq != wantDLQ {
		e.t.Errorf("DLQ holds %d messages, want %d", o.dlq, wantDLQ)
	}
	if e.logWant == nil {
		e.t.Errorf("the row states nothing of its log (expectLog)")
	} else {
		problem, note := checkLog(e.logPath, *e.logWant)
		r.notes += "; " + note
		if problem != "" {
			e.t.Errorf("daemon log: %s", problem)
		}
	}
	if b, err := os.ReadFile(e.logPath); err == nil {
		// nats.go's default async error handler writes these as plain text.
		if n := bytes.Count(b, []byte("nats: slow consumer")); n > 0 {
			r.notes += fmt.Sprintf("; %d slow-consumer drops", n)
		}
	}
	r.failed = e.t.Failed()
	results.add(r)
	e.t.Logf("%s: published %d, delivered %d, lost %d, duplicates %d, order violations %d, DLQ %d, %s", e.name,
		r.published, r.delivered, r.lost, r.duplicates, r.violations, r.dlq, took.Round(100*time.Millisecond))
}

// recordAborted adds a row for a scenario that stopped before finish, so
// that the table shows it.
func (e *env) recordAborted() {
	if e.finished {
		return
	}
	o := e.outcome()
	notes := "aborted"
	if n, err := e.owed(); err == nil && n > 0 {
		notes = fmt.Sprintf("aborted: the consumer still owes %d (held, not acked)", n)
	}
	r := row{order: e.order, scenario: e.name, published: e.published, delivered: o.delivered + o.listRight, lost: o.lost + o.listWrong,
		duplicates: o.duplicates, violations: o.order, dlq: o.dlq, notes: notes, failed: true}
	if !e.began.IsZero() {
		r.took = time.Since(e.began)
	}
	results.add(r)
}

// --- customer lists ----------------------------------------------------------

// listExpect is what a customer_list activation's list must hold: per user,
// the latest change published (last change wins, by ts).
type listExpect struct {
	account, cohort string
	users           map[string]listState
	// entered holds the records of the users with an enter published;
	// unordered is set by a scenario that publishes a user's changes out
	// of ts order on purpose (then an exit may rightly come first).
	entered   map[string]bool
	unordered bool
}

// listState is a user's latest published change for a list.
type listState struct {
	ts     time.Time
	member bool   // the change is an enter
	record string // what the list holds for the user (the hashed email)
}

// expectList records msgs (in any order) as changes of activation id's
// list: a user is expected in the list iff its change with the latest ts
// is an enter.
func (e *env) expectList(id string, msgs []outMsg) {
	e.t.Helper()
	le := e.lists[id]
	require.NotNil(e.t, le, "scenario bug: activation %s is not a customer_list activation of the env", id)
	for _, om := range msgs {
		m, err := cohorts.Decode(om.data, time.Now())
		require.NoError(e.t, err, "a message the scenario means to be valid: %.200s", om.data)
		require.Equal(e.t, le.cohort, m.CohortID, "scenario bug: a change of another cohort expected in %s", id)
		h := m.Identifiers.Hash()
		require.NotEmpty(e.t, h.Em, "scenario bug: a list change without an email")
		if m.Action == cohorts.ActionEnter {
			le.entered[h.Em] = true
		}
		if cur, ok := le.users[m.UserID]; ok && cur.ts.After(m.TS) {
			continue
		}
		le.users[m.UserID] = listState{ts: m.TS, member: m.Action == cohorts.ActionEnter, record: h.Em}
	}
}

// listWant is the sorted records activation id's list must hold.
func (e *env) listWant(id string) []string {
	var out []string
	for _, u := range e.lists[id].users {
		if u.member {
			out = append(out, u.record)
		}
	}
	slices.Sort(out)
	return out
}

// listIDOf is the simulator's id of activation id's customer list, found by
// the name the daemon gives it; "" while there is none.
func (e *env) listIDOf(id string) string {
	le := e.lists[id]
	name := connector.AudienceName(id, le.cohort)
	for _, l := range e.sim.Lists(le.account) {
		if l.Name == name {
			return l.ID
		}
	}
	return ""
}

// listCheckResult compares a list with its expectation.
type listCheckResult struct {
	listID         string
	have, want     int // members held, members expected
	right          int // users in the expected state
	missing, stale int // expected members absent; present non-members (their latest change an exit)
	// overtaken is the exits applied to the list before their enter: the
	// users with an enter published whose first operation on the list was
	// a REMOVE (the simulator's RemovedFirst).
	overtaken      int
	overtakenUsers []string
}

func (e *env) listCheck(id string) listCheckResult {
	le := e.lists[id]
	r := listCheckResult{listID: e.listIDOf(id), want: len(e.listWant(id))}
	held := map[string]bool{}
	if r.listID != "" {
		for _, m := range e.sim.ListMembers(le.account, r.listID) {
			held[m] = true
		}
	}
	r.have = len(held)
	if r.listID != "" && !le.unordered {
		for _, rec := range e.sim.RemovedFirst(le.account, r.listID) {
			if le.entered[rec] {
				r.overtaken++
				for uid, u := range le.users {
					if u.record == rec && len(r.overtakenUsers) < 10 {
						r.overtakenUsers = append(r.overtakenUsers, uid)
					}
				}
			}
		}
	}
	for _, u := range le.users {
		switch {
		case u.member && !held[u.record]:
			r.missing++
		case !u.member && held[u.record]:
			r.stale++
		default:
			r.right++
		}
	}
	return r
}

// listsRight reports whether every expected list exists and holds exactly
// its expected members.
func (e *env) listsRight() bool {
	for id := range e.lists {
		lid := e.listIDOf(id)
		if lid == "" || !slices.Equal(e.sim.ListMembers(e.lists[id].account, lid), e.listWant(id)) {
			return false
		}
	}
	return true
}

// completeWithLists is complete, and every list right.
func (e *env) completeWithLists() bool { return e.complete() && e.listsRight() }
