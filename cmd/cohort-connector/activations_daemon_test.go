package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/destinations/pinterest/simulator"
)

// runningDaemon is the daemon run through run() in a goroutine, with a
// client connection to its embedded server.
type runningDaemon struct {
	t       *testing.T
	stderr  *syncBuffer
	natsURL string // the embedded server
	listen  string // host:port of /metrics, /readyz
	js      jetstream.JetStream
	http    *http.Client
	stop    func() // stops the daemon and checks its exit; idempotent
}

// startRunningDaemon runs the daemon with env until the test ends, and
// waits until it serves HTTP.
func startRunningDaemon(t *testing.T, env map[string]string) *runningDaemon {
	t.Helper()
	clearEnv(t)
	for k, v := range env {
		t.Setenv(k, v)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &runningDaemon{t: t, stderr: &syncBuffer{}}
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"cohort-connector"}, io.Discard, d.stderr) }()
	require.Eventually(t, func() bool {
		out := d.stderr.String()
		d.natsURL = logField(out, "embedded JetStream server started", "nats_url")
		d.listen = logField(out, listeningMessage, "listen_addr")
		return d.natsURL != "" && d.listen != ""
	}, 30*time.Second, 10*time.Millisecond, "daemon did not start; logs:\n%s", d.stderr)
	tr := &http.Transport{}
	d.http = &http.Client{Transport: tr, Timeout: 5 * time.Second}
	nc, err := nats.Connect(d.natsURL)
	require.NoError(t, err)
	// Cleanups run last-registered first: the client, then the daemon.
	var once sync.Once
	d.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case code := <-done:
				assert.Equal(t, 0, code, "daemon exit code; logs:\n%s", d.stderr)
			case <-time.After(30 * time.Second):
				t.Errorf("daemon did not stop; logs:\n%s", d.stderr)
			}
		})
	}
	t.Cleanup(d.stop)
	t.Cleanup(func() {
		nc.Close()
		tr.CloseIdleConnections()
	})
	d.js, err = jetstream.New(nc)
	require.NoError(t, err)
	// Stopping the daemon while its connector is still starting fails
	// (an error of the connector's startup, not under test here): wait
	// until it has settled a first message, of a cohort nothing activates.
	d.publish("warm-up", 0, 1)
	require.Eventually(t, func() bool { return strings.Contains(d.metrics(), notActivated+" 1\n") },
		15*time.Second, 20*time.Millisecond, "the daemon settles nothing; logs:\n%s", d.stderr)
	return d
}

// notActivated is the series of memberships acked as not activated.
const notActivated = `cohort_connector_messages_settled_total{reason="not_activated",result="ack"}`

// readyz returns the status code and body of GET /readyz (0 on error).
func (d *runningDaemon) readyz() (int, string) { return d.get("/readyz") }

