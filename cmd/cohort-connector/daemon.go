package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/config"
	"github.com/cohort-connector/cohort-connector/connector"
	"github.com/cohort-connector/cohort-connector/destinations/pinterest"
)

func runDaemon(ctx context.Context, stderr io.Writer) error {
	cfg, err := config.Load()
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	log, err := newLogger(cfg, stderr)
	if err != nil {
		return err
	}
	log.Info().Object("build", thisBuild()).Object("config", cfg).Msg("starting cohort-connector")
	d, err := startDaemon(ctx, cfg, log)
	if err != nil {
		if ctx.Err() != nil {
			// SIGTERM/SIGINT during startup: a requested stop, not a failure.
			log.Info().Err(err).Msg("stopped during startup")
			return nil
		}
		log.Error().Err(err).Msg("startup failed")
		return err
	}
	return d.run(ctx)
}

// logConsumerSettings logs the consumer settings in effect, durations
// with units: the consumer's own, which an operator who created it may
// have chosen differently from CONNECTOR_ACK_WAIT, CONNECTOR_MAX_DELIVER
// and CONNECTOR_MAX_ACK_PENDING (then said with a warning: the variables
// only shape a consumer the daemon creates).
func logConsumerSettings(log zerolog.Logger, cfg config.Config, ci jetstream.ConsumerConfig) {
	ev, msg := log.Info(), "consumer settings in effect"
	if ci.AckWait != cfg.AckWait || ci.MaxDeliver != cfg.MaxDeliver || ci.MaxAckPending != cfg.MaxAckPending {
		ev, msg = log.Warn(), "consumer settings in effect are the existing consumer's, not CONNECTOR_ACK_WAIT, CONNECTOR_MAX_DELIVER and CONNECTOR_MAX_ACK_PENDING"
	}
	ev.Str("durable", ci.Durable).Str("ack_wait", ci.AckWait.String()).Int("max_deliver", ci.MaxDeliver).
		Int("max_ack_pending", ci.MaxAckPending).Str("configured_ack_wait", cfg.AckWait.String()).
		Int("configured_max_deliver", cfg.MaxDeliver).Int("configured_max_ack_pending", cfg.MaxAckPending).Msg(msg)
}

var setTimeFormat sync.Once

