package connector_test

import (
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/connector"
)

func requireWithin(t *testing.T, want float64, got uint64, rel float64) {
	t.Helper()
	t.Logf("estimate %d, true count %.0f (%+.2f%%)", got, want, 100*(float64(got)-want)/want)
	require.LessOrEqual(t, math.Abs(float64(got)-want)/want, rel, "estimate %d, true count %.0f", got, want)
}

func TestSketches_replicasMergeIntoOneCountWithin2Percent(t *testing.T) {
	e := newStateEnv(t)
	clock := &fakeClock{t: time.Date(2026, 11, 30, 23, 0, 0, 0, time.UTC)}
	r1, r2 := connector.NewSketches(e.kv, clock.Now), connector.NewSketches(e.kv, clock.Now)
	// Replica 1 sends users 0..69,999, replica 2 users 30,000..99,999: 100,000
	// distinct users, 40,000 of them sent by both.
	for i := range 70_000 {
		r1.Add("act-1", fmt.Sprintf("user-%d", i))
	}
	for i := 30_000; i < 100_000; i++ {
		r2.Add("act-1", fmt.Sprintf("user-%d", i))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for _, r := range []*connector.Sketches{r1, r2} {
		wg.Go(func() { errs <- r.Flush(t.Context()) })
	}
	wg.Wait()
	require.NoError(t, <-errs)
	require.NoError(t, <-errs)

	fresh := connector.NewSketches(e.kv, clock.Now) // a restarted process
	got, err := fresh.Distinct(t.Context(), "act-1", 180)
	require.NoError(t, err)
	requireWithin(t, 100_000, got, 0.02)

	t.Run("users sent again are not counted twice", func(t *testing.T) {
		for i := range 50_000 {
			r1.Add("act-1", fmt.Sprintf("user-%d", i))
		}
		require.NoError(t, r1.Flush(t.Context()))
		again, err := fresh.Distinct(t.Context(), "act-1", 180)
		require.NoError(t, err)
		require.Equal(t, got, again)
	})

	t.Run("activations are counted apart", func(t *testing.T) {
		n, err := fresh.Distinct(t.Context(), "act-2", 180)
		require.NoError(t, err)
		require.Zero(t, n)
	})
}

func TestSketches_countOnlyTheDaysOfTheWindow(t *testing.T) {
	e := newStateEnv(t)
	day1 := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	clock := &fakeClock{t: day1}
	s := connector.NewSketches(e.kv, clock.Now)
	add := func(prefix string, n int) {
		for i := range n {
			s.Add("act-1", fmt.Sprintf("%s-%d", prefix, i))
		}
	}
	distinct := func(days int) uint64 {
		t.Helper()
		n, err := s.Distinct(t.Context(), "act-1", days)
		require.NoError(t, err)
		return n
	}
	add("first-day", 1000)
	require.NoError(t, s.Flush(t.Context()))
	clock.Set(day1.Add(24 * time.Hour))
	add("second-day", 2000)
	require.NoError(t, s.Flush(t.Context()))

	requireWithin(t, 2000, distinct(1), 0.02)
	requireWithin(t, 3000, distinct(2), 0.02)
	clock.Set(day1.Add(48 * time.Hour))
	require.Zero(t, distinct(1), "nothing sent on the third day")
	requireWithin(t, 2000, distinct(2), 0.02)
	requireWithin(t, 3000, distinct(3), 0.02)

	add("third-day", 500) // not flushed: counted from memory
	requireWithin(t, 500, distinct(1), 0.02)
	keys, err := e.kv.Keys(t.Context())
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"sketch.act-1.20261128", "sketch.act-1.20261129"}, keys)
}

func TestSketches_aConflictingFlushIsRetriedAndLosesNothing(t *testing.T) {
	e := newStateEnv(t)
	clock := &fakeClock{t: time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)}
	addN := func(s *connector.Sketches, prefix string) {
		for i := range 1000 {
			s.Add("act-1", fmt.Sprintf("%s-%d", prefix, i))
		}
	}
	first := connector.NewSketches(e.kv, clock.Now)
	addN(first, "first")
	require.NoError(t, first.Flush(t.Context()))

	other := connector.NewSketches(e.kv, clock.Now)
	addN(other, "other")
	stale := &staleKV{KeyValue: e.kv, key: "sketch.act-1.20261130", meanwhile: func() {
		require.NoError(t, other.Flush(t.Context()))
	}}
	s := connector.NewSketches(stale, clock.Now)
	addN(s, "third")
	require.NoError(t, s.Flush(t.Context()))

	got, err := connector.NewSketches(e.kv, clock.Now).Distinct(t.Context(), "act-1", 1)
	require.NoError(t, err)
	requireWithin(t, 3000, got, 0.02)
}

func BenchmarkSketchesAdd(b *testing.B) {
	s := connector.NewSketches(nil, nil)
	keys := make([]string, 4096)
	for i := range keys {
		keys[i] = fmt.Sprintf("%064x", i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s.Add("act-1", keys[i%len(keys)])
		i++
	}
}
