package connector

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/destinations"
)

// stateBucket starts an embedded JetStream server and returns a KV bucket
// on it, with its JetStream context.
func stateBucket(t *testing.T) (jetstream.JetStream, jetstream.KeyValue) {
	t.Helper()
	srv, err := server.NewServer(&server.Options{JetStream: true, Port: -1, Host: "127.0.0.1",
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	require.NoError(t, err)
	go srv.Start()
	require.True(t, srv.ReadyForConnections(10*time.Second))
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	nc, err := nats.Connect(srv.ClientURL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	kv, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "STATE"})
	require.NoError(t, err)
	return js, kv
}

func listItem(user string, action cohorts.Action, ts time.Time, lists ...string) destinations.Item {
	return destinations.Item{Membership: cohorts.Membership{UserID: user, CohortID: "c1", Action: action, TS: ts},
		CustomerLists: lists, ListsOnly: true}
}

// TestAppliedStoreDropsOlderChangesAcrossARestart: once a change of a user
// was applied to a list, an older change of that user is dropped for that
// list, also by a new store (a restarted daemon, empty memory) reading the
// bucket; the same change again, a newer one, or another list still go.
func TestAppliedStoreDropsOlderChangesAcrossARestart(t *testing.T) {
	js, kv := stateBucket(t)
	t0 := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	first := newAppliedStore(js, kv)
	exit := listItem("u1", cohorts.ActionExit, t0.Add(time.Minute), "100")
	items := []destinations.Item{exit}
	superseded, lists, err := first.drop(t.Context(), items)
	require.NoError(t, err)
	require.Equal(t, []bool{false}, superseded, "nothing applied yet")
	require.NoError(t, first.record(items, []bool{true}, lists))

	restarted := newAppliedStore(js, kv)
	batch := []destinations.Item{
		listItem("u1", cohorts.ActionEnter, t0, "100"),                 // older than the applied exit
		listItem("u1", cohorts.ActionExit, t0.Add(time.Minute), "100"), // the same change again
		listItem("u1", cohorts.ActionEnter, t0.Add(2*time.Minute), "100"),
		listItem("u1", cohorts.ActionEnter, t0, "100", "200"), // older for 100 only
		listItem("u2", cohorts.ActionEnter, t0, "100"),
	}
	superseded, _, err = restarted.drop(t.Context(), batch)
	require.NoError(t, err)
	require.Equal(t, []bool{true, false, false, false, false}, superseded)
	require.Empty(t, batch[0].CustomerLists)
	require.Equal(t, []string{"200"}, batch[3].CustomerLists, "list 200 never had u1")
}

// TestAppliedStoreRecordsOnlyProcessedItems: an item Pinterest did not take
// leaves no applied time, so its older change is not dropped later.
func TestAppliedStoreRecordsOnlyProcessedItems(t *testing.T) {
	js, kv := stateBucket(t)
	t0 := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	s := newAppliedStore(js, kv)
	require.NoError(t, s.record([]destinations.Item{listItem("u1", cohorts.ActionExit, t0, "100")}, []bool{false}, listBatch{}))
	_, err := kv.Get(t.Context(), appliedKey("100", "u1"))
	require.ErrorIs(t, err, jetstream.ErrKeyNotFound)
	batch := []destinations.Item{listItem("u1", cohorts.ActionEnter, t0.Add(-time.Hour), "100")}
	superseded, _, err := newAppliedStore(js, kv).drop(t.Context(), batch)
	require.NoError(t, err)
	require.Equal(t, []bool{false}, superseded)
}

// TestListMembersCountsEntersMinusExitsAcrossReplicas: two stores (two
// replicas) apply changes to one list; the member count in the bucket is
// the users whose latest applied change is an enter, whatever the
// redeliveries and older changes in between.
func TestListMembersCountsEntersMinusExitsAcrossReplicas(t *testing.T) {
	js, kv := stateBucket(t)
	t0 := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	replicas := []*appliedStore{newAppliedStore(js, kv), newAppliedStore(js, kv)}
	apply := func(s *appliedStore, it destinations.Item) {
		batch := []destinations.Item{it}
		superseded, lists, err := s.drop(t.Context(), batch)
		require.NoError(t, err)
		require.NoError(t, s.record(batch, []bool{!superseded[0]}, lists))
	}
	// u0..u9 enter on replica 0; u0..u3 exit on replica 1; u0 is redelivered
	// its enter (older: dropped) and u5 its enter again (same: no change).
	for u := range 10 {
		apply(replicas[0], listItem(fmt.Sprint("u", u), cohorts.ActionEnter, t0, "100"))
	}
	for u := range 4 {
		apply(replicas[1], listItem(fmt.Sprint("u", u), cohorts.ActionExit, t0.Add(time.Minute), "100"))
	}
	apply(replicas[1], listItem("u0", cohorts.ActionEnter, t0, "100"))
	apply(replicas[0], listItem("u5", cohorts.ActionEnter, t0, "100"))
	for _, s := range replicas {
		require.NoError(t, s.flushMembers(t.Context()))
	}
	n, err := replicas[0].ListMembers(t.Context(), "100")
	require.NoError(t, err)
	require.Equal(t, int64(6), n)
}

// A batch whose context ends while its applied changes are read (a
// shutdown's drain running out) is a shutdown, not a fault of the account:
// the account must not be marked failing and its batches parked for it.
func TestListApplierCallsAnEndedContextAShutdown(t *testing.T) {
	js, kv := stateBucket(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := NewListApplier(js, kv).Send(ctx, nil, "1",
		[]destinations.Item{listItem("u1", cohorts.ActionEnter, time.Now(), "100")})
	require.Error(t, err)
	require.Equal(t, destinations.ReasonShutdown, destinations.ReasonOf(err), err.Error())
}

// A batch whose every list change is older than what its list reflects
// makes no call: its items count as processed, and the Result says the
// destination did not answer (nothing is said of the account's health).
func TestListApplierSaysWhenItCalledNobody(t *testing.T) {
	js, kv := stateBucket(t)
	t0 := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	s := newAppliedStore(js, kv)
	newer := []destinations.Item{listItem("u1", cohorts.ActionExit, t0.Add(time.Minute), "100")}
	_, lists, err := s.drop(t.Context(), newer)
	require.NoError(t, err)
	require.NoError(t, s.record(newer, []bool{true}, lists))

	// dest is nil: calling it would panic.
	res, err := (&ListApplier{s}).Send(t.Context(), nil, "1",
		[]destinations.Item{listItem("u1", cohorts.ActionEnter, t0, "100")})
	require.NoError(t, err)
	assert.Equal(t, []destinations.ItemResult{{Processed: true}}, res.Items)
	assert.False(t, res.Answered)
}
