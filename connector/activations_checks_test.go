package connector_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/connector"
)

// checkInterval is the watchers' bucket check in these tests.
const checkInterval = 50 * time.Millisecond

// startWatcher runs an ActivationsWatcher until the test ends and waits
// until it is ready.
func (e *activationsEnv) startWatcher() *connector.ActivationsWatcher {
	e.t.Helper()
	w := connector.NewActivationsWatcher(e.kv, e.resolver, e.log, checkInterval)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	e.t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(e.t, err, "Run")
		case <-time.After(waitFor):
			e.t.Error("Run did not return after cancel")
		}
	})
	select {
	case <-w.Ready():
	case err := <-done:
		e.t.Fatalf("activations watcher stopped before ready: %v", err)
	case <-time.After(waitFor):
		e.t.Fatal("activations watcher not ready")
	}
	return w
}

// check returns the watcher's check of that name.
func check(t *testing.T, w *connector.ActivationsWatcher, name string) connector.Check {
	t.Helper()
	for _, c := range w.Checks() {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no check %s in %v", name, w.Checks())
	return connector.Check{}
}

func TestActivationsWatcherChecksFailUntilLoaded(t *testing.T) {
	e := newActivationsEnv(t)
	w := connector.NewActivationsWatcher(e.kv, e.resolver, e.log, checkInterval)
	assert.Equal(t, []connector.Check{
		{Name: connector.CheckActivationsLoaded, State: connector.CheckFail, Detail: "activations not loaded yet from bucket COHORT_ACTIVATIONS"},
		{Name: connector.CheckActivationsBucket, State: connector.CheckOK},
		{Name: connector.CheckActivationsInvalid, State: connector.CheckOK},
	}, w.Checks())
}

func TestActivationsWatcherReportsADeletedBucketUntilItIsBack(t *testing.T) {
	e := newActivationsEnv(t)
	e.put(activation("stays-a", "c-a", ""))
	e.put(activation("dropped-b", "c-b", tagB))
	w := e.startWatcher()
	for _, c := range w.Checks() {
		assert.Equal(t, connector.CheckOK, c.State, "%s: %s", c.Name, c.Detail)
	}

	require.NoError(t, e.js.DeleteKeyValue(t.Context(), e.topo.ActivationsBucket))
	require.Eventually(t, func() bool {
		return check(t, w, connector.CheckActivationsBucket).State == connector.CheckFail
	}, waitFor, tick, "the deleted bucket is not reported")
	assert.Contains(t, check(t, w, connector.CheckActivationsBucket).Detail, "bucket COHORT_ACTIVATIONS not found since")
	assert.Equal(t, connector.CheckOK, check(t, w, connector.CheckActivationsLoaded).State, "what was loaded stays loaded")
	require.Never(t, func() bool { return len(e.ids()) != 2 }, 20*checkInterval, tick,
		"while the bucket is gone the last known activations stay in force")
	assert.Equal(t, connector.CheckFail, check(t, w, connector.CheckActivationsBucket).State, "still gone")
	gone := e.logs.lines("activations bucket not found: the last known activations stay in force until it is recreated")
	require.Len(t, gone, 1, "logged once, not at every check")
	assert.Equal(t, "error", gone[0]["level"])
	assert.EqualValues(t, 2, gone[0]["activations"])

	var err error
	e.kv, err = e.js.CreateKeyValue(t.Context(), e.topo.KeyValueConfig())
	require.NoError(t, err)
	changed := activation("stays-a", "c-a", tagA2)
	e.put(changed)
	e.put(activation("new-c", "c-c", ""))
	require.Eventually(t, func() bool {
		got, _ := e.resolver.Get("stays-a")
		return check(t, w, connector.CheckActivationsBucket).State == connector.CheckOK &&
			assert.ObjectsAreEqual([]string{"new-c", "stays-a"}, e.ids()) && got == changed
	}, waitFor, tick, "the recreated bucket is not followed: %v", e.ids())
	back := e.logs.lines("activations bucket is back: activations re-read from it")
	require.Len(t, back, 1)
	// The watcher may read the recreated bucket before or after stays-a is
	// put back: dropped-b is removed either way, stays-a perhaps for a moment.
	assert.GreaterOrEqual(t, back[0]["removed"], float64(1))
	deleted := 0
	for _, l := range e.logs.lines("activation deleted") {
		if l["activation_id"] == "dropped-b" {
			deleted++
			assert.Equal(t, "not_in_bucket", l["reason"])
		}
	}
	assert.Equal(t, 1, deleted, "dropped-b, no longer in the bucket")

	// And it is followed live again.
	e.put(activation("later-d", "c-d", ""))
	require.Eventually(t, func() bool { _, ok := e.resolver.Get("later-d"); return ok }, waitFor, tick)
}

func TestActivationsWatcherWarnsAboutInvalidValuesAndStaysReady(t *testing.T) {
	e := newActivationsEnv(t)
	e.putRaw("never-valid", `{"id":"never-valid"}`)
	goodRev := e.put(activation("fallback", "c1", ""))
	badRev := e.putRaw("fallback", `{`)
	w := e.startWatcher()

	c := check(t, w, connector.CheckActivationsInvalid)
	assert.Equal(t, connector.CheckWarn, c.State)
	assert.Contains(t, c.Detail, "2 keys of bucket COHORT_ACTIVATIONS hold invalid values")
	assert.Contains(t, c.Detail, "never-valid: not in force: revision 1 invalid: cohort_id: required; destination \"\": must be \"pinterest\"; no valid revision in the key's history")
	assert.Contains(t, c.Detail, "fallback: revision 3 invalid: decoding activation: unexpected EOF; revision 2 in force (the newest valid revision)")
	assert.Equal(t, uint64(2), goodRev)
	assert.Equal(t, uint64(3), badRev)
	assert.Equal(t, connector.CheckOK, check(t, w, connector.CheckActivationsLoaded).State)

	e.put(activation("never-valid", "c2", ""))
	require.Eventually(t, func() bool {
		d := check(t, w, connector.CheckActivationsInvalid).Detail
		return assert.ObjectsAreEqual(connector.CheckWarn, check(t, w, connector.CheckActivationsInvalid).State) &&
			!strings.Contains(d, "never-valid") && strings.Contains(d, "1 key of bucket COHORT_ACTIVATIONS holds an invalid value: fallback: ")
	}, waitFor, tick, "a fixed key is no longer reported")
	require.NoError(t, e.kv.Delete(t.Context(), "fallback"))
	require.Eventually(t, func() bool {
		return check(t, w, connector.CheckActivationsInvalid) == connector.Check{Name: connector.CheckActivationsInvalid, State: connector.CheckOK}
	}, waitFor, tick, "a deleted key is no longer reported")
}

// When the key's history (5 revisions) holds no valid revision any more,
// the running watcher keeps what it has in force, and says so; a restart
// has nothing to fall back on.
func TestActivationsWatcherKeepsWhatIsInForceWhenTheHistoryHasNoValidRevisionLeft(t *testing.T) {
	e := newActivationsEnv(t)
	a := activation("flooded", "c1", "")
	rev := e.put(a)
	w := e.startWatcher()
	var last uint64
	for range 5 {
		last = e.putRaw(a.ID, `"not an object"`)
	}
	require.Eventually(t, func() bool {
		return len(e.logs.lines("no valid revision left in the key's history")) > 0
	}, waitFor, tick)
	got, ok := e.resolver.Get(a.ID)
	require.True(t, ok, "the activation in force is kept")
	assert.Equal(t, a, got)
	line := invalidLine(t, e.logs, a.ID)
	assert.Equal(t, "activation value invalid and no valid revision left in the key's history: the revision loaded earlier stays in force until restart", line["message"])
	assert.EqualValues(t, rev, line["revision_in_force"])
	require.Eventually(t, func() bool {
		return strings.Contains(check(t, w, connector.CheckActivationsInvalid).Detail, "revision 1, loaded earlier, stays in force until the daemon restarts")
	}, waitFor, tick)

	restarted := e.restarted()
	w2 := restarted.startWatcher()
	_, ok = restarted.resolver.Get(a.ID)
	assert.False(t, ok, "after a restart nothing valid is left")
	assert.Contains(t, check(t, w2, connector.CheckActivationsInvalid).Detail, "no valid revision in the key's history")
	assert.EqualValues(t, last, invalidLine(t, restarted.logs, a.ID)["revision"])
}

func TestActivationsWatcherStopsWhenTheConnectionIsClosed(t *testing.T) {
	e := newActivationsEnv(t)
	nc, err := nats.Connect(e.url)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	kv, err := js.KeyValue(t.Context(), e.topo.ActivationsBucket)
	require.NoError(t, err)
	w := connector.NewActivationsWatcher(kv, e.resolver, e.log, checkInterval)
	done := make(chan error, 1)
	go func() { done <- w.Run(context.Background()) }()
	select {
	case <-w.Ready():
	case <-time.After(waitFor):
		t.Fatal("not ready")
	}
	nc.Close()
	select {
	case err := <-done:
		require.ErrorIs(t, err, nats.ErrConnectionClosed)
	case <-time.After(waitFor):
		t.Fatal("Run did not return after the connection closed")
	}
}
