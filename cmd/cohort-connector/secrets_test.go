package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/destinations/pinterest/simulator"
)

// The secrets these tests plant. Each has a distinctive fragment, checked
// too, so that a truncated or partly masked secret is caught as well.
const (
	secretTokenA       = "pina_SECRET_TOKEN_A_123"
	secretTokenB       = "pina_SECRET_TOKEN_B_456"
	secretNATSPassword = "nats_SECRET_PASSWORD_789"

	secretAdAccountA = "549755885175"
	secretAdAccountB = "549755885176"
	secretTagA       = "2612345678901"
	secretTagB       = "2619876543210"
)

func assertNoSecrets(t *testing.T, where, out string) {
	t.Helper()
	for _, s := range []string{secretTokenA, secretTokenB, secretNATSPassword, "SECRET_TOKEN", "SECRET_PASSWORD"} {
		assert.NotContains(t, out, s, "a secret leaked into %s", where)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and concurrent readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// logField returns field of the first JSON log line of out whose message
// is msg, or "".
func logField(out, msg, field string) string {
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) != nil || line["message"] != msg {
			continue
		}
		s, _ := line[field].(string)
		return s
	}
	return ""
}

// daemonEnv is a valid configuration with two accounts against sim, an
// embedded server and every listener on a free loopback port.
func daemonEnv(t *testing.T, sim *simulator.Simulator) map[string]string {
	return map[string]string{
		"CONNECTOR_DATA_DIR":                      t.TempDir(),
		"CONNECTOR_EMBEDDED_NATS_LISTEN":          "127.0.0.1:0",
		"CONNECTOR_LISTEN_ADDR":                   "127.0.0.1:0",
		"CONNECTOR_LOG_LEVEL":                     "debug",
		"CONNECTOR_PINTEREST_BASE_URL":            sim.URL(),
		"CONNECTOR_BATCH_PERIOD":                  "20ms",
		"CONNECTOR_SHUTDOWN_TIMEOUT":              "10s",
		"CONNECTOR_DEFAULT_TAG_ID":                secretTagA,
		"CONNECTOR_ACCOUNTS":                      "brand_a,brand_b",
		"CONNECTOR_ACCOUNT_BRAND_A_AD_ACCOUNT_ID": secretAdAccountA,
		"CONNECTOR_ACCOUNT_BRAND_A_TOKEN":         secretTokenA,
		"CONNECTOR_ACCOUNT_BRAND_A_TAG_IDS":       secretTagA,
		"CONNECTOR_ACCOUNT_BRAND_B_AD_ACCOUNT_ID": secretAdAccountB,
		"CONNECTOR_ACCOUNT_BRAND_B_TOKEN":         secretTokenB,
		"CONNECTOR_ACCOUNT_BRAND_B_TAG_IDS":       secretTagB,
	}
}

// startSimulator accepts brand_a's token and wants another one from
// brand_b, so that brand_b's calls are answered 401 and logged.
func startSimulator(t *testing.T) *simulator.Simulator {
	t.Helper()
	sim, err := simulator.Start(simulator.Options{Accounts: map[string]string{
		secretAdAccountA: secretTokenA,
		secretAdAccountB: "pina_the_simulator_expects_another_token",
	}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sim.Close() })
	return sim
}

// daemonRun is what exerciseDaemon saw.
type daemonRun struct {
	code    int    // run's exit code
	stderr  string // logs
	metrics string // GET /metrics, "" when the daemon did not start
}

