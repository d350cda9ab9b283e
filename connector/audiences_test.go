package connector_test

import (
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/connector"
	"github.com/cohort-connector/cohort-connector/destinations"
)

// stateEnv is an embedded JetStream server with a state bucket.
type stateEnv struct {
	t  *testing.T
	kv jetstream.KeyValue
}

func newStateEnv(t *testing.T) *stateEnv {
	t.Helper()
	_, js := embeddedJetStream(t)
	kv, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "COHORT_CONNECTOR_STATE"})
	require.NoError(t, err)
	return &stateEnv{t: t, kv: kv}
}

// replica is one AudienceManager (a process) on the env's bucket.
type replica struct {
	m    *connector.AudienceManager
	reg  *prometheus.Registry
	logs *logBuffer
}

func (e *stateEnv) replica(owner string, api destinations.AudienceAPI, tweak func(*connector.AudienceOptions)) *replica {
	e.t.Helper()
	r := &replica{reg: prometheus.NewRegistry(), logs: &logBuffer{}}
	o := connector.AudienceOptions{
		KV: e.kv, API: api, Registerer: r.reg, Owner: owner,
		Accounts: map[string]bool{acctA: true, acctB: false},
		Logger:   zerolog.New(zerolog.MultiLevelWriter(r.logs, zerolog.NewTestWriter(e.t))),
		LockPoll: time.Millisecond,
	}
	if tweak != nil {
		tweak(&o)
	}
	var err error
	r.m, err = connector.NewAudienceManager(o)
	require.NoError(e.t, err)
	return r
}

// record reads the stored record of an activation.
func (e *stateEnv) record(activationID string) connector.Record {
	e.t.Helper()
	entry, err := e.kv.Get(e.t.Context(), "audience."+activationID)
	require.NoError(e.t, err)
	var r connector.Record
	require.NoError(e.t, json.Unmarshal(entry.Value(), &r))
	return r
}

func eventsActivation(id, cohort string) cohorts.Activation {
	return cohorts.Activation{ID: id, CohortID: cohort, Destination: cohorts.DestinationPinterest, Enabled: true, Mode: cohorts.ModeEvents}
}

func TestAudienceEnsure_twoReplicasAtOnceCreateOneAudience(t *testing.T) {
	e := newStateEnv(t)
	api := newFakeAudienceAPI(acctA)
	entered := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	api.onCreate = func() {
		once.Do(func() { close(entered) })
		<-release
	}
	r1, r2 := e.replica("replica-1", api, nil), e.replica("replica-2", api, nil)
	a := eventsActivation("brand-a-c123", "c123")

	type result struct {
		rec connector.Record
		err error
	}
	results := make(chan result, 2)
	for _, r := range []*replica{r1, r2} {
		go func() {
			rec, err := r.m.Ensure(t.Context(), a, acctA, tagDefault)
			results <- result{rec, err}
		}()
	}
	<-entered // one replica holds the lock and is creating
	close(release)
	got := []result{<-results, <-results}
	require.NoError(t, got[0].err)
	require.NoError(t, got[1].err)
	require.Equal(t, got[0].rec.AudienceID, got[1].rec.AudienceID)
	creations, lists := api.counts()
	require.Equal(t, 1, creations, "exactly one audience created")
	require.Equal(t, 1, lists, "the loser waited for the winner's record rather than listing")
	require.Len(t, api.audiences(acctA), 1)

	au := api.audiences(acctA)[0]
	require.Equal(t, connector.AudienceName(a.ID, a.CohortID), au.Name)
	require.Equal(t, destinations.AudienceVisitor, au.Type)
	require.Equal(t, destinations.AudienceRule{
		VisitorSourceID: tagDefault, RetentionDays: 180, Event: "custom", IngestionSource: []string{"conversions_api"},
		EventData: map[string]any{
			"content_ids":  map[string]any{"=": []string{"c123"}},
			"content_name": map[string]any{"=": []string{"cohort_enter"}},
		},
	}, au.Rule)

	rec := e.record(a.ID)
	require.Equal(t, "ready", rec.State)
	require.Equal(t, au.ID, rec.AudienceID)
	require.Equal(t, "c123", rec.CohortID)
	require.Equal(t, acctA, rec.AdAccountID)
	require.Equal(t, destinations.AudienceVisitor, rec.AudienceType)
	require.False(t, rec.CreatedAt.IsZero())
}