func newLogger(cfg config.Config, w io.Writer) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(cfg.LogLevel)
	if err != nil {
		return zerolog.Nop(), fmt.Errorf("CONNECTOR_LOG_LEVEL: %w", err)
	}
	// Milliseconds: shutdown steps and retries happen within one second.
	// A zerolog global, set once (tests run several daemons in a process).
	setTimeFormat.Do(func() { zerolog.TimeFieldFormat = "2006-01-02T15:04:05.000Z07:00" })
	if cfg.LogFormat == "console" {
		w = consoleWriter(w)
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

// daemon is the wired process: NATS (embedded or not), the JetStream
// objects, the resolver fed by the activations watcher, the Pinterest client
// and the connector.
type daemon struct {
	cfg       config.Config
	log       zerolog.Logger
	srv       *server.Server // embedded server, nil when CONNECTOR_NATS_URL is set
	nc        *nats.Conn
	ncClosed  chan struct{}
	js        jetstream.JetStream
	objs      *connector.Objects
	resolver  *cohorts.Resolver
	client    *pinterest.Client
	creds     credentials // conversion tokens and OAuth token keepers
	audiences audiences   // audience manager and match-rate sketches
	backfills backfills   // backfills of activations just enabled
	conn      *connector.Connector
	stats     *connector.Stats
	metrics   *connector.Metrics
	topo      connector.Topology
	reg       *prometheus.Registry
	watcher   *connector.ActivationsWatcher // feeds resolver; its checks are part of /readyz
	admin     *admin                        // the status page's sign-in and changes
	natsURL   string
	httpLn    net.Listener
	httpSrv   *http.Server
	closing   atomic.Bool // set when we close NATS ourselves
	// onStopped, if set, runs after the connector has settled everything
	// and before NATS is closed (the demo reads the consumer's final state).
	onStopped func()
}

// httpAddr is where /metrics is served ("" when disabled).
func (d *daemon) httpAddr() string {
	if d.httpLn == nil {
		return ""
	}
	return d.httpLn.Addr().String()
}

// startDaemon connects and builds everything; on error it releases what it
// had started.
func startDaemon(ctx context.Context, cfg config.Config, log zerolog.Logger) (_ *daemon, err error) {
	d := &daemon{cfg: cfg, log: log, ncClosed: make(chan struct{}), reg: prometheus.NewRegistry(), admin: newAdmin(cfg.AdminToken)}
	defer func() {
		if err != nil {
			d.closeNATS()
		}
	}()

	d.natsURL = cfg.NATSURL
	if d.natsURL == "" {
		if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
			return nil, fmt.Errorf("CONNECTOR_DATA_DIR %s: %w", cfg.DataDir, err)
		}
		if d.srv, err = connector.StartEmbedded(cfg.EmbeddedListen, cfg.DataDir); err != nil {
			return nil, err
		}
		d.natsURL = d.srv.ClientURL()
		log.Info().Str("nats_url", d.natsURL).Str("data_dir", cfg.DataDir).Msg("embedded JetStream server started")
	}
	opts, err := natsOptions(cfg, "cohort-connector")
	if err != nil {
		return nil, err
	}
	var disconnectedAt atomic.Int64 // Unix ns, 0 while connected
	opts = append(opts,
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if d.closing.Load() {
				return
			}
			disconnectedAt.CompareAndSwap(0, time.Now().UnixNano())
			log.Warn().Err(err).Str("nats_url", redactURL(d.natsURL)).
				Msg("NATS disconnected: reconnecting; messages in flight are settled once it is back, or redelivered")
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			ev := log.Info().Str("nats_url", nc.ConnectedUrlRedacted())
			if at := disconnectedAt.Swap(0); at != 0 {
				ev = ev.Str("lasted", time.Since(time.Unix(0, at)).Round(time.Millisecond).String())
			}
			ev.Msg("NATS reconnected")
		}),
		nats.ClosedHandler(func(*nats.Conn) { close(d.ncClosed) }),
		// Asynchronous errors (slow consumer, permissions) into our logs
		// rather than nats.go's plain-text default on stderr.
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			ev := log.Warn().Err(err)
			if sub != nil {
				ev = ev.Str("subject", sub.Subject)
			}
			ev.Msg("NATS asynchronous error")
		}),
	)
	d.nc, err = nats.Connect(d.natsURL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connecting to NATS at %s: %w", redactURL(d.natsURL), err)
	}
	if d.js, err = jetstream.New(d.nc); err != nil {
		return nil, fmt.Errorf("JetStream: %w", err)
	}
	topo := topology(cfg)
	d.objs, err = connector.Ensure(ctx, d.js, topo)
	if err != nil {
		return nil, err
	}
	for _, what := range d.objs.Created {
		log.Info().Str("created", what).Msg("created missing JetStream object")
	}
	// Settle decisions use the consumer's real settings, which an operator
	// may have chosen differently from ours.
	ci := d.objs.Consumer.CachedInfo().Config
	logConsumerSettings(log, cfg, ci)
	topo.AckWait, topo.MaxDeliver = ci.AckWait, ci.MaxDeliver
	d.topo = topo
	if ci.AckWait <= cfg.HTTPCallTimeout+cfg.BatchPeriod {
		log.Warn().Dur("ack_wait", ci.AckWait).Dur("http_call_timeout", cfg.HTTPCallTimeout).
			Msg("consumer AckWait is not above CONNECTOR_HTTP_CALL_TIMEOUT + CONNECTOR_BATCH_PERIOD: slow calls will cause duplicate deliveries")
	}

	if d.resolver, err = cohorts.NewResolver(cfg.DefaultTagID, cfg.TagAccounts()); err != nil {
		return nil, fmt.Errorf("CONNECTOR_DEFAULT_TAG_ID: %w", err)
	}
	d.watcher = connector.NewActivationsWatcher(d.objs.Activations, d.resolver, log, 0)
	d.stats = connector.NewStats()
	accounts := make(map[string][]string)
	for _, a := range cfg.AccountList {
		accounts[a.AdAccountID] = a.TagIDs
	}
	ids := make([]string, 0, len(accounts))
	for id := range accounts {
		ids = append(ids, id)
	}
	d.metrics = connector.NewMetrics(d.reg, d.stats, ids)
	metrics := d.metrics
	d.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	thisBuild().register(d.reg)
	connector.RegisterConsumerMetrics(d.reg, d.js, topo, ids)
	if err := d.connectPinterest(metrics); err != nil {
		return nil, err
	}
	for _, id := range ids {
		d.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "cohort_connector_pinterest_call_budget_per_minute",
			Help:        "Current call budget of the ad account (lowered after 429s, restored as calls succeed).",
			ConstLabels: prometheus.Labels{"ad_account_id": id},
		}, func() float64 { return d.client.CallsPerMinute(id) }))
	}
	if d.audiences, err = newAudiences(d); err != nil {
		return nil, err
	}
	d.watcher.OnChange = d.activationChanged
	d.backfills.ctx, d.backfills.cancel = context.WithCancel(context.Background())
	d.conn, err = connector.New(connector.Options{
		JS:             d.js,
		Consumer:       d.objs.Consumer,
		Topology:       topo,
		Resolver:       d.resolver,
		Destination:    d.client,
		OrderRecords:   d.objs.Order,
		Applied:        d.objs.State,
		CustomerLists:  d.audiences.customerList(),
		OnAccepted:     d.audiences.accepted(),
		TokenExpiring:  d.creds.tokenExpiring,
		AdAccounts:     accounts,
		BatchSize:      cfg.BatchSize,
		BatchPeriod:    cfg.BatchPeriod,
		MaxInFlight:    cfg.MaxInFlight,
		RetryDelayMin:  cfg.RetryDelayMin,
		RetryDelayMax:  cfg.RetryDelayMax,
		AuthRetryDelay: cfg.AuthRetryDelay,
		// Leave room after the drain for the last acks and nc.Drain.
		DrainTimeout: cfg.ShutdownTimeout * 4 / 5,
		Logger:       log,
		Metrics:      metrics,
		Stats:        d.stats,
	})
	if err != nil {
		return nil, err
	}
	// Listen before consuming: /readyz answers 503 until activations load.
	if d.httpSrv, err = d.serveHTTP(); err != nil {
		return nil, err
	}
	return d, nil
}