// exerciseDaemon runs the daemon through run() with env until both
// accounts have called sim (brand_b's 401 logged), scrapes /metrics, then
// cancels and waits for run to return. natsURL and natsOpts reach the
// server to publish to; natsURL "" takes the embedded server's from the
// logs. If run returns before serving, that is reported in code and stderr.
func exerciseDaemon(t *testing.T, env map[string]string, sim *simulator.Simulator, natsURL string, natsOpts ...nats.Option) daemonRun {
	t.Helper()
	clearEnv(t)
	for k, v := range env {
		t.Setenv(k, v)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout bytes.Buffer
	stderr := &syncBuffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"cohort-connector"}, &stdout, stderr) }()
	exited := false
	var res daemonRun
	wait := func() {
		if exited {
			return
		}
		cancel()
		select {
		case res.code = <-done:
			exited = true
		case <-time.After(30 * time.Second):
			t.Fatalf("run did not return after cancel; logs:\n%s", stderr.String())
		}
	}
	defer wait() // also when a require below fails

	// Serving: the HTTP listener starts after every JetStream object exists.
	var listen string
	require.Eventually(t, func() bool {
		select {
		case res.code = <-done:
			exited = true
			return true
		default:
		}
		out := stderr.String()
		if natsURL == "" {
			natsURL = logField(out, "embedded JetStream server started", "nats_url")
		}
		listen = logField(out, listeningMessage, "listen_addr")
		return natsURL != "" && listen != ""
	}, 30*time.Second, 10*time.Millisecond, "daemon did not start; logs:\n%s", stderr)
	if exited {
		res.stderr = stderr.String()
		assertNoSecrets(t, "stdout", stdout.String())
		return res
	}

	nc, err := nats.Connect(natsURL, natsOpts...)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	kv, err := js.KeyValue(ctx, "COHORT_ACTIVATIONS") // the default bucket
	require.NoError(t, err)
	for _, a := range []cohorts.Activation{
		{ID: "sports-a", CohortID: "sports", Destination: "pinterest", Enabled: true, Mode: cohorts.ModeEvents},
		{ID: "sports-b", CohortID: "sports", Destination: "pinterest", Enabled: true, TagID: secretTagB, Mode: cohorts.ModeEvents},
	} {
		data, err := json.Marshal(a)
		require.NoError(t, err)
		_, err = kv.Put(ctx, a.ID, data)
		require.NoError(t, err)
	}

	// Publish until both accounts were called: the activations reach the
	// daemon's resolver asynchronously, so early memberships may match none.
	n := 0
	require.Eventually(t, func() bool {
		n++
		data, err := json.Marshal(cohorts.Membership{
			UserID: fmt.Sprintf("u%d", n), CohortID: "sports", Action: cohorts.ActionEnter, TS: time.Now().UTC(),
			Identifiers: cohorts.Identifiers{Email: fmt.Sprintf("user%d@example.com", n)},
		})
		if err != nil {
			return false
		}
		if _, err := js.Publish(ctx, "cohorts.membership.sports", data); err != nil {
			return false
		}
		return sim.Stats(secretAdAccountA).Accepted200 > 0 && sim.Stats(secretAdAccountB).Unauthorized > 0 &&
			strings.Contains(stderr.String(), "Pinterest rejected the token or ad account")
	}, 30*time.Second, 50*time.Millisecond, "no calls from both accounts; logs:\n%s", stderr)

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("http://" + listen + "/metrics")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	res.metrics = string(body)

	nc.Close()
	wait()
	res.stderr = stderr.String()
	assertNoSecrets(t, "stdout", stdout.String())
	return res
}

