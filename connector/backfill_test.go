package connector_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/connector"
	"github.com/cohort-connector/cohort-connector/destinations"
)

// backfillEnv is an embedded JetStream server with the input stream and the
// backfill bucket.
type backfillEnv struct {
	t      *testing.T
	js     jetstream.JetStream
	stream jetstream.Stream
	kv     jetstream.KeyValue
	log    zerolog.Logger
}

const bfCohort = "c123"

var bfActivation = cohorts.Activation{ID: "brand-a-c123", CohortID: bfCohort, Destination: "pinterest", Enabled: true, Mode: cohorts.ModeEvents}

func newBackfillEnv(t *testing.T) *backfillEnv {
	t.Helper()
	_, js := embeddedJetStream(t)
	e := &backfillEnv{t: t, js: js, log: zerolog.New(zerolog.NewTestWriter(t)).With().Timestamp().Logger()}
	topo := connector.Topology{Stream: "COHORTS", Subjects: []string{subjectPrefix + ">"}}
	var err error
	e.stream, err = e.js.CreateStream(t.Context(), topo.StreamConfig())
	require.NoError(t, err)
	e.kv, err = e.js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "COHORT_CONNECTOR_STATE"})
	require.NoError(t, err)
	return e
}

func (e *backfillEnv) publishRaw(subject string, body []byte) uint64 {
	e.t.Helper()
	ack, err := e.js.Publish(e.t.Context(), subject, body)
	require.NoError(e.t, err)
	return ack.Sequence
}

func (e *backfillEnv) publish(m cohorts.Membership) uint64 {
	e.t.Helper()
	body, err := json.Marshal(m)
	require.NoError(e.t, err)
	return e.publishRaw(subjectPrefix+m.CohortID, body)
}

// options are the Backfill options of bfActivation with a recording Send.
func (e *backfillEnv) options(rec *recorder) connector.BackfillOptions {
	return connector.BackfillOptions{
		JS: e.js, Stream: "COHORTS", Subject: connector.BackfillSubject(subjectPrefix+">", bfCohort), KV: e.kv,
		Activation: bfActivation, Send: rec.send, BatchSize: 100, Logger: e.log,
		RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond, Heartbeat: 10 * time.Millisecond,
	}
}

func (e *backfillEnv) state() connector.BackfillProgress {
	e.t.Helper()
	p, _, err := connector.ReadBackfill(e.t.Context(), e.kv, bfActivation.ID)
	require.NoError(e.t, err)
	return p
}

// recorder is the destination side: it records every batch Send was given,
// and what it took. hook, if set, runs first and may refuse the batch.
type recorder struct {
	mu     sync.Mutex
	calls  [][]destinations.Item
	taken  []destinations.Item
	hook   func(ctx context.Context, call int, items []destinations.Item) error
	callsN atomic.Int32
}

func (r *recorder) send(ctx context.Context, items []destinations.Item) error {
	n := int(r.callsN.Add(1))
	r.mu.Lock()
	r.calls = append(r.calls, slices.Clone(items))
	r.mu.Unlock()
	if r.hook != nil {
		if err := r.hook(ctx, n, items); err != nil {
			return err
		}
	}
	r.mu.Lock()
	r.taken = append(r.taken, items...)
	r.mu.Unlock()
	return nil
}

func (r *recorder) takenIDs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.taken))
	for i, it := range r.taken {
		out[i] = it.EventID
	}
	return out
}

func (r *recorder) attempted() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.calls {
		n += len(c)
	}
	return n
}

// identifiers of user i: every 7th has none matchable (an external id only).
func bfIdentifiers(i int) cohorts.Identifiers {
	switch {
	case i%7 == 0:
		return cohorts.Identifiers{ExternalID: fmt.Sprintf("ext-%d", i)}
	case i%3 == 0:
		return cohorts.Identifiers{MAID: fmt.Sprintf("maid-%d", i)}
	default:
		return cohorts.Identifiers{Email: fmt.Sprintf(" User%d@Example.com ", i)}
	}
}

// members publishes one enter for each of n users u00000.. and returns the
// expected event ids (matchable users only) in user order.
func (e *backfillEnv) members(n int) []string {
	e.t.Helper()
	var ids []string
	for i := range n {
		m := cohorts.Membership{UserID: fmt.Sprintf("u%05d", i), CohortID: bfCohort, Action: cohorts.ActionEnter,
			TS: testEpoch.Add(time.Duration(i) * time.Millisecond), Identifiers: cohorts.Identifiers{Email: fmt.Sprintf("u%d@example.com", i)}}
		e.publish(m)
		ids = append(ids, m.EventID())
	}
	return ids
}