// connectPinterest builds the credentials and the Pinterest client (the
// keepers refresh through the client, see lateRefresher), its calls
// observed by metrics (nil: not observed).
func (d *daemon) connectPinterest(metrics *connector.Metrics) error {
	var err error
	if d.creds, err = newCredentials(d.cfg, d); err != nil {
		return err
	}
	cfg := pinterest.Config{
		BaseURL:        d.cfg.PinterestBaseURL,
		Tokens:         d.creds.static,
		TokenSources:   d.creds.eventSources(),
		AdsTokens:      d.creds.adsSources(),
		AttemptTimeout: d.cfg.HTTPTimeout,
		CallTimeout:    d.cfg.HTTPCallTimeout,
		RetryMax:       retryMax(d.cfg.HTTPRetryMax),
		RetryWaitMin:   d.cfg.HTTPRetryWaitMin,
		RetryWaitMax:   d.cfg.HTTPRetryWaitMax,
		MaxRetryAfter:  d.cfg.RetryDelayMax,
		CallsPerMinute: callsPerMinute(d.cfg.CallsPerMinute),
		Logger:         d.log,
	}
	if metrics != nil {
		cfg.OnAttempt, cfg.OnRateLimitWait = metrics.ObserveAttempt, metrics.ObserveRateLimitWait
	}
	d.client, err = pinterest.New(cfg)
	if err != nil {
		return fmt.Errorf("CONNECTOR_PINTEREST_BASE_URL: %w", err)
	}
	return nil
}

