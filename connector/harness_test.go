package connector_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/connector"
	"github.com/cohort-connector/cohort-connector/destinations/pinterest"
	"github.com/cohort-connector/cohort-connector/destinations/pinterest/simulator"
)

// The two ad accounts of every harness and the Tag IDs they own.
const (
	acctA  = "111111111111"
	acctB  = "222222222222"
	tokenA = "tok-a"
	tokenB = "tok-b"

	tagDefault = "1001" // owned by A, the configured default
	tagA2      = "1002" // owned by A
	tagB       = "2001" // owned by B

	subjectPrefix = "cohorts.membership."
	dlqSubject    = "cohorts.dlq"
)

// Polling bounds: no test sleeps to wait for something, it polls.
const (
	waitFor = 15 * time.Second
	tick    = 10 * time.Millisecond
)

// harnessConfig adjusts one harness; the zero value is the default setup.
type harnessConfig struct {
	maxDeliver int // Topology.MaxDeliver, default 5
	// options adjusts the connector Options after the defaults are set.
	options func(*connector.Options)
	// client adjusts the Pinterest client's Config after the defaults.
	client func(*pinterest.Config)
	// activations are written to the bucket before the watcher starts, so
	// that they are loaded when ready is closed.
	activations []cohorts.Activation
	// maxAckPending is Topology.MaxAckPending, default 1000.
	maxAckPending int
	// quiet logs only warnings and errors (benchmarks).
	quiet bool
	// simRateLimit is the simulator's calls per minute per account
	// (default: no limit).
	simRateLimit int
	// orderBucket creates the order bucket and hands it to the connector.
	orderBucket bool
	// parking turns parking on (stream COHORTS_PARKED, cohorts.parked.>).
	parking bool
	// stateBucket creates the state bucket and hands it to the connector
	// (Options.Applied: customer lists' last applied changes).
	stateBucket bool
}

// harness is one complete pipeline on loopback: an embedded JetStream
// server, the real JetStream objects, the activations watcher feeding a
// Resolver, the Pinterest simulator behind the real pinterest.Client, and a
// running Connector.
type harness struct {
	t testing.TB

	srv      *server.Server
	nc       *nats.Conn
	ncClosed chan struct{}
	js       jetstream.JetStream
	topo     connector.Topology
	objs     *connector.Objects

	resolver *cohorts.Resolver
	stats    *connector.Stats
	reg      *prometheus.Registry
	metrics  *connector.Metrics
	sim      *simulator.Simulator
	client   *pinterest.Client
	opts     connector.Options
	log      zerolog.Logger

	stopWatch func()
	watchDone chan error
	watchOnce sync.Once

	mu  sync.Mutex
	run *runHandle // the connector run in progress, nil when stopped
}

// runHandle is one call of Connector.Run in its own goroutine.
type runHandle struct {
	cancel context.CancelFunc
	done   chan error
	conn   *connector.Connector
}

