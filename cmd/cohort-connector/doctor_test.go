package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/config"
	"github.com/cohort-connector/cohort-connector/connector"
	"github.com/cohort-connector/cohort-connector/destinations/pinterest/simulator"
)

// The OAuth app of brand_b in the doctor's tests, and a Tag ID no
// account owns in the simulator.
const (
	appIDB     = "1484961"
	appSecretB = "app-secret-SECRET_B"
	refreshB   = "pinr.SECRET_REFRESH_B"
	strayTag   = "2611111111111"
)

// doctorSimulator has both brands' OAuth apps and Tags; known is the share
// of users Pinterest knows (the audiences' sizes).
func doctorSimulator(t *testing.T, known float64) *simulator.Simulator {
	sim := oauthSimulator(t, simulator.Options{KnownUserShare: known})
	sim.AddApp(appIDB, appSecretB, refreshB, secretAdAccountB)
	sim.SetTags(secretAdAccountB, secretTagB)
	return sim
}

// doctorEnv is oauthEnv with brand_b's OAuth app.
func doctorEnv(t *testing.T, sim *simulator.Simulator) map[string]string {
	env := oauthEnv(t, sim)
	env["CONNECTOR_ACCOUNT_BRAND_B_APP_ID"] = appIDB
	env["CONNECTOR_ACCOUNT_BRAND_B_APP_SECRET"] = appSecretB
	env["CONNECTOR_ACCOUNT_BRAND_B_REFRESH_TOKEN"] = refreshB
	return env
}

// doctorAt runs doctor --json against the NATS server at natsURL with the
// test's environment; it returns the exit code and the findings by name.
func doctorAt(t *testing.T, natsURL string) (int, map[string]finding, string) {
	t.Helper()
	t.Setenv("CONNECTOR_NATS_URL", natsURL)
	code, out, stderr := runCmd(t, "doctor", "--json")
	var found []finding
	require.NoError(t, json.Unmarshal([]byte(out), &found), "doctor --json: %s %s", out, stderr)
	byName := map[string]finding{}
	for _, f := range found {
		byName[f.Name] = f
	}
	return code, byName, stderr
}

func enabled(id, cohort, tag string) cohorts.Activation {
	return cohorts.Activation{ID: id, CohortID: cohort, Destination: "pinterest", Enabled: true, TagID: tag}
}

// assertFinding checks the finding called name: its state, and words of
// its detail and fix.
func assertFinding(t *testing.T, found map[string]finding, name, state string, detail []string, fix ...string) {
	t.Helper()
	f, ok := found[name]
	if !assert.True(t, ok, "no finding %q among %v", name, found) {
		return
	}
	assert.Equal(t, state, f.State, "%s: %+v", name, f)
	for _, w := range detail {
		assert.Contains(t, f.Detail, w, "%s detail", name)
	}
	for _, w := range fix {
		assert.Contains(t, f.Fix, w, "%s fix", name)
	}
}

// sizedAudiences runs a daemon against sim with sports-a (the default
// Tag, brand_a), travel-b (brand_b's Tag) and news-off (disabled),
// publishes sports and travel users' enters, and returns doctor's exit
// code and findings once sized holds of them (the audiences sized and
// their users flushed to the state bucket).
func sizedAudiences(t *testing.T, sim *simulator.Simulator, sports, travel int, sized func(map[string]finding) bool) (*runningDaemon, int, map[string]finding) {
	d := startRunningDaemon(t, doctorEnv(t, sim))
	kv, err := d.js.KeyValue(t.Context(), "COHORT_ACTIVATIONS")
	require.NoError(t, err)
	d.putActivation(kv, enabled("sports-a", "sports", ""))
	d.putActivation(kv, enabled("travel-b", "travel", secretTagB))
	d.putActivation(kv, cohorts.Activation{ID: "news-off", CohortID: "news", Destination: "pinterest"})
	d.waitApplied("sports-a")
	d.waitApplied("travel-b")
	d.publishChanges("sports", span(0, sports), cohorts.ActionEnter, time.Now().Add(-time.Minute))
	d.publishChanges("travel", span(0, travel), cohorts.ActionEnter, time.Now().Add(-time.Minute))
	var code int
	var found map[string]finding
	require.Eventually(t, func() bool {
		code, found, _ = doctorAt(t, d.natsURL)
		return sized(found)
	}, 30*time.Second, 200*time.Millisecond, "audiences never sized: %+v", found)
	return d, code, found
}