func TestAudienceEnsure_aRestartReusesTheRecord(t *testing.T) {
	e := newStateEnv(t)
	api := newFakeAudienceAPI(acctA)
	a := eventsActivation("act-1", "c1")
	first, err := e.replica("replica-1", api, nil).m.Ensure(t.Context(), a, acctA, tagDefault)
	require.NoError(t, err)

	again, err := e.replica("replica-1", api, nil).m.Ensure(t.Context(), a, acctA, tagDefault)
	require.NoError(t, err)
	require.Equal(t, first, again)
	creations, lists := api.counts()
	require.Equal(t, 1, creations)
	require.Equal(t, 1, lists, "the restarted replica read its record and called nothing")
}

func TestAudienceEnsure_aCreationWithoutRecordIsAdoptedNotDuplicated(t *testing.T) {
	e := newStateEnv(t)
	api := newFakeAudienceAPI(acctA)
	a := eventsActivation("act-1", "c1")

	// The audience is created, but the answer is lost: no record.
	_, err := e.replica("replica-1", lostResponse{api}, nil).m.Ensure(t.Context(), a, acctA, tagDefault)
	require.Error(t, err)
	require.Len(t, api.audiences(acctA), 1)
	created := api.audiences(acctA)[0].ID

	t.Run("a retry adopts it", func(t *testing.T) {
		rec, err := e.replica("replica-1", api, nil).m.Ensure(t.Context(), a, acctA, tagDefault)
		require.NoError(t, err)
		require.Equal(t, created, rec.AudienceID)
		require.Len(t, api.audiences(acctA), 1)
	})

	// A process that died holding the lock: the record is "creating".
	b := eventsActivation("act-2", "c2")
	_, err = e.kv.Put(t.Context(), "audience.act-2", []byte(`{"state":"creating","owner":"replica-1","activation_id":"act-2"}`))
	require.NoError(t, err)
	pre, err := api.CreateAudience(t.Context(), acctA, destinations.Audience{
		Name: connector.AudienceName(b.ID, b.CohortID), Type: destinations.AudienceVisitor,
		Rule: destinations.AudienceRule{VisitorSourceID: tagDefault, RetentionDays: 180},
	})
	require.NoError(t, err)

	t.Run("the same replica restarted takes its own lock over at once and adopts", func(t *testing.T) {
		rec, err := e.replica("replica-1", api, nil).m.Ensure(t.Context(), b, acctA, tagDefault)
		require.NoError(t, err)
		require.Equal(t, pre.ID, rec.AudienceID)
		require.Len(t, api.audiences(acctA), 2)
	})

	t.Run("another replica takes a dead lock over once it has not changed for the takeover age", func(t *testing.T) {
		c := eventsActivation("act-3", "c3")
		_, err := e.kv.Put(t.Context(), "audience.act-3", []byte(`{"state":"creating","owner":"replica-9","activation_id":"act-3"}`))
		require.NoError(t, err)
		var ticks atomic.Int64 // every reading of the clock is 10s later
		clock := func() time.Time { return time.Unix(1_800_000_000+10*ticks.Add(1), 0) }
		r := e.replica("replica-2", api, func(o *connector.AudienceOptions) { o.Now = clock })
		rec, err := r.m.Ensure(t.Context(), c, acctA, tagDefault)
		require.NoError(t, err)
		require.NotEmpty(t, rec.AudienceID)
		require.GreaterOrEqual(t, ticks.Load(), int64(12), "waited two minutes of its clock")
		require.Len(t, r.logs.lines("audience record taken over"), 1)
	})
}

