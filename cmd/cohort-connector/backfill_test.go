package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/config"
	"github.com/cohort-connector/cohort-connector/connector"
	"github.com/cohort-connector/cohort-connector/destinations/pinterest/simulator"
)

// backfillCLIEnv is newDLQEnv (the daemon's objects; default Tag ID 5 of ad
// account 1, token "tok") with the Pinterest simulator behind
// CONNECTOR_PINTEREST_BASE_URL and one enabled activation of cohort c1.
func backfillCLIEnv(t *testing.T) (*dlqEnv, *simulator.Simulator, jetstream.KeyValue) {
	t.Helper()
	e := newDLQEnv(t)
	sim, err := simulator.Start(simulator.Options{Accounts: map[string]string{"1": "tok"}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sim.Close() })
	t.Setenv("CONNECTOR_PINTEREST_BASE_URL", sim.URL())
	acts, err := e.js.KeyValue(t.Context(), "COHORT_ACTIVATIONS")
	require.NoError(t, err)
	for _, a := range []cohorts.Activation{
		{ID: "act-c1", CohortID: "c1", Destination: "pinterest", Enabled: true, Mode: cohorts.ModeEvents},
		{ID: "off-c1", CohortID: "c1", Destination: "pinterest", Enabled: false, Mode: cohorts.ModeEvents},
	} {
		data, err := json.Marshal(a)
		require.NoError(t, err)
		_, err = acts.Put(t.Context(), a.ID, data)
		require.NoError(t, err)
	}
	return e, sim, acts
}

func TestBackfillCLIArgumentErrors(t *testing.T) {
	backfillCLIEnv(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "--activation ID is required"},
		{[]string{"--status"}, "--activation ID is required"},
		{[]string{"--activation", "act-c1", "--status", "--cancel"}, "exclude each other"},
		{[]string{"--activation", "act-c1", "extra"}, `unexpected argument "extra"`},
		{[]string{"--bogus"}, "flag provided but not defined"},
		{[]string{"--activation", "nope"}, `no activation "nope" in COHORT_ACTIVATIONS`},
		{[]string{"--activation", "off-c1"}, "is disabled: enable it first"},
	} {
		code, _, errOut := runCmd(t, append([]string{"backfill"}, tc.args...)...)
		assert.Equal(t, 1, code, "%v", tc.args)
		assert.Contains(t, errOut, tc.want, "%v", tc.args)
	}
	code, out, _ := runCmd(t, "backfill", "--help")
	assert.Equal(t, 0, code)
	assert.Contains(t, out, "Usage: cohort-connector backfill --activation ID")
}

func TestBackfillCLISendsTheMembersAndReportsStatus(t *testing.T) {
	e, sim, _ := backfillCLIEnv(t)
	for _, args := range [][]string{{"--status"}, {"--cancel"}} {
		code, out, errOut := runCmd(t, append([]string{"backfill", "--activation", "act-c1"}, args...)...)
		require.Equal(t, 0, code, errOut)
		assert.Equal(t, "no backfill of activation act-c1 has run\n", out, "%v before any run", args)
	}

	ts := time.Now().Add(-time.Hour).UTC()
	for i := range 30 {
		m := cohorts.Membership{UserID: fmt.Sprintf("u%02d", i), CohortID: "c1", Action: cohorts.ActionEnter, TS: ts.Add(time.Duration(i) * time.Second),
			Identifiers: cohorts.Identifiers{Email: fmt.Sprintf("u%d@example.com", i)}}
		if i%3 == 0 {
			m.Action = cohorts.ActionExit
		}
		data, err := json.Marshal(m)
		require.NoError(t, err)
		_, err = e.js.Publish(t.Context(), "cohorts.membership.c1", data)
		require.NoError(t, err)
	}
	code, out, errOut := runCmd(t, "backfill", "--activation", "act-c1")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "backfill of activation act-c1 done: 20 members, 20 sent to ad account 1, 0 skipped")
	assert.Contains(t, errOut, "backfill act-c1: done: sent 20, skipped 0 of 20 members", "a plain progress line when stderr is not a terminal")
	assert.Equal(t, 20, sent(sim, "1", "c1"))

	code, out, errOut = runCmd(t, "backfill", "--activation", "act-c1", "--status")
	require.Equal(t, 0, code, errOut)
	assert.Regexp(t, `state:\s+done, phase send, run 1`, out)
	assert.Regexp(t, `members:\s+20: 20 sent, 0 skipped`, out)

	code, out, errOut = runCmd(t, "backfill", "--activation", "act-c1", "--cancel")
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "no backfill of activation act-c1 is running (state done)\n", out)
}

// A backfill running elsewhere (a daemon) is reported, can be cancelled
// from the CLI, and then resumed by it.
func TestBackfillCLICancelsABackfillRunningElsewhere(t *testing.T) {
	e, sim, _ := backfillCLIEnv(t)
	kv, err := e.js.KeyValue(t.Context(), config.Default().StateBucket)
	require.NoError(t, err)
	running := connector.BackfillProgress{ActivationID: "act-c1", CohortID: "c1", Subject: "cohorts.membership.c1",
		State: connector.BackfillRunning, Phase: "send", Owner: "daemon-1", Heartbeat: time.Now().UTC(), Members: 40, Sent: 10, Runs: 1}
	data, err := json.Marshal(running)
	require.NoError(t, err)
	_, err = kv.Put(t.Context(), connector.BackfillKey("act-c1"), data)
	require.NoError(t, err)

	code, _, errOut := runCmd(t, "backfill", "--activation", "act-c1")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "running elsewhere (owner daemon-1")
	assert.Contains(t, errOut, "--status (or --cancel)")

	code, out, errOut := runCmd(t, "backfill", "--activation", "act-c1", "--status")
	require.Equal(t, 0, code, errOut)
	assert.Regexp(t, `state:\s+running \(owner daemon-1, heartbeat \d+s ago\)`, out)

	code, out, errOut = runCmd(t, "backfill", "--activation", "act-c1", "--cancel")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "backfill of activation act-c1 cancelled (owner daemon-1, 10 of 40 members done)")
	assert.Contains(t, out, "resume with: cohort-connector backfill --activation act-c1")
	p, _, err := connector.ReadBackfill(t.Context(), kv, "act-c1")
	require.NoError(t, err)
	assert.Equal(t, connector.BackfillCancelled, p.State)

	// Resumed here: the (empty) history has no member after the last user.
	code, out, errOut = runCmd(t, "backfill", "--activation", "act-c1")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "done: 0 members, 10 sent")
	assert.Zero(t, sent(sim, "1", "c1"))
}

// On a terminal the progress is a bar per phase: count, rate and ETA.
func TestBackfillPrinterDrawsABarPerPhaseOnATerminal(t *testing.T) {
	var buf bytes.Buffer
	pr := &backfillPrinter{w: &buf, tty: true, every: time.Millisecond}
	pr.update(connector.BackfillProgress{ActivationID: "a", Phase: "read", Read: 500, ReadTotal: 1000})
	pr.update(connector.BackfillProgress{ActivationID: "a", Phase: "read", Read: 1000, ReadTotal: 1000})
	pr.update(connector.BackfillProgress{ActivationID: "a", Phase: "send", Members: 200, Sent: 50, Skipped: 10})
	pr.finish()
	out := buf.String()
	t.Logf("%q", out)
	assert.Contains(t, out, "reading history")
	assert.Contains(t, out, "1000/1000")
	assert.Contains(t, out, "msgs/s")
	assert.Contains(t, out, "sending members")
	assert.Contains(t, out, "60/200")
	assert.Contains(t, out, "members/s")
}