// A healthy set-up: two brands with OAuth, their Tags, three activations
// (one disabled), audiences filled. Every line is OK and doctor exits 0.
func TestDoctorPassesAHealthySetUp(t *testing.T) {
	sim := doctorSimulator(t, 0.7)
	d, code, found := sizedAudiences(t, sim, 300, 300, func(found map[string]finding) bool {
		return strings.Contains(found["audience sports-a"].Detail, "of 300 users sent") &&
			strings.Contains(found["audience travel-b"].Detail, "of 300 users sent")
	})
	assert.Equal(t, 0, code)
	for name, f := range found {
		assert.Equal(t, findingOK, f.State, "%s: %+v", name, f)
	}
	a, b := "brand_a ("+secretAdAccountA+")", "brand_b ("+secretAdAccountB+")"
	for _, name := range []string{"nats", "stream COHORTS", "consumer COHORTS/cohort-connector", "activations bucket COHORT_ACTIVATIONS",
		"state bucket COHORT_CONNECTOR_STATE", "events token " + a, "events token " + b, "oauth " + a, "oauth " + b,
		"tag " + secretTagA, "tag " + secretTagB, "activation news-off", "activation sports-a", "activation travel-b"} {
		assert.Contains(t, found, name)
	}
	assertFinding(t, found, "audience sports-a", findingOK, []string{"VISITOR READY", "of 300 users sent"})
	assertFinding(t, found, "oauth "+a, findingOK, []string{"access token valid until ", "; last refreshed at ", " by "})
	assertFinding(t, found, "activation travel-b", findingOK, []string{"Tag ID " + secretTagB + " (override) → ad account " + secretAdAccountB})
	assert.NotContains(t, found, "audience news-off", "a disabled activation has no audience to check")
	// The test events reached Pinterest marked as tests (not recorded).
	var tests int
	for _, r := range append(sim.Received(secretAdAccountA), sim.Received(secretAdAccountB)...) {
		if cd := r.Event.CustomData; cd != nil && cd.ContentIDs[0] == doctorMembership.CohortID {
			assert.True(t, r.Test, "a doctor's event without ?test=true")
			tests++
		}
	}
	assert.Positive(t, tests, "the simulator records events here; the doctor's are among them")

	t.Setenv("CONNECTOR_NATS_URL", d.natsURL)
	_, text, _ := runCmd(t, "doctor")
	t.Logf("doctor:\n%s", text)
}

// strayTagDaemon runs a daemon against sim whose configuration puts
// strayTag under brand_a too, with one activation of the cohort on it.
func strayTagDaemon(t *testing.T, sim *simulator.Simulator, id, cohort string) *runningDaemon {
	env := doctorEnv(t, sim)
	env["CONNECTOR_ACCOUNT_BRAND_A_TAG_IDS"] = secretTagA + "," + strayTag
	d := startRunningDaemon(t, env)
	kv, err := d.js.KeyValue(t.Context(), "COHORT_ACTIVATIONS")
	require.NoError(t, err)
	d.putActivation(kv, enabled(id, cohort, strayTag))
	d.waitApplied(id)
	return d
}

