package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/cohorts"
)

// listRows maps the first column (the key) of "activations list" output to
// its line.
func listRows(out string) map[string]string {
	rows := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			rows[f[0]] = line
		}
	}
	return rows
}

// L9b: "activations list" shows what the daemon uses: the same validation
// (key equals id, Tag ID resolution) and the same rule for invalid values
// (the newest valid revision is in force).
func TestActivationsListShowsWhatTheDaemonUses(t *testing.T) {
	e := newDLQEnv(t) // the daemon's objects and a CLI configuration: default Tag ID 5, account 1
	kv, err := e.js.KeyValue(t.Context(), "COHORT_ACTIVATIONS")
	require.NoError(t, err)
	put := func(key, value string) {
		t.Helper()
		_, err := kv.Put(t.Context(), key, []byte(value))
		require.NoError(t, err)
	}
	putA := func(key string, a cohorts.Activation) {
		t.Helper()
		b, err := json.Marshal(a)
		require.NoError(t, err)
		put(key, string(b))
	}
	act := func(id, cohort, tag string) cohorts.Activation {
		return cohorts.Activation{ID: id, CohortID: cohort, Destination: "pinterest", Enabled: true, TagID: tag, Mode: cohorts.ModeEvents}
	}
	putA("healthy", act("healthy", "c1", ""))
	putA("other-id", act("not-its-key", "c2", ""))
	putA("fallback", act("fallback", "c3", ""))
	put("fallback", `{"id":"fallback",`)
	putA("unknown-tag", act("unknown-tag", "c4", "777"))

	code, out, errOut := runCmd(t, "activations", "list")
	require.Equal(t, 0, code, errOut)
	t.Logf("activations list:\n%s", out)
	rows := listRows(out)

	require.Contains(t, rows, "healthy")
	assert.Regexp(t, `^healthy\s+c1\s+events\s+true\s+5\s+default\s+1\s+1\s+-\s+-\s+-\s+-\s+-\s*$`, rows["healthy"],
		"in force at revision 1, no audience recorded, no problem")

	require.Contains(t, rows, "other-id", "a row per key, named by its key")
	assert.Contains(t, rows["other-id"], `not in force: revision 2 invalid: key "other-id" holds activation id "not-its-key"`)
	assert.NotContains(t, rows["other-id"], "true", "nothing of it is in force")
	assert.NotContains(t, out, "not-its-key\t", "the id inside the value is not shown as an activation")

	require.Contains(t, rows, "fallback")
	assert.Regexp(t, `^fallback\s+c3\s+events\s+true\s+5\s+default\s+1\s+3\s+`, rows["fallback"], "revision 3 (valid) is in force")
	assert.Contains(t, rows["fallback"], "revision 4 invalid")

	require.Contains(t, rows, "unknown-tag")
	assert.Contains(t, rows["unknown-tag"], "tag_id is owned by no configured ad account")
}

// enable and disable read the key with the daemon's rule too: a value whose
// id is not its key is not toggled (nor written under the other id).
func TestActivationsToggleRefusesAValueOfAnotherID(t *testing.T) {
	e := newDLQEnv(t)
	kv, err := e.js.KeyValue(t.Context(), "COHORT_ACTIVATIONS")
	require.NoError(t, err)
	_, err = kv.Put(t.Context(), "other-id",
		[]byte(`{"id":"not-its-key","cohort_id":"c2","destination":"pinterest","enabled":true,"tag_id":"","mode":"events"}`))
	require.NoError(t, err)
	code, _, errOut := runCmd(t, "activations", "disable", "other-id")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, `activation "other-id" is invalid in the bucket, fix it with put: key "other-id" holds activation id "not-its-key"`)
	_, err = kv.Get(t.Context(), "not-its-key")
	assert.ErrorIs(t, err, jetstream.ErrKeyNotFound, "nothing written under the other id")
}

// The list shows each activation's audience as the daemon recorded it, and
// its match rate: the size Pinterest reported over the users put into it.
func TestActivationsListShowsTheAudienceAndItsMatchRate(t *testing.T) {
	e := newDLQEnv(t)
	kv, err := e.js.KeyValue(t.Context(), "COHORT_ACTIVATIONS")
	require.NoError(t, err)
	a := cohorts.Activation{ID: "list-1", CohortID: "c1", Destination: "pinterest", Enabled: true, Mode: cohorts.ModeCustomerList}
	b, err := json.Marshal(a)
	require.NoError(t, err)
	_, err = kv.Put(t.Context(), a.ID, b)
	require.NoError(t, err)
	state, err := e.js.KeyValue(t.Context(), "COHORT_CONNECTOR_STATE") // the daemon made it
	require.NoError(t, err)
	rec := `{"state":"ready","activation_id":"list-1","cohort_id":"c1","ad_account_id":"1","mode":"customer_list",` +
		`"audience_id":"2542620639001","audience_type":"CUSTOMER_LIST","customer_list_id":"555","status":"READY","size":140,"size_known":true}`
	_, err = state.Put(t.Context(), "audience.list-1", []byte(rec))
	require.NoError(t, err)
	_, err = state.Put(t.Context(), "members.555", []byte("200"))
	require.NoError(t, err)

	code, out, errOut := runCmd(t, "activations", "list")
	require.Equal(t, 0, code, errOut)
	t.Logf("activations list:\n%s", out)
	assert.Regexp(t, `^list-1\s+c1\s+customer_list\s+true\s+5\s+default\s+1\s+1\s+2542620639001 CUSTOMER_LIST\s+READY\s+140\s+200\s+70\.0%\s*$`,
		listRows(out)["list-1"])
}