// The rebuilt set is the state the live path builds: per user the latest
// change (by ts, then stream order), enters sent once, in user order, with
// the same event id and hashed identifiers as the live path's item.
func TestBackfillSendsTheLatestEnterOfEveryUserAsTheLivePathWould(t *testing.T) {
	e := newBackfillEnv(t)
	rnd := rand.New(rand.NewPCG(8, 5))

	// A message of another cohort first, deleted: the history is trimmed.
	seq := e.publishRaw(subjectPrefix+"other", []byte(`{}`))
	require.NoError(t, e.stream.DeleteMsg(t.Context(), seq))

	type latest struct {
		m   cohorts.Membership
		seq uint64
	}
	model := map[string]latest{}
	apply := func(m cohorts.Membership, seq uint64) {
		if prev, ok := model[m.UserID]; !ok || m.TS.After(prev.m.TS) || (m.TS.Equal(prev.m.TS) && seq > prev.seq) {
			model[m.UserID] = latest{m, seq}
		}
	}
	// 6000 random changes of 2000 users, out of ts order and with equal
	// ts, some undecodable, some restricted to this activation or another
	// one, some of another cohort; published at once.
	const users = 2000
	type change struct {
		subject string
		body    []byte
		m       *cohorts.Membership // nil: undecodable
		seq     uint64
	}
	var changes []*change
	add := func(subject string, body []byte, m *cohorts.Membership) {
		if m != nil {
			var err error
			body, err = json.Marshal(*m)
			require.NoError(t, err)
		}
		changes = append(changes, &change{subject: subject, body: body, m: m})
	}
	for range 6000 {
		u := rnd.IntN(users)
		m := cohorts.Membership{UserID: fmt.Sprintf("user-%d", u), CohortID: bfCohort, Action: cohorts.ActionEnter,
			TS:          testEpoch.Add(time.Duration(rnd.IntN(3000)) * time.Second),
			Identifiers: bfIdentifiers(u)}
		if rnd.IntN(2) == 0 {
			m.Action = cohorts.ActionExit
		}
		switch rnd.IntN(40) {
		case 0:
			add(subjectPrefix+bfCohort, []byte(`{"user_id":"broken"`), nil)
			continue
		case 1:
			m.ActivationIDs = []string{"another-activation"} // not this activation's change
		case 2:
			m.ActivationIDs = []string{"another-activation", bfActivation.ID}
		case 3:
			other := m
			other.CohortID = "c999"
			add(subjectPrefix+other.CohortID, nil, &other) // another subject: not read
		}
		add(subjectPrefix+bfCohort, nil, &m)
	}
	acks := make([]jetstream.PubAckFuture, len(changes))
	for i, c := range changes {
		var err error
		acks[i], err = e.js.PublishAsync(c.subject, c.body)
		require.NoError(t, err)
	}
	for i, a := range acks {
		select {
		case ack := <-a.Ok():
			changes[i].seq = ack.Sequence
		case err := <-a.Err():
			t.Fatal(err)
		case <-time.After(waitFor):
			t.Fatal("publishing timed out")
		}
	}
	// What comes after upto is the live path's: not backfilled.
	upto := changes[5000].seq
	var undecodable, ignored uint64
	for _, c := range changes {
		seq := c.seq
		switch {
		case seq > upto || c.subject != subjectPrefix+bfCohort:
		case c.m == nil:
			undecodable++
		case len(c.m.ActivationIDs) > 0 && !slices.Contains(c.m.ActivationIDs, bfActivation.ID):
			ignored++
		default:
			apply(*c.m, seq)
		}
	}
	var want []destinations.Item
	members, skipped := 0, 0
	for _, l := range model {
		if l.m.Action != cohorts.ActionEnter {
			continue
		}
		members++
		h := l.m.Identifiers.Hash()
		if !h.Matchable() {
			skipped++
			continue
		}
		m := l.m
		m.ActivationIDs = nil
		want = append(want, destinations.Item{EventID: m.EventID(), Membership: m, Hashed: h})
	}
	slices.SortFunc(want, func(a, b destinations.Item) int { return strings.Compare(a.Membership.UserID, b.Membership.UserID) })
	require.Greater(t, members, 500)
	require.Greater(t, skipped, 50)

	rec := &recorder{}
	o := e.options(rec)
	o.Upto = upto
	p, err := connector.Backfill(t.Context(), o)
	require.NoError(t, err)

	require.Equal(t, want, rec.taken, "exactly the members, once each, in user order, as the live path builds them")
	for _, c := range rec.calls {
		require.LessOrEqual(t, len(c), 100)
	}
	assert.Equal(t, connector.BackfillDone, p.State)
	assert.Equal(t, members, p.Members)
	assert.Equal(t, len(want), p.Sent)
	assert.Equal(t, skipped, p.Skipped)
	assert.Equal(t, upto, p.Upto)
	assert.True(t, p.HistoryTrimmed)
	assert.Equal(t, uint64(2), p.FirstSeq)
	assert.Equal(t, len(model), p.Users)
	assert.Positive(t, undecodable)
	assert.Equal(t, undecodable, p.Undecodable)
	assert.Positive(t, ignored)
	assert.Equal(t, ignored, p.Ignored)
	assert.Equal(t, p, e.state(), "the final progress is stored")
	assert.Empty(t, p.Owner)
}

