package connector_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/cohorts"
)

// L8: an invalid value never turns an activated cohort into "not
// activated", also across a restart: the newest valid revision of the key
// (the bucket keeps 5) stays in force, and the log says which.
func TestActivationsWatcherUsesTheNewestValidRevisionAfterARestart(t *testing.T) {
	e := newActivationsEnv(t)

	// Written before the (re)start: the watcher loads it from the bucket.
	good := activation("good-then-broken", "c1", tagA2)
	goodRev := e.put(good)
	badRev := e.putRaw(good.ID, `{"id":"good-then-broken","cohort_id":`)

	older := activation("twice-then-wrong-id", "c2", "")
	e.put(older)
	newer := older
	newer.Enabled = false
	newerRev := e.put(newer)
	wrong := activation("someone-else", "c2", "")
	e.put(wrong) // valid under its own key
	wrongRev := e.putRaw(older.ID, string(mustJSON(t, wrong)))

	deleted := activation("deleted-then-broken", "c3", "")
	e.put(deleted)
	require.NoError(t, e.kv.Delete(t.Context(), deleted.ID))
	e.putRaw(deleted.ID, `not json`)

	e.putRaw("never-valid", `{"id":"never-valid"}`)

	e.startWatcher()

	got, ok := e.resolver.Get(good.ID)
	require.True(t, ok, "after a restart the newest valid revision is in force")
	assert.Equal(t, good, got)
	got, ok = e.resolver.Get(older.ID)
	require.True(t, ok, "a key holding another id is invalid: the newest valid revision is in force")
	assert.Equal(t, newer, got, "the newest valid revision, not an older one")
	_, ok = e.resolver.Get(deleted.ID)
	assert.False(t, ok, "a delete is a choice: an invalid value after it brings nothing back")
	_, ok = e.resolver.Get("never-valid")
	assert.False(t, ok, "a key with no valid revision has nothing in force")
	assert.Equal(t, []cohorts.Activation{wrong}, onlyID(e.resolver.List(), wrong.ID), "the key of its own is valid")

	line := invalidLine(t, e.logs, good.ID)
	assert.Equal(t, "error", line["level"])
	assert.Equal(t, "activation value invalid: the newest valid revision is in force", line["message"])
	assert.Equal(t, float64(goodRev), line["revision_in_force"], "the log names the revision used")
	assert.Equal(t, float64(badRev), line["revision"], "and the invalid one")
	assert.Equal(t, tagA2, line["tag_id"], "and what is in force")
	line = invalidLine(t, e.logs, older.ID)
	assert.Equal(t, float64(newerRev), line["revision_in_force"])
	assert.Equal(t, float64(wrongRev), line["revision"])
	assert.Contains(t, line["error"], `holds activation id "someone-else"`)
	line = invalidLine(t, e.logs, deleted.ID)
	assert.Equal(t, "activation value invalid: not in force, the key was deleted before it", line["message"])
	line = invalidLine(t, e.logs, "never-valid")
	assert.Equal(t, "error", line["level"])
	assert.Equal(t, "activation value invalid and no valid revision in the key's history: not in force", line["message"])
}

// A live update with an invalid value keeps the activation in force, and
// the log says which revision that is.
func TestActivationsWatcherKeepsTheNewestValidRevisionOnALiveInvalidUpdate(t *testing.T) {
	e := newActivationsEnv(t)
	a := activation("live", "c1", "")
	e.put(a)
	e.startWatcher()

	b := a
	b.TagID = tagB
	bRev := e.put(b)
	require.Eventually(t, func() bool { got, _ := e.resolver.Get(a.ID); return got == b }, waitFor, tick)
	badRev := e.putRaw(a.ID, `{"id":"live","cohort_id":"c1","destination":"pinterest","enabled":false,"tagid":"1"}`)

	var line map[string]any
	require.Eventually(t, func() bool {
		for _, l := range e.logs.lines("activation") {
			if l["activation_id"] == a.ID && l["revision"] == float64(badRev) {
				line = l
				return true
			}
		}
		return false
	}, waitFor, tick, "the invalid revision is not logged")
	got, ok := e.resolver.Get(a.ID)
	require.True(t, ok)
	assert.Equal(t, b, got, "an invalid value does not switch the activation off")
	assert.Equal(t, "error", line["level"])
	assert.Equal(t, "activation value invalid: the newest valid revision is in force", line["message"])
	assert.Equal(t, float64(bRev), line["revision_in_force"], "the log names the revision in force")
	assert.Equal(t, tagB, line["tag_id"])
}

func mustJSON(t *testing.T, a cohorts.Activation) []byte {
	t.Helper()
	b, err := json.Marshal(a)
	require.NoError(t, err)
	return b
}

func onlyID(list []cohorts.Activation, id string) []cohorts.Activation {
	var out []cohorts.Activation
	for _, a := range list {
		if a.ID == id {
			out = append(out, a)
		}
	}
	return out
}

// invalidLine is the last log line about the activation with reason
// invalid_activation.
func invalidLine(t *testing.T, logs *logBuffer, id string) map[string]any {
	t.Helper()
	var found map[string]any
	for _, l := range logs.lines("") {
		if l["activation_id"] == id && l["reason"] == "invalid_activation" {
			found = l
		}
	}
	require.NotNil(t, found, "no log line about %s with reason invalid_activation", id)
	return found
}