// callsPerMinute maps the configuration's "0: no budget" to the client's
// "negative disables".
func callsPerMinute(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// retryMax maps the configuration's "0 retries" to the client's "disabled".
func retryMax(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

func topology(cfg config.Config) connector.Topology {
	return connector.Topology{
		Stream:            cfg.Stream,
		Subjects:          cfg.Subjects,
		Durable:           cfg.Durable,
		ActivationsBucket: cfg.ActivationsBucket,
		OrderBucket:       cfg.OrderBucket,
		StateBucket:       cfg.StateBucket,
		ParkingStream:     cfg.ParkingStream,
		ParkingSubject:    cfg.ParkingSubject,
		DLQStream:         cfg.DLQStream,
		DLQSubject:        cfg.DLQSubject,
		AckWait:           cfg.AckWait,
		MaxDeliver:        cfg.MaxDeliver,
		MaxAckPending:     cfg.MaxAckPending,
	}
}

// run serves until ctx is cancelled, then shuts down in order: the
// connector (stop fetching, flush, settle), the activations watcher, the
// HTTP listener, the NATS connection (Drain flushes the last acks), and the
// embedded server last.
func (d *daemon) run(ctx context.Context) error {
	watchCtx, stopWatch := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	watchErr := make(chan error, 1)
	wg.Add(2)
	go func() {
		defer wg.Done()
		watchErr <- d.watcher.Run(watchCtx)
	}()
	for id, k := range d.creds.keepers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := k.Run(watchCtx); err != nil && watchCtx.Err() == nil {
				d.log.Error().Err(err).Str("ad_account_id", id).Msg("OAuth token keeper stopped: the access token is no longer refreshed")
			}
		}()
	}
	// Before consuming: advisories are not stored, one sent before the
	// subscription exists is gone.
	go func() {
		defer wg.Done()
		err := connector.WatchMaxDeliveries(watchCtx, d.nc, d.js, d.topo, d.log, d.metrics.DeadLetter)
		if err != nil && watchCtx.Err() == nil {
			d.log.Error().Err(err).Msg("max-deliveries advisory watcher stopped: messages JetStream gives up on are not dead-lettered")
		}
	}()

	var runErr error
	select {
	case <-d.watcher.Ready():
		d.log.Info().Str("stream", d.cfg.Stream).Str("durable", d.cfg.Durable).Int("accounts", len(d.cfg.AccountList)).
			Str("default_tag_id", d.cfg.DefaultTagID).Msg("consuming")
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.audiences.run(watchCtx, d)
		}()
		d.resumeBackfills(ctx)
		runErr = d.conn.Run(ctx)
	case err := <-watchErr:
		runErr = fmt.Errorf("loading activations: %w", err)
	case <-ctx.Done():
	}

	d.backfills.cancel()
	d.backfills.wg.Wait()
	stopWatch()
	wg.Wait()
	if d.onStopped != nil {
		d.onStopped()
	}
	if d.httpSrv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = d.httpSrv.Shutdown(sctx)
		cancel()
	}
	d.client.CloseIdleConnections()
	d.closeNATS()
	d.log.Debug().Msg("NATS connection drained")
	if runErr != nil {
		d.log.Error().Err(runErr).Msg("stopped on error")
		return runErr
	}
	d.log.Info().Msg("shutdown complete")
	return nil
}

// closeNATS drains the connection (pending acks are flushed) and stops the
// embedded server.
func (d *daemon) closeNATS() {
	d.closing.Store(true)
	if d.nc != nil && !d.nc.IsClosed() {
		if err := d.nc.Drain(); err == nil {
			select {
			case <-d.ncClosed:
			case <-time.After(5 * time.Second):
				d.nc.Close()
			}
		} else {
			d.nc.Close()
		}
	}
	if d.srv != nil {
		d.srv.Shutdown()
		d.srv.WaitForShutdown()
	}
}

