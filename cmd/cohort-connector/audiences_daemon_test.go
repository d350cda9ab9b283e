package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"slices"
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

// The OAuth app of brand_a in these tests.
const (
	appIDA      = "1484960"
	appSecretA  = "app-secret-SECRET_A"
	refreshA    = "pinr.SECRET_REFRESH_A"
	testKeyBase = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // 32 bytes
)

// oauthSimulator is startSimulator's simulator with brand_a's OAuth app
// and Tag, audiences sized at once.
func oauthSimulator(t *testing.T, opts simulator.Options) *simulator.Simulator {
	t.Helper()
	opts.Accounts = map[string]string{secretAdAccountA: secretTokenA, secretAdAccountB: secretTokenB}
	sim, err := simulator.Start(opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sim.Close() })
	sim.AddApp(appIDA, appSecretA, refreshA, secretAdAccountA)
	sim.SetTags(secretAdAccountA, secretTagA)
	return sim
}

// oauthEnv is daemonEnv with brand_a's OAuth app.
func oauthEnv(t *testing.T, sim *simulator.Simulator) map[string]string {
	env := daemonEnv(t, sim)
	env["CONNECTOR_ACCOUNT_BRAND_A_APP_ID"] = appIDA
	env["CONNECTOR_ACCOUNT_BRAND_A_APP_SECRET"] = appSecretA
	env["CONNECTOR_ACCOUNT_BRAND_A_REFRESH_TOKEN"] = refreshA
	env["CONNECTOR_SECRETS_KEY"] = testKeyBase
	env["CONNECTOR_AUDIENCE_POLL_INTERVAL"] = "1s"
	return env
}

// publishChanges publishes one change per entry of users (enter when
// enter is true), ts increasing from t0.
func (d *runningDaemon) publishChanges(cohort string, users []int, action cohorts.Action, t0 time.Time) {
	d.t.Helper()
	for i, u := range users {
		data, err := json.Marshal(cohorts.Membership{
			UserID: fmt.Sprintf("u%d", u), CohortID: cohort, Action: action, TS: t0.Add(time.Duration(i) * time.Millisecond),
			Identifiers: cohorts.Identifiers{Email: fmt.Sprintf("user%d@example.com", u)},
		})
		require.NoError(d.t, err)
		_, err = d.js.Publish(d.t.Context(), "cohorts.membership."+cohort, data)
		require.NoError(d.t, err)
	}
}

// hashedEmails are the list records of users' emails, sorted.
func hashedEmails(users []int) []string {
	var out []string
	for _, u := range users {
		out = append(out, cohorts.Identifiers{Email: fmt.Sprintf("user%d@example.com", u)}.Hash().Em)
	}
	slices.Sort(out)
	return out
}