func newHarness(t testing.TB, cfg harnessConfig) *harness {
	t.Helper()
	if cfg.maxDeliver == 0 {
		cfg.maxDeliver = 5
	}
	h := &harness{t: t, ncClosed: make(chan struct{})}
	level := zerolog.InfoLevel
	if cfg.quiet {
		level = zerolog.WarnLevel
	}
	if cfg.maxAckPending == 0 {
		cfg.maxAckPending = 1000
	}
	h.log = zerolog.New(zerolog.NewTestWriter(t)).Level(level).With().Timestamp().Logger()
	ctx := t.Context()

	// Cleanups run last-registered first: the connector run, the watcher,
	// the NATS connection, the server, then the simulator.
	var err error
	if cfg.simRateLimit == 0 {
		cfg.simRateLimit = -1
	}
	h.sim, err = simulator.Start(simulator.Options{
		Accounts:           map[string]string{acctA: tokenA, acctB: tokenB},
		RateLimitPerMinute: cfg.simRateLimit,
	})
	require.NoError(t, err)
	t.Cleanup(func() {
		// The client's pool may hold a connection it dialled for a call
		// that then ran on another one: the server sees it as new, not
		// idle, and a graceful Shutdown waits 5s for it. Close it first.
		if h.client != nil {
			h.client.CloseIdleConnections()
		}
		require.NoError(t, h.sim.Close())
	})

	h.srv, err = server.NewServer(&server.Options{
		JetStream: true, Port: -1, Host: "127.0.0.1", StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
	})
	require.NoError(t, err)
	go h.srv.Start()
	require.True(t, h.srv.ReadyForConnections(10*time.Second), "embedded NATS server not ready")
	t.Cleanup(func() {
		h.srv.Shutdown()
		h.srv.WaitForShutdown()
	})

	h.nc, err = nats.Connect(h.srv.ClientURL(), nats.ClosedHandler(func(*nats.Conn) { close(h.ncClosed) }))
	require.NoError(t, err)
	t.Cleanup(h.closeNATS)
	h.js, err = jetstream.New(h.nc)
	require.NoError(t, err)

	h.topo = connector.Topology{
		Stream:            "COHORTS",
		Subjects:          []string{subjectPrefix + ">"},
		Durable:           "cohort-connector",
		ActivationsBucket: "COHORT_ACTIVATIONS",
		DLQStream:         "COHORTS_DLQ",
		DLQSubject:        dlqSubject,
		AckWait:           5 * time.Second,
		MaxDeliver:        cfg.maxDeliver,
		MaxAckPending:     cfg.maxAckPending,
	}
	if cfg.orderBucket {
		h.topo.OrderBucket = "COHORT_CONNECTOR_ORDER"
	}
	if cfg.parking {
		h.topo.ParkingStream, h.topo.ParkingSubject = "COHORTS_PARKED", "cohorts.parked"
	}
	if cfg.stateBucket {
		h.topo.StateBucket = "COHORT_CONNECTOR_STATE"
	}
	h.objs, err = connector.Ensure(ctx, h.js, h.topo)
	require.NoError(t, err)

	h.resolver, err = cohorts.NewResolver(tagDefault, map[string]string{tagDefault: acctA, tagA2: acctA, tagB: acctB})
	require.NoError(t, err)
	h.stats = connector.NewStats()
	h.reg = prometheus.NewRegistry()
	h.metrics = connector.NewMetrics(h.reg, h.stats, []string{acctA, acctB})
	pcfg := pinterest.Config{
		BaseURL:         h.sim.URL(),
		Tokens:          map[string]string{acctA: tokenA, acctB: tokenB},
		AttemptTimeout:  500 * time.Millisecond,
		CallTimeout:     2 * time.Second,
		RetryWaitMin:    time.Millisecond,
		RetryWaitMax:    10 * time.Millisecond,
		RetryMax:        1,
		Logger:          h.log,
		OnAttempt:       h.metrics.ObserveAttempt,
		OnRateLimitWait: h.metrics.ObserveRateLimitWait,
	}
	if cfg.client != nil {
		cfg.client(&pcfg)
	}
	h.client, err = pinterest.New(pcfg)
	require.NoError(t, err)

	h.opts = connector.Options{
		JS:             h.js,
		Consumer:       h.objs.Consumer,
		Topology:       h.topo,
		Resolver:       h.resolver,
		Destination:    h.client,
		AdAccounts:     map[string][]string{acctA: {tagDefault, tagA2}, acctB: {tagB}},
		BatchPeriod:    20 * time.Millisecond,
		RetryDelayMin:  50 * time.Millisecond,
		AuthRetryDelay: 200 * time.Millisecond,
		DrainTimeout:   5 * time.Second,
		Logger:         h.log,
		Metrics:        h.metrics,
		Stats:          h.stats,
		OrderRecords:   h.objs.Order,
		Applied:        h.objs.State,
	}
	if cfg.options != nil {
		cfg.options(&h.opts)
	}

	for _, a := range cfg.activations {
		h.kvPut(a)
	}
	h.startWatcher()
	t.Cleanup(h.stopWatcher)
	for _, a := range cfg.activations {
		got, ok := h.resolver.Get(a.ID)
		require.True(t, ok, "activation %s not loaded before ready", a.ID)
		require.Equal(t, withMode(a), got)
	}

	h.startRun()
	t.Cleanup(func() { h.stopRun(waitFor) })
	return h
}

func (h *harness) startWatcher() {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := connector.NewActivationsWatcher(h.objs.Activations, h.resolver, h.log, 0)
	h.stopWatch = cancel
	h.watchDone = make(chan error, 1)
	go func() { h.watchDone <- w.Run(ctx) }()
	select {
	case <-w.Ready():
	case err := <-h.watchDone:
		h.t.Fatalf("activations watcher stopped before ready: %v", err)
	case <-time.After(waitFor):
		h.t.Fatal("activations watcher not ready")
	}
}