// listeningMessage is the log line that gives the listener's address
// (listen_addr): scripts and tests look for it.
const listeningMessage = "serving /metrics, /healthz, /readyz, /status and the status page /"

func (d *daemon) serveHTTP() (*http.Server, error) {
	if d.cfg.ListenAddr == "" {
		return nil, nil
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{Registry: d.reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		code, body := checkReport(d.livenessChecks(), "alive", "not alive")
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(code)
		fmt.Fprint(w, body)
	})
	mux.HandleFunc("GET /status", d.serveStatus)
	mux.HandleFunc("GET /{$}", d.servePage)
	mux.HandleFunc("POST /login", limitForm(d.serveLogin))
	mux.HandleFunc("POST /logout", limitForm(d.serveLogout))
	mux.HandleFunc("POST /activations/{id}", limitForm(d.serveChange))
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		code, body := checkReport(d.readinessChecks(), "ready", "not ready")
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(code)
		fmt.Fprint(w, body)
	})
	ln, err := net.Listen("tcp", d.cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("CONNECTOR_LISTEN_ADDR %s: %w", d.cfg.ListenAddr, err)
	}
	d.httpLn = ln
	srv := newHTTPServer(mux, metricsTimeouts)
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error().Err(err).Msg("metrics listener stopped")
		}
	}()
	d.log.Info().Str("listen_addr", ln.Addr().String()).Msg(listeningMessage)
	return srv, nil
}

// readinessChecks are the checks /readyz reports: the NATS connection,
// the activations watcher's (loaded, bucket present, invalid values), then
// the connector's (its JetStream objects in place).
func (d *daemon) readinessChecks() []connector.Check {
	natsCheck := connector.Check{Name: "nats", State: connector.CheckOK}
	if !d.nc.IsConnected() {
		natsCheck.State, natsCheck.Detail = connector.CheckFail, "not connected"
	}
	checks := append([]connector.Check{natsCheck}, d.watcher.Checks()...)
	checks = append(checks, d.creds.checks()...)
	checks = append(checks, d.audiences.checks()...)
	return append(checks, d.conn.Checks()...)
}

// livenessChecks are the checks /healthz reports: whether the process is
// of any use, so that a probe restarts it when it is not. The NATS
// connection closed for good (nats.go gave up reconnecting) and the
// connector's loop wedged are not mended by waiting.
func (d *daemon) livenessChecks() []connector.Check {
	natsCheck := connector.Check{Name: "nats_connection", State: connector.CheckOK}
	if d.nc.IsClosed() {
		natsCheck.State, natsCheck.Detail = connector.CheckFail, "closed: nats.go gave up reconnecting"
	}
	return []connector.Check{natsCheck, d.conn.Alive(time.Now())}
}

// checkReport is the answer of /healthz and /readyz: 503 when any check
// failed, else 200 (a warning does not fail the probe); the body is good
// or bad, then one line per check: "<state> <name>[: <detail>]".
func checkReport(checks []connector.Check, good, bad string) (int, string) {
	code, head := http.StatusOK, good
	var b strings.Builder
	for _, c := range checks {
		if c.State == connector.CheckFail {
			code, head = http.StatusServiceUnavailable, bad
		}
		fmt.Fprintf(&b, "%-4s %s", c.State, c.Name)
		if c.Detail != "" {
			fmt.Fprintf(&b, ": %s", c.Detail)
		}
		b.WriteByte('\n')
	}
	return code, head + "\n" + b.String()
}

// redactURL hides credentials in NATS URLs (nats://user:pass@host).
func redactURL(list string) string {
	parts := strings.Split(list, ",")
	for i, p := range parts {
		if at := strings.LastIndex(p, "@"); at >= 0 {
			if scheme := strings.Index(p, "://"); scheme >= 0 && scheme < at {
				parts[i] = p[:scheme+3] + "[REDACTED]" + p[at:]
			} else {
				parts[i] = "[REDACTED]" + p[at:]
			}
		}
	}
	return strings.Join(parts, ",")
}