func TestAudienceEnsure_customerListAndActalike(t *testing.T) {
	e := newStateEnv(t)
	api := newFakeAudienceAPI(acctA)
	a := eventsActivation("act-cl", "c9")
	a.Mode = cohorts.ModeCustomerList
	a.Actalike = &cohorts.Actalike{Country: "US", Percentage: 5}
	r := e.replica("replica-1", api, nil)
	rec, err := r.m.Ensure(t.Context(), a, acctA, tagDefault)
	require.NoError(t, err)
	require.NotEmpty(t, rec.CustomerListID)
	require.Equal(t, destinations.AudienceCustomerList, rec.AudienceType)
	require.NotEmpty(t, rec.ActalikeAudienceID)

	main, err := api.GetAudience(t.Context(), acctA, rec.AudienceID)
	require.NoError(t, err)
	require.Equal(t, rec.CustomerListID, main.Rule.CustomerListID)
	act, err := api.GetAudience(t.Context(), acctA, rec.ActalikeAudienceID)
	require.NoError(t, err)
	require.Equal(t, destinations.AudienceActalike, act.Type)
	require.Equal(t, []string{rec.AudienceID}, act.Rule.SeedIDs)

	t.Run("a changed actalike adds one, keeps the main audience and says what is left", func(t *testing.T) {
		a.Actalike = &cohorts.Actalike{Country: "GB", Percentage: 3}
		again, err := r.m.Ensure(t.Context(), a, acctA, tagDefault)
		require.NoError(t, err)
		require.Equal(t, rec.AudienceID, again.AudienceID)
		require.Equal(t, rec.CustomerListID, again.CustomerListID)
		require.NotEqual(t, rec.ActalikeAudienceID, again.ActalikeAudienceID)
		require.Len(t, api.audiences(acctA), 3)
		require.Len(t, r.logs.lines("audience "+rec.ActalikeAudienceID+" of activation act-cl left in Pinterest"), 1)
	})
}

func TestAudienceEnsure_anAccountWithoutOAuthIsAStateNotACrash(t *testing.T) {
	e := newStateEnv(t)
	api := newFakeAudienceAPI(acctA, acctB)
	r := e.replica("replica-1", api, nil)
	_, err := r.m.Ensure(t.Context(), eventsActivation("act-b", "c1"), acctB, tagB)
	require.ErrorIs(t, err, connector.ErrNoOAuth)
	require.ErrorContains(t, err, "ad account "+acctB+" has no OAuth app configured (CONNECTOR_ACCOUNT_<NAME>_APP_ID…): audiences are not managed")

	r.m.Poll(t.Context(), []connector.ActiveAudience{{Activation: eventsActivation("act-b", "c1"), AdAccountID: acctB, TagID: tagB}})
	checks := r.m.Checks()
	require.Equal(t, connector.CheckWarn, checks[0].State)
	require.Contains(t, checks[0].Detail, "act-b: ")
	creations, _ := api.counts()
	require.Zero(t, creations)
}

func TestAudienceEnsure_aReplicaThatLosesTheCompareAndSetUsesTheWinnersAudience(t *testing.T) {
	e := newStateEnv(t)
	api := newFakeAudienceAPI(acctA)
	a := eventsActivation("act-1", "c1")
	old, err := e.replica("replica-1", api, nil).m.Ensure(t.Context(), a, acctA, tagDefault)
	require.NoError(t, err)

	// The activation moves to cohort c2: its record no longer fits. Between
	// replica 1's read and its takeover, replica 2 replaces the record.
	moved := a
	moved.CohortID = "c2"
	r2 := e.replica("replica-2", api, nil)
	var winner connector.Record
	stale := &staleKV{KeyValue: e.kv, key: "audience.act-1", meanwhile: func() {
		var err error
		winner, err = r2.m.Ensure(t.Context(), moved, acctA, tagDefault)
		require.NoError(t, err)
	}}
	r1 := e.replica("replica-1", api, func(o *connector.AudienceOptions) { o.KV = stale })
	got, err := r1.m.Ensure(t.Context(), moved, acctA, tagDefault)
	require.NoError(t, err)
	require.Equal(t, winner.AudienceID, got.AudienceID)
	require.NotEqual(t, old.AudienceID, got.AudienceID)
	require.Len(t, api.audiences(acctA), 2, "c1's, left in Pinterest, and c2's")
	require.Len(t, r2.logs.lines("audience "+old.AudienceID+" of activation act-1 left in Pinterest"), 1)
	require.Empty(t, r1.logs.lines("left in Pinterest"))
}
