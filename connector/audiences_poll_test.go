package connector_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/connector"
	"github.com/cohort-connector/cohort-connector/destinations"
)

// gauge reads one series of a gauge; ok is false when it is absent.
func gauge(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue metrics
				}
			}
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

func TestAudiencePoll_readsStatusAndSizeIntoRecordAndMetrics(t *testing.T) {
	e := newStateEnv(t)
	api := newFakeAudienceAPI(acctA)
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	sketches := connector.NewSketches(e.kv, func() time.Time { return now })
	r := e.replica("replica-1", api, func(o *connector.AudienceOptions) {
		o.Sketches = sketches
		o.Now = func() time.Time { return now }
	})
	a := eventsActivation("act-1", "c1")
	active := []connector.ActiveAudience{{Activation: a, AdAccountID: acctA, TagID: tagDefault}}
	for i := range 500 {
		sketches.Add(a.ID, fmt.Sprintf("user-%d", i))
	}
	require.NoError(t, sketches.Flush(t.Context()))
	id := map[string]string{"activation_id": a.ID}
	status := func(s string) float64 {
		v, ok := gauge(t, r.reg, "cohort_connector_audience_status", map[string]string{"activation_id": a.ID, "status": s})
		require.True(t, ok, "status %s pre-initialised", s)
		return v
	}

	r.m.Poll(t.Context(), active)
	rec := e.record(a.ID)
	require.Equal(t, destinations.AudienceInitializing, rec.Status)
	require.Equal(t, now, rec.PolledAt)
	require.Equal(t, []float64{0, 1, 0}, []float64{status("READY"), status("INITIALIZING"), status("TOO_SMALL")})
	users, _ := gauge(t, r.reg, "cohort_connector_audience_users_sent", id)
	require.InDelta(t, 500, users, 10)
	_, ok := gauge(t, r.reg, "cohort_connector_match_rate_ratio", id)
	require.False(t, ok, "no match rate before Pinterest reports a size")

	api.set(acctA, rec.AudienceID, destinations.AudienceTooSmall, 60)
	r.m.Poll(t.Context(), active)
	r.m.Poll(t.Context(), active)
	rec = e.record(a.ID)
	require.Equal(t, destinations.AudienceTooSmall, rec.Status)
	require.Equal(t, int64(60), rec.Size)
	require.Len(t, r.logs.lines("audience too small"), 1, "warned once per change")
	require.Equal(t, []float64{0, 0, 1}, []float64{status("READY"), status("INITIALIZING"), status("TOO_SMALL")})

	api.set(acctA, rec.AudienceID, destinations.AudienceReady, 300)
	api.eqs[acctA] = "GOOD"
	r.m.Poll(t.Context(), active)
	size, _ := gauge(t, r.reg, "cohort_connector_audience_size", id)
	require.Equal(t, 300.0, size)
	ratio, _ := gauge(t, r.reg, "cohort_connector_match_rate_ratio", id)
	require.InDelta(t, 0.6, ratio, 0.02)
	good, _ := gauge(t, r.reg, "cohort_connector_event_quality", map[string]string{"ad_account_id": acctA, "status": "GOOD"})
	fair, ok := gauge(t, r.reg, "cohort_connector_event_quality", map[string]string{"ad_account_id": acctA, "status": "FAIR"})
	require.Equal(t, []float64{1, 0}, []float64{good, fair})
	require.True(t, ok)
	_, ok = gauge(t, r.reg, "cohort_connector_event_quality", map[string]string{"ad_account_id": acctB, "status": "GOOD"})
	require.False(t, ok, "an account without OAuth has no event quality")
	recs, err := r.m.Records(t.Context())
	require.NoError(t, err)
	require.Len(t, recs, 1)
	require.Equal(t, int64(300), recs[0].Size)

	t.Run("a disabled activation is forgotten, its audience left in Pinterest", func(t *testing.T) {
		r.m.Poll(t.Context(), nil)
		r.m.Poll(t.Context(), nil) // said once, not at every poll
		require.Len(t, r.logs.lines(fmt.Sprintf("audience %s of activation act-1 left in Pinterest", rec.AudienceID)), 1)
		recs, err := r.m.Records(t.Context())
		require.NoError(t, err)
		require.Len(t, recs, 1, "the record stays, marked left, for the CLI")
		require.Equal(t, "left", recs[0].State)
		require.Equal(t, rec.AudienceID, recs[0].AudienceID)
		_, ok := gauge(t, r.reg, "cohort_connector_audience_size", id)
		require.False(t, ok)
		require.Len(t, api.audiences(acctA), 1)

		r.m.Poll(t.Context(), active)
		require.Equal(t, rec.AudienceID, e.record(a.ID).AudienceID, "re-enabled: adopted again by name")
	})
}

func TestAudienceRun_pollsAtStartAndOnWake(t *testing.T) {
	e := newStateEnv(t)
	api := newFakeAudienceAPI(acctA)
	r := e.replica("replica-1", api, nil)
	a := eventsActivation("act-1", "c1")
	active := make(chan []connector.ActiveAudience, 1)
	active <- nil
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() {
		done <- r.m.Run(ctx, func() []connector.ActiveAudience { return <-active })
	}()
	active <- []connector.ActiveAudience{{Activation: a, AdAccountID: acctA, TagID: tagDefault}}
	r.m.Wake()
	require.Eventually(t, func() bool {
		recs, err := r.m.Records(t.Context())
		return err == nil && len(recs) == 1 && recs[0].State == "ready"
	}, 5*time.Second, 5*time.Millisecond)
	cancel()
	close(active) // a pass under way sees no activation, and ends
	require.NoError(t, <-done)
}

// A pass that could not ensure an audience (the account refused, say a
// token endpoint down at startup) is tried again within seconds, not at
// the next PollInterval (an hour).
func TestAudienceRun_retriesATroubledPassSoon(t *testing.T) {
	e := newStateEnv(t)
	api := newFakeAudienceAPI() // no account yet: every call is refused (403)
	r := e.replica("replica-1", api, nil)
	a := eventsActivation("act-1", "c1")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() {
		done <- r.m.Run(ctx, func() []connector.ActiveAudience {
			return []connector.ActiveAudience{{Activation: a, AdAccountID: acctA, TagID: tagDefault}}
		})
	}()
	require.Eventually(t, func() bool { return r.m.Checks()[0].State == connector.CheckWarn }, 5*time.Second, 5*time.Millisecond)
	api.mu.Lock()
	api.accounts[acctA] = &fakeAccount{}
	api.mu.Unlock()
	require.Eventually(t, func() bool {
		recs, err := r.m.Records(t.Context())
		return err == nil && len(recs) == 1 && recs[0].State == "ready"
	}, 10*time.Second, 20*time.Millisecond, "created on the retry, without a Wake")
	cancel()
	require.NoError(t, <-done)
}