// A backfill cancelled through its key stops, keeps its progress, and the
// next run resumes after the last batch taken; a backfill whose context
// ends (Ctrl-C, shutdown) does the same. Overall each member is taken once,
// and only the batch in flight at a stop is sent again.
func TestACancelledBackfillResumesWhereItStopped(t *testing.T) {
	e := newBackfillEnv(t)
	want := e.members(1000)

	// Run 1: cancelled through the key while its third batch is in flight.
	rec := &recorder{}
	rec.hook = func(ctx context.Context, call int, _ []destinations.Item) error {
		if call != 3 {
			return nil
		}
		_, running, err := connector.CancelBackfill(context.Background(), e.kv, bfActivation.ID)
		if err != nil || !running {
			return fmt.Errorf("cancel: running %v, %v", running, err)
		}
		<-ctx.Done() // the run notices within its heartbeat and cancels the call
		return ctx.Err()
	}
	p, err := connector.Backfill(t.Context(), e.options(rec))
	require.ErrorIs(t, err, connector.ErrBackfillCancelled)
	assert.Equal(t, connector.BackfillCancelled, p.State)
	assert.Equal(t, 200, p.Sent)
	assert.Equal(t, "u00199", p.LastUser)
	assert.Equal(t, p, e.state())
	require.Equal(t, want[:200], rec.takenIDs())
	assert.Equal(t, 300, rec.attempted())

	// Run 2: its context is cancelled while batch 5 (users 400-499) is in flight.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	rec2 := &recorder{}
	rec2.hook = func(ctx context.Context, call int, _ []destinations.Item) error {
		if call == 3 {
			cancel()
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}
	p, err = connector.Backfill(ctx, e.options(rec2))
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, connector.BackfillCancelled, p.State)
	assert.Equal(t, 400, p.Sent)
	assert.Equal(t, 2, p.Runs)
	require.Equal(t, want[200:400], rec2.takenIDs())
	assert.Equal(t, 300, rec2.attempted())

	// Run 3 finishes.
	rec3 := &recorder{}
	p, err = connector.Backfill(t.Context(), e.options(rec3))
	require.NoError(t, err)
	assert.Equal(t, connector.BackfillDone, p.State)
	assert.Equal(t, 1000, p.Sent)
	assert.Equal(t, 1000, p.Members)
	assert.Equal(t, 3, p.Runs)
	require.Equal(t, want[400:], rec3.takenIDs())
	assert.Equal(t, 600, rec3.attempted())

	all := slices.Concat(rec.takenIDs(), rec2.takenIDs(), rec3.takenIDs())
	require.Equal(t, want, all, "each member taken exactly once overall")
	assert.Equal(t, 1000+100+100, rec.attempted()+rec2.attempted()+rec3.attempted(),
		"nothing sent twice but the batch in flight at each stop")

	// Nothing left to cancel; a finished backfill runs anew from the start.
	_, running, err := connector.CancelBackfill(t.Context(), e.kv, bfActivation.ID)
	require.NoError(t, err)
	assert.False(t, running)
	rec4 := &recorder{}
	p, err = connector.Backfill(t.Context(), e.options(rec4))
	require.NoError(t, err)
	assert.Equal(t, 1000, p.Sent)
	assert.Equal(t, want, rec4.takenIDs())
}

