package connector_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// L6: the whole bucket deleted (nats kv del COHORT_ACTIVATIONS -f), then
// recreated by an operator and filled again.
func TestActivationsWatcherFollowsABucketDeletedAndRecreated(t *testing.T) {
	e := newActivationsEnv(t)
	e.put(activation("stays-a", "c-a", ""))
	e.put(activation("dropped-b", "c-b", tagB))
	e.startWatcher()
	require.Equal(t, []string{"dropped-b", "stays-a"}, e.ids())

	require.NoError(t, e.js.DeleteKeyValue(t.Context(), e.topo.ActivationsBucket))
	assert.Equal(t, []string{"dropped-b", "stays-a"}, e.ids(),
		"a deleted bucket is not a per-key delete: the last known activations stay in force")

	var err error
	e.kv, err = e.js.CreateKeyValue(t.Context(), e.topo.KeyValueConfig())
	require.NoError(t, err)
	changed := activation("stays-a", "c-a", tagA2)
	e.put(changed)
	e.put(activation("new-c", "c-c", ""))
	require.Eventually(t, func() bool {
		got, ok := e.resolver.Get("stays-a")
		ids := e.ids()
		return ok && got == changed && len(ids) == 2 && ids[0] == "new-c" && ids[1] == "stays-a"
	}, 2*waitFor, tick, "the resolver does not match the recreated bucket: %v", e.ids())
}