// Troubleshooting, "verify that you entered the correct Tag ID": a Tag ID
// configured for brand_a that Pinterest does not list under brand_a (nor
// under any account), and an activation using it.
func TestDoctorCatchesAWrongTagID(t *testing.T) {
	d := strayTagDaemon(t, doctorSimulator(t, 0.7), "sports-a", "sports")

	code, found, stderr := doctorAt(t, d.natsURL)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "checks failed")
	assertFinding(t, found, "tag "+strayTag, findingFail,
		[]string{"wrong Tag ID", "no such conversion tag under ad account " + secretAdAccountA},
		"correct CONNECTOR_ACCOUNT_BRAND_A_TAG_IDS", secretTagA)
	assertFinding(t, found, "tag "+secretTagA, findingOK, nil)
	assertFinding(t, found, "activation sports-a", findingFail,
		[]string{"sent to ad account " + secretAdAccountA, "lists this Tag ID under no ad account"})
	// Pinterest refuses a VISITOR audience on a Tag that is not the
	// account's: there is none, and the daemon's status says why.
	assertFinding(t, found, "audience sports-a", findingFail, []string{"not in Pinterest"}, "is the daemon running?")
	var status string
	require.Eventually(t, func() bool {
		_, status = d.get("/status")
		return strings.Contains(status, `"audience_problem"`)
	}, 15*time.Second, 50*time.Millisecond, "no audience problem in /status")
	assert.Contains(t, status, `is not a conversion tag of ad account `+secretAdAccountA)
	_, page := d.get("/")
	assert.Contains(t, page, "not created")
}

// Troubleshooting, "cohorts sent to the wrong Pinterest account": a Tag ID
// configured under brand_a that Pinterest lists under brand_b, and an
// activation naming it, whose changes go to brand_a.
func TestDoctorCatchesCohortsSentToTheWrongAccount(t *testing.T) {
	sim := doctorSimulator(t, 0.7)
	sim.SetTags(secretAdAccountB, secretTagB, strayTag)
	d := strayTagDaemon(t, sim, "travel-b", "travel")

	code, found, _ := doctorAt(t, d.natsURL)
	assert.Equal(t, 1, code)
	assertFinding(t, found, "tag "+strayTag, findingFail,
		[]string{"wrong account", "CONNECTOR_ACCOUNT_BRAND_A_TAG_IDS puts it under ad account " + secretAdAccountA,
			"Pinterest lists it under ad account " + secretAdAccountB},
		"move Tag ID "+strayTag)
	assertFinding(t, found, "activation travel-b", findingFail,
		[]string{"Tag ID " + strayTag + " (override)", "sent to ad account " + secretAdAccountA,
			"Pinterest lists this Tag ID under ad account " + secretAdAccountB})
}

// Troubleshooting, "activated cohorts are not showing up as audiences": an
// activation disabled (said, not failed), one enabled with no daemon to
// create its audience, one whose account has no OAuth app (Pinterest
// creates audiences only for OAuth tokens), and one whose Tag ID no account
// has (the changes are held back, nothing reaches Pinterest), and one whose
// recorded audience was deleted in Pinterest. No daemon runs: the objects
// are an operator's.
func TestDoctorCatchesAudiencesNotShowing(t *testing.T) {
	sim := oauthSimulator(t, simulator.Options{KnownUserShare: 0.7})
	env := oauthEnv(t, sim) // brand_b has no OAuth app
	clearEnv(t)
	for k, v := range env {
		t.Setenv(k, v)
	}
	srv := startNATS(t, &server.Options{JetStream: true, StoreDir: t.TempDir()})
	js := operatorObjects(t, srv.ClientURL(), defaultTopology(t))
	kv, err := js.KeyValue(t.Context(), "COHORT_ACTIVATIONS")
	require.NoError(t, err)
	for _, a := range []cohorts.Activation{
		enabled("sports-a", "sports", ""), enabled("travel-b", "travel", secretTagB),
		{ID: "news-off", CohortID: "news", Destination: "pinterest"},
		enabled("garden-x", "garden", "2600000000000"), // written with nats kv put: no CLI check
		enabled("food-a", "food", ""),
	} {
		data, err := json.Marshal(a)
		require.NoError(t, err)
		_, err = kv.Put(t.Context(), a.ID, data)
		require.NoError(t, err)
	}

	// An audience the daemon recorded, since deleted in Pinterest.
	state, err := js.KeyValue(t.Context(), "COHORT_CONNECTOR_STATE")
	require.NoError(t, err)
	rec, err := json.Marshal(connector.Record{State: "ready", ActivationID: "food-a", CohortID: "food", AdAccountID: secretAdAccountA,
		Mode: cohorts.ModeEvents, AudienceID: "549755900999", AudienceType: "VISITOR"})
	require.NoError(t, err)
	_, err = state.Put(t.Context(), "audience.food-a", rec)
	require.NoError(t, err)

	code, found, _ := doctorAt(t, srv.ClientURL())
	assert.Equal(t, 1, code)
	assertFinding(t, found, "audience food-a", findingFail,
		[]string{"the daemon recorded audience 549755900999, which Pinterest no longer lists under ad account " + secretAdAccountA},
		"nats kv del -f COHORT_CONNECTOR_STATE audience.food-a")
	assertFinding(t, found, "activation news-off", findingOK, []string{"disabled"})
	assert.Contains(t, found["activation news-off"].Detail, "cohort-connector activations enable news-off")
	assertFinding(t, found, "audience sports-a", findingFail,
		[]string{"not in Pinterest", `"cohort-connector · sports-a · cohort sports"`}, "is the daemon running?")
	assertFinding(t, found, "audience travel-b", findingFail,
		[]string{"ad account " + secretAdAccountB + " has no OAuth app"}, "CONNECTOR_ACCOUNT_BRAND_B_APP_ID")
	assertFinding(t, found, "tag "+secretTagB, findingWarn, []string{"needs an OAuth token"})
	assertFinding(t, found, "activation garden-x", findingFail,
		[]string{"Tag ID 2600000000000 (override)", "no configured account has this Tag ID, so its changes are held back"},
		"to one of "+secretTagA+", "+secretTagB)
	assert.NotContains(t, found, "audience garden-x", "no account: no audience to look for")
}