// One backfill per activation at a time: a second run, here or in another
// process, is refused while the first one's heartbeat is fresh, and takes
// over a stale one.
func TestOnlyOneBackfillOfAnActivationRunsAtATime(t *testing.T) {
	e := newBackfillEnv(t)
	want := e.members(300)

	inFlight := make(chan struct{})
	release := make(chan struct{})
	rec := &recorder{}
	rec.hook = func(ctx context.Context, call int, _ []destinations.Item) error {
		if call == 2 {
			close(inFlight)
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
	o1 := e.options(rec)
	o1.Owner = "process-1"
	done := make(chan error, 1)
	go func() {
		_, err := connector.Backfill(t.Context(), o1)
		done <- err
	}()
	<-inFlight

	rec2 := &recorder{}
	o2 := e.options(rec2)
	o2.Owner = "process-2"
	p, err := connector.Backfill(t.Context(), o2)
	require.ErrorIs(t, err, connector.ErrBackfillRunning)
	assert.Contains(t, err.Error(), "process-1")
	assert.Equal(t, "process-1", p.Owner)
	assert.Equal(t, connector.BackfillRunning, p.State)
	assert.Zero(t, rec2.attempted(), "the refused run sends nothing")

	close(release)
	require.NoError(t, <-done)
	assert.Equal(t, want, rec.takenIDs())

	// A run that died (its heartbeat stale) is taken over and resumed.
	stale := e.state()
	stale.State, stale.Owner, stale.Sent, stale.LastUser = connector.BackfillRunning, "dead-process", 100, "u00099"
	stale.Heartbeat = time.Now().Add(-time.Hour)
	data, err := json.Marshal(stale)
	require.NoError(t, err)
	_, err = e.kv.Put(t.Context(), connector.BackfillKey(bfActivation.ID), data)
	require.NoError(t, err)
	rec3 := &recorder{}
	p, err = connector.Backfill(t.Context(), e.options(rec3))
	require.NoError(t, err)
	assert.Equal(t, want[100:], rec3.takenIDs())
	assert.Equal(t, 300, p.Sent)
}

// Progress is reported at most every ProgressEvery, and once at the end.
func TestBackfillProgressIsThrottled(t *testing.T) {
	e := newBackfillEnv(t)
	e.members(3000)
	var clock atomic.Int64 // fake time: every call of Now advances it by 1ms
	base := time.Now()
	now := func() time.Time { return base.Add(time.Duration(clock.Add(1)) * time.Millisecond) }
	var mu sync.Mutex
	var at []time.Time
	var got []connector.BackfillProgress
	o := e.options(&recorder{})
	o.Now = now
	o.ProgressEvery = 500 * time.Millisecond
	o.Heartbeat = time.Hour // only the batches write the key
	o.Progress = func(p connector.BackfillProgress) {
		mu.Lock()
		defer mu.Unlock()
		at = append(at, base.Add(time.Duration(clock.Load())*time.Millisecond))
		got = append(got, p)
	}
	p, err := connector.Backfill(t.Context(), o)
	require.NoError(t, err)
	mu.Lock()
	defer mu.Unlock()
	require.GreaterOrEqual(t, len(got), 4, "3000 messages read at 1ms each report several times")
	for i := 1; i < len(at)-1; i++ {
		assert.GreaterOrEqual(t, at[i].Sub(at[i-1]), o.ProgressEvery, "report %d too soon", i)
	}
	last := got[len(got)-1]
	assert.Equal(t, p, last, "the final progress is reported")
	assert.Equal(t, connector.BackfillDone, last.State)
	assert.Equal(t, 3000, last.Sent)
	assert.Equal(t, uint64(3000), last.Read)
	assert.Equal(t, uint64(3000), last.ReadTotal)
	phases := map[string]bool{}
	for _, g := range got {
		phases[g.Phase] = true
	}
	assert.True(t, phases["read"] && phases["send"], "both phases reported: %v", phases)
}

// A batch Send refuses is retried (the same items) until taken; a permanent
// refusal fails the backfill, which keeps its progress and resumes.
func TestBackfillRetriesARefusedBatchAndStopsOnAPermanentError(t *testing.T) {
	e := newBackfillEnv(t)
	want := e.members(250)
	rec := &recorder{}
	rec.hook = func(_ context.Context, call int, _ []destinations.Item) error {
		switch call {
		case 2, 3:
			return &destinations.Error{Reason: destinations.ReasonServer, StatusCode: 503}
		case 5:
			return &destinations.Error{Reason: destinations.ReasonBadInput, Message: "event too old"}
		}
		return nil
	}
	p, err := connector.Backfill(t.Context(), e.options(rec))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "event too old")
	assert.Equal(t, connector.BackfillFailed, p.State)
	assert.Equal(t, 200, p.Sent)
	assert.Equal(t, p, e.state())
	require.Equal(t, want[:200], rec.takenIDs())
	require.Len(t, rec.calls, 5)
	assert.Equal(t, rec.calls[1], rec.calls[3], "the refused batch is retried as it was")

	rec2 := &recorder{}
	p, err = connector.Backfill(t.Context(), e.options(rec2))
	require.NoError(t, err)
	assert.Equal(t, 250, p.Sent)
	assert.Equal(t, want[200:], rec2.takenIDs())
}

// An empty subject is a backfill with nothing to send; StartBackfill runs
// it in the background and hands the result back.
func TestStartBackfillOfAnEmptyCohort(t *testing.T) {
	e := newBackfillEnv(t)
	e.publishRaw(subjectPrefix+"other", []byte(`{}`))
	rec := &recorder{}
	res := <-connector.StartBackfill(t.Context(), e.options(rec))
	require.NoError(t, res.Err)
	assert.Equal(t, connector.BackfillDone, res.Progress.State)
	assert.Zero(t, res.Progress.Upto)
	assert.Zero(t, rec.attempted())

	_, err := connector.Backfill(t.Context(), connector.BackfillOptions{})
	require.ErrorContains(t, err, "required")
}