// stopWatcher cancels the activations watcher and requires it to return nil; only
// the first call does anything.
func (h *harness) stopWatcher() {
	h.watchOnce.Do(func() {
		h.stopWatch()
		select {
		case err := <-h.watchDone:
			require.NoError(h.t, err, "activations watcher")
		case <-time.After(waitFor):
			h.t.Error("the activations watcher did not return after cancel")
		}
	})
}

func (h *harness) closeNATS() {
	if h.nc.IsClosed() {
		return
	}
	if err := h.nc.Drain(); err != nil {
		h.nc.Close()
		return
	}
	select {
	case <-h.ncClosed:
	case <-time.After(5 * time.Second):
		h.t.Error("NATS connection did not finish draining")
		h.nc.Close()
	}
}

// startRun builds a fresh Connector from h.opts and runs it until stopRun.
func (h *harness) startRun() {
	h.t.Helper()
	c, err := connector.New(h.opts)
	require.NoError(h.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	r := &runHandle{cancel: cancel, done: make(chan error, 1), conn: c}
	go func() { r.done <- c.Run(ctx) }()
	h.mu.Lock()
	require.Nil(h.t, h.run, "a run is already in progress")
	h.run = r
	h.mu.Unlock()
}

// accountCheck is the readiness check of an ad account in the run in
// progress.
func (h *harness) accountCheck(account string) connector.Check {
	h.t.Helper()
	h.mu.Lock()
	r := h.run
	h.mu.Unlock()
	require.NotNil(h.t, r, "no run in progress")
	for _, c := range r.conn.Checks() {
		if c.Name == "ad_account_"+account {
			return c
		}
	}
	h.t.Fatalf("no check ad_account_%s in %v", account, r.conn.Checks())
	return connector.Check{}
}

// takeRun hands the run in progress over to the test, which must end it.
func (h *harness) takeRun() *runHandle {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.run
	h.run = nil
	require.NotNil(h.t, r, "no run in progress")
	return r
}

// stopRun cancels the run in progress and requires Run to return nil
// within limit; it returns how long that took. No-op when none is running.
func (h *harness) stopRun(limit time.Duration) time.Duration {
	h.t.Helper()
	h.mu.Lock()
	r := h.run
	h.run = nil
	h.mu.Unlock()
	if r == nil {
		return 0
	}
	start := time.Now()
	r.cancel()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	select {
	case err := <-r.done:
		took := time.Since(start)
		require.NoError(h.t, err, "Run")
		return took
	case <-deadline.C:
		h.t.Fatalf("Run did not return within %s of its context being cancelled", limit)
		return 0
	}
}

func withMode(a cohorts.Activation) cohorts.Activation {
	if a.Mode == "" {
		a.Mode = cohorts.ModeEvents
	}
	return a
}

// activation is an enabled Pinterest events activation.
func activation(id, cohort, tag string) cohorts.Activation {
	return cohorts.Activation{ID: id, CohortID: cohort, Destination: cohorts.DestinationPinterest,
		Enabled: true, TagID: tag, Mode: cohorts.ModeEvents}
}

// kvPut writes the activation to the bucket as JSON, without waiting.
func (h *harness) kvPut(a cohorts.Activation) {
	h.t.Helper()
	b, err := json.Marshal(a)
	require.NoError(h.t, err)
	_, err = h.objs.Activations.Put(h.t.Context(), a.ID, b)
	require.NoError(h.t, err)
}

// putActivation writes the activation and waits until the resolver has it.
func (h *harness) putActivation(a cohorts.Activation) {
	h.t.Helper()
	h.kvPut(a)
	want := withMode(a)
	require.Eventually(h.t, func() bool {
		got, ok := h.resolver.Get(a.ID)
		return ok && got == want
	}, waitFor, tick, "activation %s not applied", a.ID)
}

// publish publishes body on the cohort's subject and returns its stream
// sequence.
func (h *harness) publish(cohort string, body []byte) uint64 {
	h.t.Helper()
	ack, err := h.js.Publish(h.t.Context(), subjectPrefix+cohort, body)
	require.NoError(h.t, err)
	return ack.Sequence
}

// publishMembership publishes m as JSON and returns its stream sequence.
func (h *harness) publishMembership(m cohorts.Membership) uint64 {
	h.t.Helper()
	b, err := json.Marshal(m)
	require.NoError(h.t, err)
	return h.publish(m.CohortID, b)
}

func (h *harness) consumerInfo() *jetstream.ConsumerInfo {
	h.t.Helper()
	ci, err := h.objs.Consumer.Info(h.t.Context())
	require.NoError(h.t, err)
	return ci
}

// consumerPending is what the consumer still owes: not yet delivered plus
// delivered but not settled.
func (h *harness) consumerPending() uint64 {
	h.t.Helper()
	ci := h.consumerInfo()
	return ci.NumPending + uint64(ci.NumAckPending)
}

func (h *harness) requireNothingPending() {
	h.t.Helper()
	require.Eventually(h.t, func() bool { return h.consumerPending() == 0 }, waitFor, tick,
		"consumer still has messages pending")
}

// dlqMessage is one message of the dead-letter stream.
type dlqMessage struct {
	Subject string
	Header  nats.Header
	Data    []byte
}

// dlqMessages reads every message of the DLQ stream, by sequence.
func (h *harness) dlqMessages() []dlqMessage {
	h.t.Helper()
	ctx := h.t.Context()
	info, err := h.objs.DLQ.Info(ctx)
	require.NoError(h.t, err)
	var out []dlqMessage
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := h.objs.DLQ.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		require.NoError(h.t, err)
		out = append(out, dlqMessage{Subject: m.Subject, Header: m.Header, Data: m.Data})
	}
	return out
}