// get returns the status code and body of GET path (0 on error).
func (d *runningDaemon) get(path string) (int, string) {
	resp, err := d.http.Get("http://" + d.listen + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// waitReadyz polls /readyz until it answers code with a body containing
// every one of want.
func (d *runningDaemon) waitReadyz(limit time.Duration, code int, want ...string) string {
	d.t.Helper()
	var gotCode int
	var body string
	ok := assert.Eventually(d.t, func() bool {
		gotCode, body = d.readyz()
		if gotCode != code {
			return false
		}
		for _, w := range want {
			if !strings.Contains(body, w) {
				return false
			}
		}
		return true
	}, limit, 20*time.Millisecond)
	if !ok {
		d.t.Fatalf("/readyz never answered %d with %q; last: %d %q", code, want, gotCode, body)
	}
	return body
}

func (d *runningDaemon) putActivation(kv jetstream.KeyValue, a cohorts.Activation) {
	d.t.Helper()
	data, err := json.Marshal(a)
	require.NoError(d.t, err)
	_, err = kv.Put(d.t.Context(), a.ID, data)
	require.NoError(d.t, err)
}

// waitApplied waits until the daemon logged that it applied the
// activation, so that memberships published next find it.
func (d *runningDaemon) waitApplied(id string) {
	d.t.Helper()
	require.Eventually(d.t, func() bool {
		for _, line := range strings.Split(d.stderr.String(), "\n") {
			var l map[string]any
			if json.Unmarshal([]byte(line), &l) == nil && l["message"] == "activation changed" && l["activation_id"] == id {
				return true
			}
		}
		return false
	}, 15*time.Second, 10*time.Millisecond, "activation %s not applied; logs:\n%s", id, d.stderr)
}

// publish publishes n memberships of the cohort, users from..from+n-1.
func (d *runningDaemon) publish(cohort string, from, n int) {
	d.t.Helper()
	for i := from; i < from+n; i++ {
		data, err := json.Marshal(cohorts.Membership{
			UserID: fmt.Sprintf("u%d", i), CohortID: cohort, Action: cohorts.ActionEnter, TS: time.Now().UTC(),
			Identifiers: cohorts.Identifiers{Email: fmt.Sprintf("user%d@example.com", i)},
		})
		require.NoError(d.t, err)
		_, err = d.js.Publish(d.t.Context(), "cohorts.membership."+cohort, data)
		require.NoError(d.t, err)
	}
}

// sent counts the distinct events (event_ids: Pinterest deduplicates on
// them) of the cohort the simulator accepted for the account. An event can
// arrive twice when an activation is enabled while its cohort is being
// published: once backfilled, once live.
func sent(sim *simulator.Simulator, account, cohort string) int {
	ids := map[string]bool{}
	for _, r := range sim.Received(account) {
		if cd := r.Event.CustomData; cd != nil && len(cd.ContentIDs) == 1 && cd.ContentIDs[0] == cohort {
			ids[r.Event.EventID] = true
		}
	}
	return len(ids)
}

// countLines counts the JSON log lines whose message is msg.
func countLines(out, msg string) int {
	n := 0
	for _, line := range strings.Split(out, "\n") {
		var l map[string]any
		if json.Unmarshal([]byte(line), &l) == nil && l["message"] == msg {
			n++
		}
	}
	return n
}

// /healthz says the process is of use and why; /readyz names each ad
// account's health among its checks.
func TestHealthAndReadinessNameTheirChecks(t *testing.T) {
	sim := startSimulator(t)
	d := startRunningDaemon(t, daemonEnv(t, sim))
	body := d.waitReadyz(10*time.Second, http.StatusOK, "ad_account_")
	assert.Contains(t, body, "\nok   ad_account_"+secretAdAccountA+"\n")
	assert.Contains(t, body, "\nok   jetstream_objects\n")
	code, body := d.get("/healthz")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "alive\nok   nats_connection\nok   connector_loop\n", body)

	m := d.metrics()
	assert.Contains(t, m, `cohort_connector_consumer_pending_messages{consumer="cohort-connector",stream="COHORTS"} 0`)
	assert.Contains(t, m, `cohort_connector_consumer_ack_pending_messages{consumer="cohort-connector",stream="COHORTS"} 0`)
	assert.Contains(t, m, `cohort_connector_account_state{ad_account_id="`+secretAdAccountA+`",state="healthy"} 1`)
	assert.Regexp(t, `cohort_connector_build_info\{go_version="go1\.\d+[^"]*",revision="[^"]+",version="[^"]+"\} 1`, m)
}

// L6: nats kv del COHORT_ACTIVATIONS -f while the daemon runs, then the
// operator recreates the bucket and puts activations again.
func TestDaemonReportsADeletedActivationsBucketUntilItIsRecreated(t *testing.T) {
	sim := startSimulator(t)
	d := startRunningDaemon(t, daemonEnv(t, sim))
	kv, err := d.js.KeyValue(t.Context(), "COHORT_ACTIVATIONS")
	require.NoError(t, err)
	d.putActivation(kv, cohorts.Activation{ID: "news-a", CohortID: "news", Destination: "pinterest", Enabled: true, Mode: cohorts.ModeEvents})
	d.waitReadyz(10*time.Second, http.StatusOK)
	d.waitApplied("news-a")
	d.publish("news", 0, 10)
	require.Eventually(t, func() bool { return sent(sim, secretAdAccountA, "news") == 10 }, 15*time.Second, 20*time.Millisecond)

	require.NoError(t, d.js.DeleteKeyValue(t.Context(), "COHORT_ACTIVATIONS"))
	body := d.waitReadyz(20*time.Second, http.StatusServiceUnavailable, "activations_bucket")
	assert.True(t, strings.HasPrefix(body, "not ready\n"), body)
	assert.Contains(t, body, "\nfail activations_bucket: bucket COHORT_ACTIVATIONS not found since ")
	assert.Contains(t, body, "\nok   nats\n")
	d.publish("news", 10, 10)
	require.Eventually(t, func() bool { return sent(sim, secretAdAccountA, "news") == 20 }, 15*time.Second, 20*time.Millisecond,
		"while the bucket is gone the last known activations stay in force")

	kv, err = d.js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "COHORT_ACTIVATIONS", History: 5})
	require.NoError(t, err)
	d.putActivation(kv, cohorts.Activation{ID: "sports-a", CohortID: "sports", Destination: "pinterest", Enabled: true, Mode: cohorts.ModeEvents})
	d.waitReadyz(20*time.Second, http.StatusOK)
	d.waitApplied("sports-a")
	d.publish("sports", 0, 100)
	require.Eventually(t, func() bool { return sent(sim, secretAdAccountA, "sports") == 100 }, 15*time.Second, 20*time.Millisecond,
		"activations put into the recreated bucket apply")
	d.publish("news", 20, 10) // news-a is not in the recreated bucket
	require.Eventually(t, func() bool {
		return strings.Contains(d.metrics(), notActivated+" 11\n") // and the warm-up's
	}, 15*time.Second, 20*time.Millisecond)
	assert.Equal(t, 20, sent(sim, secretAdAccountA, "news"))

	logs := d.stderr.String()
	assert.Equal(t, 1, countLines(logs, "activations bucket not found: the last known activations stay in force until it is recreated"),
		"the deletion is logged once; logs:\n%s", logs)
	assert.Equal(t, 1, countLines(logs, "activations bucket is back: activations re-read from it"))
}

