package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/cohorts"
)

// /status, the page and the status command show each activation (where it
// goes, what Pinterest accepted, its last error), each ad account's state
// and the backlog, from what the daemon saw: brand_b's token is refused.
func TestStatusShowsEachActivationItsAccountAndTheBacklog(t *testing.T) {
	sim := startSimulator(t) // brand_a's token accepted, brand_b's refused (401)
	d := startRunningDaemon(t, daemonEnv(t, sim))
	kv, err := d.js.KeyValue(t.Context(), "COHORT_ACTIVATIONS")
	require.NoError(t, err)
	d.putActivation(kv, cohorts.Activation{ID: "news-a", CohortID: "news", Destination: "pinterest", Enabled: true, Mode: cohorts.ModeEvents})
	d.putActivation(kv, cohorts.Activation{ID: "sports-b", CohortID: "sports", Destination: "pinterest", TagID: secretTagB, Enabled: true, Mode: cohorts.ModeEvents})
	d.waitApplied("news-a")
	d.waitApplied("sports-b")
	d.publish("news", 0, 10)
	d.publish("sports", 0, 5)
	require.Eventually(t, func() bool { return sent(sim, secretAdAccountA, "news") == 10 }, 15*time.Second, 20*time.Millisecond)

	var r statusReport
	byID := map[string]activationStatus{}
	require.Eventually(t, func() bool {
		code, body := d.get("/status")
		if code != http.StatusOK || json.Unmarshal([]byte(body), &r) != nil {
			return false
		}
		for _, a := range r.Activations {
			byID[a.ID] = a
		}
		return byID["news-a"].Accepted == 10 && byID["sports-b"].LastError != nil
	}, 15*time.Second, 50*time.Millisecond, "status: %+v", r)

	news := byID["news-a"]
	assert.Equal(t, "news", news.CohortID)
	assert.Equal(t, secretTagA, news.TagID)
	assert.Equal(t, "default", news.TagSource)
	assert.Equal(t, secretAdAccountA, news.AdAccountID)
	assert.Equal(t, "healthy", news.AccountState)
	assert.Equal(t, int64(10), news.Sent)
	assert.Equal(t, 1.0, news.Acceptance)
	assert.Nil(t, news.LastError)

	sports := byID["sports-b"]
	assert.Equal(t, "override", sports.TagSource)
	assert.Equal(t, secretAdAccountB, sports.AdAccountID)
	assert.Equal(t, "auth_failing", sports.AccountState)
	assert.Zero(t, sports.Accepted)
	// Refused (auth), or parked once the account counts as failing: either
	// way its detail is Pinterest's refusal.
	assert.Contains(t, []string{"auth", "parked"}, sports.LastError.Reason)
	assert.Contains(t, sports.LastError.Detail, "auth")
	assert.WithinDuration(t, time.Now(), sports.LastError.At, time.Minute)

	require.Len(t, r.Accounts, 2)
	assert.Equal(t, "brand_a", r.Accounts[0].Name)
	assert.Equal(t, "healthy", r.Accounts[0].State)
	assert.Equal(t, "auth_failing", r.Accounts[1].State)
	assert.NotEmpty(t, r.Accounts[1].Error)
	assert.False(t, r.Accounts[1].FailingSince.IsZero())
	assert.False(t, r.Ready, "an account Pinterest refuses makes the daemon unready")
	assert.Equal(t, "COHORTS", r.Pipeline.Stream)
	assert.Equal(t, "cohort-connector", r.Pipeline.Consumer)
	assert.GreaterOrEqual(t, r.Pipeline.Pending, int64(0))
	assert.GreaterOrEqual(t, r.Pipeline.DeadLetters, int64(0))

	code, page := d.get("/")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, page, `<meta name="viewport" content="width=device-width, initial-scale=1">`)
	for _, want := range []string{`id="activation-news-a"`, `id="activation-sports-b"`, "auth_failing", secretAdAccountB, "How to read this"} {
		assert.Contains(t, page, want)
	}
	assert.NotContains(t, page, "<script", "no JavaScript")

	url := "http://" + d.listen
	code, out, errOut := runCmd(t, "status", "--url", url)
	require.Equal(t, 0, code, errOut)
	for _, want := range []string{"ACTIVATION", "news-a", "sports-b", "auth_failing", "AD ACCOUNT", "brand_b", "pipeline COHORTS/cohort-connector: waiting "} {
		assert.Contains(t, out, want)
	}
	code, out, errOut = runCmd(t, "status", "--json", "--url", url)
	require.Equal(t, 0, code, errOut)
	var again statusReport
	require.NoError(t, json.Unmarshal([]byte(out), &again))
	assert.Len(t, again.Activations, 2)

	code, _, errOut = runCmd(t, "status", "--url", "http://127.0.0.1:1")
	assert.Equal(t, 1, code)
	assert.True(t, strings.Contains(errOut, "no daemon answers at http://127.0.0.1:1"), errOut)
}