// Troubleshooting, "the audience is much smaller than the cohort": with
// Pinterest knowing 10% of the users, 2,000 users sent fill a READY
// audience of about 200 (10%, below the 20% doctor asks by default), and
// 300 leave one TOO_SMALL.
func TestDoctorCatchesAnAudienceMuchSmallerThanTheCohort(t *testing.T) {
	sim := doctorSimulator(t, 0.1)
	_, code, found := sizedAudiences(t, sim, 2000, 300, func(found map[string]finding) bool {
		return strings.Contains(found["audience sports-a"].Detail, "users sent (") &&
			strings.Contains(found["audience travel-b"].Detail, "of 300 users sent")
	})
	assert.Equal(t, 1, code)
	assertFinding(t, found, "audience sports-a", findingFail,
		[]string{"READY", "much smaller than the cohort", "below --min-match-rate 20%"}, "emails or mobile ad ids")
	assertFinding(t, found, "audience travel-b", findingFail,
		[]string{"TOO_SMALL", "of 300 users sent", "at least 100 matched users"})
	t.Logf("%s\n%s", found["audience sports-a"].Detail, found["audience travel-b"].Detail)
}

// An expired OAuth grant, a conversion token Pinterest no longer takes,
// and JetStream objects an operator created with settings the daemon
// cannot work with: each is a FAIL naming the fix.
func TestDoctorCatchesAnExpiredTokenAndBadSettings(t *testing.T) {
	sim := oauthSimulator(t, simulator.Options{KnownUserShare: 0.7})
	sim.SetToken(secretAdAccountB, "pina_a_newer_token") // brand_b's configured token is refused
	sim.ExpireRefreshTokens()                            // brand_a's grant has expired
	clearEnv(t)
	for k, v := range oauthEnv(t, sim) {
		t.Setenv(k, v)
	}
	srv := startNATS(t, &server.Options{JetStream: true, StoreDir: t.TempDir()})
	topo := defaultTopology(t)
	stream := topo.StreamConfig()
	stream.MaxAge = time.Hour
	consumer := topo.ConsumerConfig()
	consumer.AckWait, consumer.MaxDeliver = 20*time.Second, -1
	state := topo.StateBucketConfig()
	state.TTL = 24 * time.Hour
	js := connectJS(t, srv.ClientURL())
	_, err := js.CreateStream(t.Context(), stream)
	require.NoError(t, err)
	_, err = js.CreateOrUpdateConsumer(t.Context(), topo.Stream, consumer)
	require.NoError(t, err)
	_, err = js.CreateKeyValue(t.Context(), state)
	require.NoError(t, err)
	operatorObjects(t, srv.ClientURL(), topo) // the rest, as the daemon would create them

	code, found, _ := doctorAt(t, srv.ClientURL())
	assert.Equal(t, 1, code)
	a, b := "brand_a ("+secretAdAccountA+")", "brand_b ("+secretAdAccountB+")"
	assertFinding(t, found, "events token "+b, findingFail, []string{"Pinterest refused it", "401"},
		"set CONNECTOR_ACCOUNT_BRAND_B_TOKEN to a current conversion access token")
	assertFinding(t, found, "events token "+a, findingOK, []string{"accepted"})
	assertFinding(t, found, "oauth "+a, findingFail, []string{"last refresh failed", "Invalid refresh token"}, "re-authorise the app", "CONNECTOR_ACCOUNT_BRAND_A_REFRESH_TOKEN",
		"nats kv del -f")
	assertFinding(t, found, "tag "+secretTagA, findingWarn, []string{"could not be read"})
	assertFinding(t, found, "stream COHORTS", findingFail, []string{"MaxAge 1h0m0s is below the 168h0m0s"},
		"nats stream edit COHORTS --max-age=168h0m0s")
	assertFinding(t, found, "consumer COHORTS/cohort-connector", findingFail,
		[]string{"AckWait 20s is not above CONNECTOR_HTTP_CALL_TIMEOUT + CONNECTOR_BATCH_PERIOD (30.02s)"},
		"nats consumer edit COHORTS cohort-connector --wait=1m0s")
	assertFinding(t, found, "state bucket COHORT_CONNECTOR_STATE", findingFail, []string{"TTL 24h0m0s"})
	t.Logf("oauth: %s", found["oauth "+a].Detail)

	// Fix the consumer's AckWait: its MaxDeliver is next.
	consumer.AckWait = time.Minute
	_, err = js.CreateOrUpdateConsumer(t.Context(), topo.Stream, consumer)
	require.NoError(t, err)
	_, found, _ = doctorAt(t, srv.ClientURL())
	assertFinding(t, found, "consumer COHORTS/cohort-connector", findingFail,
		[]string{"MaxDeliver -1", "redelivered forever and never dead-lettered"}, "--max-deliver=50")
}