func span(from, to int) []int {
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

// An activation enabled after its cohort's history was published: the
// daemon creates its customer list and audience once, backfills the
// current members (the list equals the live-built state), then mirrors
// live exits; its match rate is the audience size over its members.
func TestDaemonCreatesTheAudienceAndBackfillsANewlyEnabledCustomerList(t *testing.T) {
	sim := oauthSimulator(t, simulator.Options{KnownUserShare: 0.7})
	d := startRunningDaemon(t, oauthEnv(t, sim))
	t0 := time.Now().Add(-time.Hour)
	d.publishChanges("garden", span(0, 300), cohorts.ActionEnter, t0)
	d.publishChanges("garden", span(0, 100), cohorts.ActionExit, t0.Add(time.Minute))

	kv, err := d.js.KeyValue(t.Context(), "COHORT_ACTIVATIONS")
	require.NoError(t, err)
	d.putActivation(kv, cohorts.Activation{ID: "garden-list", CohortID: "garden", Destination: "pinterest", Enabled: true, Mode: cohorts.ModeCustomerList})
	var listID string
	require.Eventually(t, func() bool {
		lists := sim.Lists(secretAdAccountA)
		if len(lists) != 1 {
			return false
		}
		listID = lists[0].ID
		return slices.Equal(sim.ListMembers(secretAdAccountA, listID), hashedEmails(span(100, 300)))
	}, 30*time.Second, 50*time.Millisecond, "backfill: the list holds users 100..299; logs:\n%s", d.stderr)

	d.publishChanges("garden", span(100, 150), cohorts.ActionExit, time.Now().Add(-time.Second))
	require.Eventually(t, func() bool {
		return slices.Equal(sim.ListMembers(secretAdAccountA, listID), hashedEmails(span(150, 300)))
	}, 15*time.Second, 20*time.Millisecond, "live exits remove")

	auds := sim.Audiences(secretAdAccountA)
	require.Len(t, auds, 1, "one audience")
	assert.Equal(t, "CUSTOMER_LIST", auds[0].Type)
	assert.Equal(t, "cohort-connector · garden-list · cohort garden", auds[0].Name)
	known := sim.Lists(secretAdAccountA)[0].Known
	require.Eventually(t, func() bool {
		m := d.metrics()
		return strings.Contains(m, fmt.Sprintf(`cohort_connector_audience_size{activation_id="garden-list"} %d`, known)) &&
			strings.Contains(m, `cohort_connector_audience_users_sent{activation_id="garden-list"} 150`)
	}, 15*time.Second, 50*time.Millisecond, "size %d of 150 members in /metrics:\n%s", known, grepLines(d.metrics(), "garden-list"))
	t.Logf("list %s: 150 members, %d known to Pinterest; %s", listID, known, grepLines(d.metrics(), "match_rate"))
	assert.Contains(t, d.metrics(), fmt.Sprintf(`cohort_connector_match_rate_ratio{activation_id="garden-list"} %g`, float64(known)/150))
}

// grepLines are the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// Two daemons starting together on one NATS server, with an enabled
// activation waiting for them: one audience is created, and both record
// the same id.
func TestTwoDaemonsStartingTogetherCreateTheAudienceOnce(t *testing.T) {
	sim := oauthSimulator(t, simulator.Options{})
	srv, err := server.NewServer(&server.Options{JetStream: true, Port: -1, Host: "127.0.0.1", StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	require.NoError(t, err)
	go srv.Start()
	require.True(t, srv.ReadyForConnections(10*time.Second))
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	js := connectJS(t, srv.ClientURL())
	kv, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "COHORT_ACTIVATIONS", History: 5})
	require.NoError(t, err)
	data, _ := json.Marshal(cohorts.Activation{ID: "news-visitors", CohortID: "news", Destination: "pinterest", Enabled: true, Mode: cohorts.ModeEvents})
	_, err = kv.Put(t.Context(), "news-visitors", data)
	require.NoError(t, err)

	clearEnv(t)
	for k, v := range oauthEnv(t, sim) {
		t.Setenv(k, v)
	}
	t.Setenv("CONNECTOR_NATS_URL", srv.ClientURL())
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	logs := make([]*syncBuffer, 2)
	for i := range logs {
		logs[i] = &syncBuffer{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			assert.Equal(t, 0, run(ctx, []string{"cohort-connector"}, io.Discard, logs[i]))
		}()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	state, err := js.KeyValue(t.Context(), "COHORT_CONNECTOR_STATE")
	for err != nil {
		state, err = js.KeyValue(t.Context(), "COHORT_CONNECTOR_STATE")
	}
	require.Eventually(t, func() bool {
		e, err := state.Get(t.Context(), "audience.news-visitors")
		return err == nil && strings.Contains(string(e.Value()), `"state":"ready"`)
	}, 30*time.Second, 20*time.Millisecond, "logs:\n%s\n%s", logs[0], logs[1])
	// Both daemons have read the audience back (a poll each): neither
	// created another one.
	require.Eventually(t, func() bool {
		return strings.Contains(logs[0].String(), `"audience_id"`) && strings.Contains(logs[1].String(), `"audience_id"`)
	}, 15*time.Second, 20*time.Millisecond, "logs:\n%s\n%s", logs[0], logs[1])
	auds := sim.Audiences(secretAdAccountA)
	require.Len(t, auds, 1, "exactly one audience for two daemons")
	assert.Equal(t, "VISITOR", auds[0].Type)
	assert.Equal(t, 1, strings.Count(logs[0].String()+logs[1].String(), `news-visitors · cohort news\" created"`), "one creation logged")
}

// An account with only OAuth (no conversion token): events go with the
// access token, which the daemon refreshes before it expires; after a
// restart with the environment's first refresh token (rotated away long
// since), the stored one is used and nothing is refused.
func TestTokenRefreshSurvivesARestart(t *testing.T) {
	sim := oauthSimulator(t, simulator.Options{AccessTokenTTL: 3 * time.Second})
	env := oauthEnv(t, sim)
	delete(env, "CONNECTOR_ACCOUNT_BRAND_A_TOKEN")
	dataDir := env["CONNECTOR_DATA_DIR"]

	for round := range 2 {
		d := startRunningDaemon(t, env)
		kv, err := d.js.KeyValue(t.Context(), "COHORT_ACTIVATIONS")
		require.NoError(t, err)
		if round == 0 {
			d.putActivation(kv, cohorts.Activation{ID: "news-a", CohortID: "news", Destination: "pinterest", Enabled: true, Mode: cohorts.ModeEvents})
			d.waitApplied("news-a")
			// Enabling it backfills the cohort (empty so far): wait for
			// that, so that every event below is sent once, live.
			require.Eventually(t, func() bool { return countLines(d.stderr.String(), "backfill done") == 1 }, 15*time.Second, 20*time.Millisecond)
		}
		before := sim.Refreshes(appIDA)
		d.publish("news", round*100, 50)
		require.Eventually(t, func() bool { return sent(sim, secretAdAccountA, "news") == round*100+50 }, 15*time.Second, 20*time.Millisecond)
		// Past the access token's lifetime: refreshed in time, events still go.
		require.Eventually(t, func() bool { return sim.Refreshes(appIDA) >= before+2 }, 15*time.Second, 50*time.Millisecond)
		d.publish("news", round*100+50, 50)
		require.Eventually(t, func() bool { return sent(sim, secretAdAccountA, "news") == round*100+100 }, 15*time.Second, 20*time.Millisecond)
		assert.Zero(t, sim.Stats(secretAdAccountA).Unauthorized, "no call refused")
		assert.NotContains(t, d.stderr.String(), refreshA[5:], "no token in the logs")
		assert.NotContains(t, d.stderr.String(), appSecretA)
		t.Logf("round %d: %d refreshes in all, %d events accepted", round, sim.Refreshes(appIDA), sent(sim, secretAdAccountA, "news"))
		d.stop()
		env["CONNECTOR_DATA_DIR"] = dataDir
	}
}

func connectJS(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return js
}

// metricValue is the value of the series named exactly series in the
// daemon's /metrics, and whether it is there.
func (d *runningDaemon) metricValue(series string) (float64, bool) {
	for _, l := range strings.Split(d.metrics(), "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			var f float64
			_, err := fmt.Sscan(v, &f)
			return f, err == nil
		}
	}
	return 0, false
}

// The match rate of an events activation is the size of its visitor
// audience (the users Pinterest knows of those sent) over the distinct
// users sent, counted by a sketch: within the sketch's error of the truth.
func TestMatchRateIsTheAudienceSizeOverTheDistinctUsersSent(t *testing.T) {
	sim := oauthSimulator(t, simulator.Options{KnownUserShare: 0.7})
	d := startRunningDaemon(t, oauthEnv(t, sim))
	kv, err := d.js.KeyValue(t.Context(), "COHORT_ACTIVATIONS")
	require.NoError(t, err)
	d.putActivation(kv, cohorts.Activation{ID: "news-visitors", CohortID: "news", Destination: "pinterest", Enabled: true, Mode: cohorts.ModeEvents})
	require.Eventually(t, func() bool { return countLines(d.stderr.String(), "backfill done") == 1 }, 15*time.Second, 20*time.Millisecond)
	const users = 3000
	d.publish("news", 0, users)
	d.publish("news", 0, 500) // 500 of them again (new events): each user counted once
	require.Eventually(t, func() bool { return sent(sim, secretAdAccountA, "news") == users+500 }, 30*time.Second, 20*time.Millisecond)
	known := 0
	for u := range users {
		if sim.Known(cohorts.Identifiers{Email: fmt.Sprintf("user%d@example.com", u)}.Hash().Em) {
			known++
		}
	}
	var size, sentUsers, rate float64
	require.Eventually(t, func() bool {
		var ok1, ok2, ok3 bool
		size, ok1 = d.metricValue(`cohort_connector_audience_size{activation_id="news-visitors"}`)
		sentUsers, ok2 = d.metricValue(`cohort_connector_audience_users_sent{activation_id="news-visitors"}`)
		rate, ok3 = d.metricValue(`cohort_connector_match_rate_ratio{activation_id="news-visitors"}`)
		return ok1 && ok2 && ok3 && size == float64(known) && sentUsers > users*0.9
	}, 30*time.Second, 100*time.Millisecond, "size %v (want %d), users %v", size, known, sentUsers)
	truth := float64(known) / users
	t.Logf("%d users sent, %d known to Pinterest: size %v, users estimated %v (%+.2f%%), match rate %.4f (true %.4f)",
		users, known, size, sentUsers, 100*(sentUsers-users)/users, rate, truth)
	assert.InEpsilon(t, users, sentUsers, 0.02, "distinct users within the sketch's error")
	assert.InEpsilon(t, truth, rate, 0.02, "match rate within the sketch's error")

	// A daemon with accounts, OAuth, an audience and traffic exports every
	// metric the alerting rules and the dashboards name.
	rules, err := filepath.Glob(filepath.Join(alertsDir, "*.yml"))
	require.NoError(t, err)
	names := metricNamesIn(t, append(rules, grafanaDashboards(t)...)...)
	require.NotEmpty(t, names)
	assertExported(t, d.metrics(), names)
}