func TestSecretsNeverLeak(t *testing.T) {
	t.Run("help", func(t *testing.T) {
		code, out, errOut := runCmd(t, "--help")
		require.Equal(t, 0, code)
		assert.Contains(t, out, "CONNECTOR_NATS_PASSWORD")
		assertNoSecrets(t, "--help", out+errOut)
	})

	t.Run("refused configurations", func(t *testing.T) {
		sim := startSimulator(t)
		cases := []struct {
			name   string
			change map[string]string
			want   string
		}{
			{"a NATS password for the embedded server", map[string]string{
				"CONNECTOR_NATS_USER": "connector", "CONNECTOR_NATS_PASSWORD": secretNATSPassword,
			}, "CONNECTOR_NATS_PASSWORD: must not be set when CONNECTOR_NATS_URL is empty"},
			{"a NATS password and token together", map[string]string{
				"CONNECTOR_NATS_URL": "nats://127.0.0.1:1", "CONNECTOR_NATS_USER": "connector",
				"CONNECTOR_NATS_PASSWORD": secretNATSPassword, "CONNECTOR_NATS_TOKEN": secretTokenB,
			}, "at most one NATS authentication method"},
			{"a password in a NATS URL of the wrong scheme", map[string]string{
				"CONNECTOR_NATS_URL": "http://connector:" + secretNATSPassword + "@127.0.0.1:4222",
			}, "CONNECTOR_NATS_URL: entry 1: scheme must be"},
			{"a password in an unparsable NATS URL", map[string]string{
				"CONNECTOR_NATS_URL": "nats://connector:" + secretNATSPassword + "@127.0.0.1:x",
			}, "CONNECTOR_NATS_URL: entry 1"},
			{"a bad account next to good tokens", map[string]string{
				"CONNECTOR_ACCOUNT_BRAND_B_AD_ACCOUNT_ID": "12ab",
			}, "CONNECTOR_ACCOUNT_BRAND_B_AD_ACCOUNT_ID"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				clearEnv(t)
				env := daemonEnv(t, sim)
				for k, v := range tc.change {
					env[k] = v
				}
				for k, v := range env {
					t.Setenv(k, v)
				}
				code, out, errOut := runCmd(t)
				require.Equal(t, 1, code)
				assert.Contains(t, errOut, tc.want)
				assertNoSecrets(t, "stderr of a refused configuration", out+errOut)
			})
		}
	})

	t.Run("a running daemon with the embedded server", func(t *testing.T) {
		sim := startSimulator(t)
		res := exerciseDaemon(t, daemonEnv(t, sim), sim, "")
		require.Equal(t, 0, res.code, "logs:\n%s", res.stderr)
		assert.Contains(t, res.stderr, `"CONNECTOR_ACCOUNT_BRAND_A_TOKEN":"[REDACTED]"`)
		assert.Contains(t, res.metrics, "go_goroutines")
		assertNoSecrets(t, "stderr", res.stderr)
		assertNoSecrets(t, "/metrics", res.metrics)
	})
}

// startJetStreamWithPassword starts an external JetStream server that
// wants user "connector" with secretNATSPassword.
func startJetStreamWithPassword(t *testing.T) *server.Server {
	t.Helper()
	return startNATS(t, &server.Options{
		JetStream: true, StoreDir: t.TempDir(),
		Username: "connector", Password: secretNATSPassword,
	})
}

func TestSecretsNeverLeakWithAnExternalServerAndPassword(t *testing.T) {
	t.Run("the password in the URL", func(t *testing.T) {
		s := startJetStreamWithPassword(t)
		sim := startSimulator(t)
		url := strings.Replace(s.ClientURL(), "nats://", "nats://connector:"+secretNATSPassword+"@", 1)
		env := daemonEnv(t, sim)
		env["CONNECTOR_NATS_URL"] = url
		res := exerciseDaemon(t, env, sim, url)
		require.Equal(t, 0, res.code, "logs:\n%s", res.stderr)
		assert.Contains(t, res.stderr, "nats://[REDACTED]@127.0.0.1")
		assertNoSecrets(t, "stderr", res.stderr)
		assertNoSecrets(t, "/metrics", res.metrics)
	})

	t.Run("the password in CONNECTOR_NATS_PASSWORD", func(t *testing.T) {
		s := startJetStreamWithPassword(t)
		sim := startSimulator(t)
		env := daemonEnv(t, sim)
		env["CONNECTOR_NATS_URL"] = s.ClientURL()
		env["CONNECTOR_NATS_USER"] = "connector"
		env["CONNECTOR_NATS_PASSWORD"] = secretNATSPassword
		res := exerciseDaemon(t, env, sim, s.ClientURL(), nats.UserInfo("connector", secretNATSPassword))
		assertNoSecrets(t, "stderr", res.stderr)
		assertNoSecrets(t, "/metrics", res.metrics)
		assert.Contains(t, res.stderr, `"CONNECTOR_NATS_PASSWORD":"[REDACTED]"`)
		require.Equal(t, 0, res.code, "logs:\n%s", res.stderr)
	})
}