// defaultTopology is the daemon's topology for the test's environment.
func defaultTopology(t *testing.T) connector.Topology {
	t.Helper()
	cfg, err := config.Load()
	require.NoError(t, err)
	return topology(cfg)
}

// operatorObjects creates, as an operator would, the JetStream objects of
// topo that do not exist yet; it returns a JetStream client of natsURL.
func operatorObjects(t *testing.T, natsURL string, topo connector.Topology) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	_, err = connector.Ensure(t.Context(), js, topo)
	require.NoError(t, err)
	return js
}

// NATS unreachable: its line fails, the conversion tokens are checked all
// the same, and what needs NATS (OAuth refresh tokens kept in the state
// bucket, the activations) says it was not checked.
func TestDoctorWithoutNATSStillChecksTheTokens(t *testing.T) {
	sim := oauthSimulator(t, simulator.Options{})
	clearEnv(t)
	for k, v := range oauthEnv(t, sim) {
		t.Setenv(k, v)
	}
	srv := startNATS(t, &server.Options{JetStream: true, StoreDir: t.TempDir()})
	url := srv.ClientURL()
	srv.Shutdown()
	srv.WaitForShutdown()

	code, found, stderr := doctorAt(t, url)
	assert.Equal(t, 1, code, stderr)
	a, b := "brand_a ("+secretAdAccountA+")", "brand_b ("+secretAdAccountB+")"
	assertFinding(t, found, "nats", findingFail, []string{"connecting to NATS at " + url}, "CONNECTOR_NATS_URL")
	assertFinding(t, found, "events token "+a, findingOK, []string{"accepted"})
	assertFinding(t, found, "events token "+b, findingOK, []string{"accepted"})
	assertFinding(t, found, "oauth "+a, findingFail, []string{"not checked", "CONNECTOR_STATE_BUCKET"})
	assertFinding(t, found, "activations", findingWarn, []string{"not checked"})
	assert.Len(t, found, 7, "nats, two events tokens, one oauth, two tags (not checked), activations: %v", found)
}