// metrics returns GET /metrics.
func (d *runningDaemon) metrics() string {
	resp, err := d.http.Get("http://" + d.listen + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// L8 at the daemon: a key with no valid revision is a data problem, shown
// as a warning; the daemon stays ready for every other cohort.
func TestDaemonReadyzWarnsAboutAnInvalidActivationAndStaysReady(t *testing.T) {
	sim := startSimulator(t)
	d := startRunningDaemon(t, daemonEnv(t, sim))
	kv, err := d.js.KeyValue(t.Context(), "COHORT_ACTIVATIONS")
	require.NoError(t, err)
	_, err = kv.Put(t.Context(), "broken", []byte(`{"id":"broken","cohort_id":"news"}`))
	require.NoError(t, err)
	body := d.waitReadyz(10*time.Second, http.StatusOK, "warn activations_invalid")
	assert.True(t, strings.HasPrefix(body, "ready\n"), body)
	assert.Contains(t, body, "\nwarn activations_invalid: 1 key of bucket COHORT_ACTIVATIONS holds an invalid value: "+
		"broken: not in force: revision 1 invalid: destination \"\": must be \"pinterest\"; no valid revision in the key's history\n")

	d.putActivation(kv, cohorts.Activation{ID: "broken", CohortID: "news", Destination: "pinterest", Enabled: true, Mode: cohorts.ModeEvents})
	d.waitReadyz(10*time.Second, http.StatusOK, "ok   activations_invalid\n")
}