// counter reads one series of a counter or gauge from the registry (0 if
// absent).
// counter is the value of a counter or gauge series, the sample count of
// a histogram (0 when absent).
func (h *harness) counter(name string, labels map[string]string) float64 {
	h.t.Helper()
	mfs, err := h.reg.Gather()
	require.NoError(h.t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			lp := m.GetLabel()
			if len(lp) != len(labels) {
				continue
			}
			for _, l := range lp {
				if labels[l.GetName()] != l.GetValue() {
					continue metrics
				}
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			if hg := m.GetHistogram(); hg != nil {
				return float64(hg.GetSampleCount())
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func (h *harness) settled(result, reason string) float64 {
	h.t.Helper()
	return h.counter("cohort_connector_messages_settled_total", map[string]string{"result": result, "reason": reason})
}

// eventsFor returns the simulator's recorded events of the account whose
// content_ids name the cohort.
func (h *harness) eventsFor(account, cohort string) []simulator.Received {
	var out []simulator.Received
	for _, r := range h.sim.Received(account) {
		if r.Event.CustomData != nil && len(r.Event.CustomData.ContentIDs) == 1 && r.Event.CustomData.ContentIDs[0] == cohort {
			out = append(out, r)
		}
	}
	return out
}

// membership i of a cohort, with one of three identifier sets in turn:
// a mixed-case email with spaces around it, a MAID, or ip + user agent.
// Timestamps are distinct, in the past, with sub-second precision.
func membership(cohort string, i int) cohorts.Membership {
	action := cohorts.ActionEnter
	if i%2 == 1 {
		action = cohorts.ActionExit
	}
	ts := testEpoch.Add(time.Duration(i)*time.Second + time.Duration(i+1)*time.Millisecond + 123)
	var ids cohorts.Identifiers
	switch i % 3 {
	case 0:
		ids.Email = fmt.Sprintf("  User%d.%s@Example.COM ", i, cohort)
	case 1:
		ids.MAID = fmt.Sprintf("AEBE52E7-03EE-455A-B3C4-E57283966%03d", i%1000)
	case 2:
		ids.IP = "192.0.2." + strconv.Itoa(i%250+1)
		ids.UserAgent = "Mozilla/5.0 (test " + strconv.Itoa(i) + ")"
	}
	return cohorts.Membership{UserID: fmt.Sprintf("u-%s-%d", cohort, i), CohortID: cohort, Action: action, TS: ts, Identifiers: ids}
}

// testEpoch is two hours ago, to the second, in UTC.
var testEpoch = time.Now().Add(-2 * time.Hour).Truncate(time.Second).UTC()

func memberships(cohort string, from, n int) []cohorts.Membership {
	out := make([]cohorts.Membership, n)
	for i := range out {
		out[i] = membership(cohort, from+i)
	}
	return out
}

func eventIDs(ms []cohorts.Membership) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.EventID()
	}
	return out
}
