package connector

// Backfill of a newly enabled activation (issue 8 point 5).
//
// When an activation is enabled, the cohort's members from before that
// moment are rebuilt from the input stream's history and sent before the
// activation's live changes. Backfill reads the cohort's subject
// (<prefix><cohort_id>) from the first message up to a fixed stream
// sequence, keeps the latest change of each user (by ts, then stream
// sequence; changes restricted by activation_ids to other activations are
// ignored, as the live path ignores them), and sends one item per user whose
// latest change is an enter, in user id order, through the caller's Send.
//
// # Retention the backfill needs
//
// A backfill can only rebuild what the input stream still holds. It needs
// the stream (CONNECTOR_STREAM) to keep, for every cohort subject, at least
// the latest change of every user:
//   - limits retention (not work-queue or interest retention, which delete
//     a message once the daemon's consumer acknowledged it);
//   - no MaxAge, or a MaxAge longer than a membership lasts: a user who
//     entered before the oldest message kept and never changed since is not
//     rebuilt. The stream the daemon creates keeps 7 days (MaxAge 168h), so
//     by default a backfill rebuilds the members whose latest change is at
//     most 7 days old;
//   - no MaxMsgs, MaxBytes or MaxMsgsPerSubject small enough to discard a
//     user's latest change (MaxMsgsPerSubject applies to the cohort's subject
//     as a whole, not per user: any limit on it can drop a member).
//
// When the stream's first sequence is above 1 (history was trimmed, by age,
// by a limit or by a purge) the backfill still runs, warns in its log and
// reports HistoryTrimmed and FirstSeq in its progress.
//
// # Memory
//
// Rebuilding needs one record per distinct user of the cohort seen in the
// history: the user id, the latest ts and sequence, the action, and the
// identifiers as sent (dropped when the latest change is an exit), about
// 140 bytes plus the ids and identifiers, so roughly 250 MB for a million
// users. It does not grow with the number of changes, only of users.
//
// # State, exclusivity, cancellation and resume
//
// Each backfill keeps its progress ([BackfillProgress], JSON) under the key
// "backfill.<activation_id>" of the state bucket. The key is
// also the lock: a run creates or takes it over by compare-and-set, writes
// its owner and a heartbeat every few seconds, and every later write is a
// compare-and-set at the revision it last wrote. So only one run per
// activation proceeds across processes; a second one gets
// [ErrBackfillRunning]. A heartbeat older than StaleAfter (a crashed
// process) may be taken over.
//
// [CancelBackfill] writes state "cancelled" to the key; the running backfill
// sees its next write refused, reads the key and stops within Heartbeat,
// keeping its progress. Its progress (the last user whose batch Send took)
// is written after every batch, so a new run of the same activation resumes:
// it reads the same history (up to the same sequence) and sends only the
// users after the last one sent. A batch in flight when a run stops is sent
// again by the next run (Pinterest deduplicates on event_id).

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/destinations"
)

// BackfillKey is the key of an activation's backfill progress.
func BackfillKey(activationID string) string { return "backfill." + activationID }

// BackfillState is where a backfill stands.
type BackfillState string

// The states of a backfill.
const (
	BackfillRunning   BackfillState = "running"
	BackfillDone      BackfillState = "done"
	BackfillCancelled BackfillState = "cancelled" // by CancelBackfill, or its context ended: resumable
	BackfillFailed    BackfillState = "failed"    // resumable
)

// Errors of Backfill.
var (
	// ErrBackfillRunning: another run holds the activation's backfill.
	ErrBackfillRunning = errors.New("a backfill of this activation is running elsewhere")
	// ErrBackfillCancelled: CancelBackfill stopped the run.
	ErrBackfillCancelled = errors.New("backfill cancelled")
	// ErrBackfillTakenOver: another run took the key over (this one's
	// heartbeat was stale); this run stopped without writing.
	ErrBackfillTakenOver = errors.New("backfill taken over by another run")
)

// BackfillProgress is a backfill's progress, stored as JSON under its key
// and handed to BackfillOptions.Progress.
type BackfillProgress struct {
	ActivationID string        `json:"activation_id"`
	CohortID     string        `json:"cohort_id"`
	Subject      string        `json:"subject"`
	State        BackfillState `json:"state"`
	// Phase is "read" (rebuilding from history) or "send".
	Phase string `json:"phase"`
	// Owner identifies the run holding the key; Heartbeat is its last write.
	Owner     string    `json:"owner,omitempty"`
	Heartbeat time.Time `json:"heartbeat"`
	// Started is when the backfill first started; RunStarted when this run
	// did (it differs after a resume); Runs counts the runs.
	Started    time.Time `json:"started"`
	RunStarted time.Time `json:"run_started"`
	Runs       int       `json:"runs"`
	Finished   time.Time `json:"finished,omitzero"`
	// Upto is the last stream sequence read: every run of this backfill
	// reads the same history, up to it. 0: the subject was empty.
	Upto uint64 `json:"upto"`
	// FirstSeq is the stream's first sequence when the run started;
	// HistoryTrimmed is FirstSeq > 1: older changes are gone, and members
	// whose latest change was among them are not rebuilt.
	FirstSeq       uint64 `json:"first_seq"`
	HistoryTrimmed bool   `json:"history_trimmed"`
	// Read counts the messages read by this run, of about ReadTotal.
	Read      uint64 `json:"read"`
	ReadTotal uint64 `json:"read_total"`
	// Undecodable messages (the live path's dead letters) and Ignored ones
	// (restricted to other activations, or of another cohort) are counted
	// and left out.
	Undecodable uint64 `json:"undecodable"`
	Ignored     uint64 `json:"ignored"`
	// Users are the distinct users seen; Members those whose latest change
	// is an enter: each is eventually Sent or Skipped (no matchable
	// identifiers). Sent and Skipped add up over resumed runs.
	Users   int `json:"users"`
	Members int `json:"members"`
	Sent    int `json:"sent"`
	Skipped int `json:"skipped"`
	// LastUser is the last user id (in byte order) whose batch was taken.
	LastUser string `json:"last_user,omitempty"`
	// Rate is messages read per second in the read phase, items per second
	// in the send phase (this run).
	Rate  float64 `json:"rate"`
	Error string  `json:"error,omitempty"`
}

// Done is how many members are settled (sent or skipped).
func (p BackfillProgress) Done() int { return p.Sent + p.Skipped }

// Running reports whether a run holds the key with a heartbeat no older
// than staleAfter at now.
func (p BackfillProgress) Running(now time.Time, staleAfter time.Duration) bool {
	return p.State == BackfillRunning && now.Sub(p.Heartbeat) <= staleAfter
}

// BackfillOptions configure one Backfill run.
type BackfillOptions struct {
	JS jetstream.JetStream
	// Stream is the input stream; Subject the cohort's subject on it, e.g.
	// "cohorts.membership.c123" (see [BackfillSubject]).
	Stream  string
	Subject string
	// KV is the state bucket (progress and lock under BackfillKey).
	KV         jetstream.KeyValue
	Activation cohorts.Activation
	// Upto, if not 0, is the last stream sequence to read (e.g. the one at
	// which the activation was enabled: later changes are the live path's).
	// 0: the subject's last sequence when the backfill starts. A resumed
	// backfill keeps the sequence it started with.
	Upto uint64
	// Send delivers one batch of items of the activation (the caller builds
	// the destination's Batch and applies its own rules). A nil error means
	// every item was taken. An error is retried with a backoff from
	// RetryMin to RetryMax, unless its destinations.Reason is permanent,
	// which fails the backfill (resumable once fixed).
	Send      func(ctx context.Context, items []destinations.Item) error
	BatchSize int // default 1000
	RetryMin  time.Duration
	RetryMax  time.Duration // defaults 1s and 1m
	Logger    zerolog.Logger
	// Progress, if set, is called at most every ProgressEvery (default 2s)
	// and once at the end, on the calling goroutine.
	Progress      func(BackfillProgress)
	ProgressEvery time.Duration
	// Heartbeat is how often the run writes its progress (default 2s) and
	// so how soon it sees a cancellation; StaleAfter how old a heartbeat may
	// be before another run takes the key over (default 30s).
	Heartbeat  time.Duration
	StaleAfter time.Duration
	// Owner names this run in the key (default host:pid:random).
	Owner string
	Now   func() time.Time
	// ReadStall bounds the wait for the next message of the history
	// (default 30s): a stall is an error, never a hang.
	ReadStall time.Duration
}

// BackfillSubject is the subject of a cohort under a configured subject
// "<prefix>>" (the layout of route's checkSubject), or "" if subject does
// not end in ">".
func BackfillSubject(subject, cohortID string) string {
	if len(subject) == 0 || subject[len(subject)-1] != '>' {
		return ""
	}
	return subject[:len(subject)-1] + cohortID
}

func (o *BackfillOptions) defaults() error {
	switch {
	case o.JS == nil || o.KV == nil || o.Send == nil:
		return errors.New("backfill: JS, KV and Send are required")
	case o.Stream == "" || o.Subject == "":
		return errors.New("backfill: Stream and Subject are required")
	case o.Activation.ID == "" || o.Activation.CohortID == "":
		return errors.New("backfill: the activation needs an id and a cohort_id")
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 1000
	}
	if o.RetryMin <= 0 {
		o.RetryMin = time.Second
	}
	if o.RetryMax < o.RetryMin {
		o.RetryMax = max(time.Minute, o.RetryMin)
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = 2 * time.Second
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = 2 * time.Second
	}
	if o.StaleAfter <= 0 {
		o.StaleAfter = 30 * time.Second
	}
	if o.ReadStall <= 0 {
		o.ReadStall = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Owner == "" {
		host, _ := os.Hostname()
		var b [4]byte
		_, _ = rand.Read(b[:])
		o.Owner = host + ":" + strconv.Itoa(os.Getpid()) + ":" + hex.EncodeToString(b[:])
	}
	return nil
}

// ReadBackfill returns an activation's stored backfill progress and its
// revision; jetstream.ErrKeyNotFound when it never ran.
func ReadBackfill(ctx context.Context, kv jetstream.KeyValue, activationID string) (BackfillProgress, uint64, error) {
	e, err := kv.Get(ctx, BackfillKey(activationID))
	if err != nil {
		return BackfillProgress{}, 0, err
	}
	var p BackfillProgress
	if err := json.Unmarshal(e.Value(), &p); err != nil {
		return BackfillProgress{}, e.Revision(), fmt.Errorf("backfill state of %q: %w", activationID, err)
	}
	return p, e.Revision(), nil
}

// CancelBackfill marks an activation's running backfill cancelled; the run
// stops within its Heartbeat and keeps its progress. It returns the progress
// as it was, and whether it was running (false: nothing to cancel; the
// state is unchanged).
func CancelBackfill(ctx context.Context, kv jetstream.KeyValue, activationID string) (BackfillProgress, bool, error) {
	for range 5 {
		p, rev, err := ReadBackfill(ctx, kv, activationID)
		if err != nil {
			return p, false, err
		}
		if p.State != BackfillRunning {
			return p, false, nil
		}
		c := p
		c.State, c.Error = BackfillCancelled, "cancelled on request"
		data, err := json.Marshal(c)
		if err != nil {
			return p, false, err
		}
		if _, err := kv.Update(ctx, BackfillKey(activationID), data, rev); err == nil {
			return p, true, nil
		} else if !errors.Is(err, jetstream.ErrKeyExists) {
			return p, false, err
		}
		// The run wrote meanwhile: read again.
	}
	return BackfillProgress{}, false, errors.New("backfill state kept changing; try again")
}

// backfillStore is the run's progress and the revision it last wrote.
type backfillStore struct {
	kv    jetstream.KeyValue
	key   string
	owner string
	now   func() time.Time

	mu  sync.Mutex
	p   BackfillProgress
	rev uint64
}

func (s *backfillStore) update(f func(p *BackfillProgress)) {
	s.mu.Lock()
	f(&s.p)
	s.mu.Unlock()
}

func (s *backfillStore) snapshot() BackfillProgress {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.p
}

// flush writes the progress at the revision last written. A refused write
// means someone else wrote: ErrBackfillCancelled when it was a cancel (the
// store then holds that revision, so the final write can follow it),
// ErrBackfillTakenOver when another run owns the key.
func (s *backfillStore) flush(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range 2 {
		s.p.Heartbeat = s.now().UTC()
		data, err := json.Marshal(s.p)
		if err != nil {
			return err
		}
		rev, err := s.kv.Update(ctx, s.key, data, s.rev)
		if err == nil {
			s.rev = rev
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("writing backfill progress: %w", err)
		}
		e, err := s.kv.Get(ctx, s.key)
		if err != nil {
			return fmt.Errorf("reading backfill state after a refused write: %w", err)
		}
		var other BackfillProgress
		if err := json.Unmarshal(e.Value(), &other); err != nil {
			return fmt.Errorf("backfill state after a refused write: %w", err)
		}
		switch {
		case other.Owner != s.owner:
			return ErrBackfillTakenOver
		case other.State == BackfillCancelled:
			s.rev = e.Revision()
			return ErrBackfillCancelled
		}
		// Our own earlier write whose answer was lost: carry on from it.
		s.rev = e.Revision()
	}
	return errors.New("writing backfill progress: the key keeps changing")
}

// acquire creates the activation's key or takes it over (a finished,
// cancelled, failed or stale run). The returned store holds the progress to
// start from: resumed when the stored backfill is unfinished and reads the
// same subject, fresh otherwise.
func acquire(ctx context.Context, o *BackfillOptions) (*backfillStore, error) {
	s := &backfillStore{kv: o.KV, key: BackfillKey(o.Activation.ID), owner: o.Owner, now: o.Now}
	for range 5 {
		now := o.Now().UTC()
		fresh := BackfillProgress{ActivationID: o.Activation.ID, CohortID: o.Activation.CohortID, Subject: o.Subject,
			Started: now, Upto: o.Upto}
		var prev *BackfillProgress
		var prevRev uint64
		e, err := o.KV.Get(ctx, s.key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return nil, fmt.Errorf("reading backfill state: %w", err)
		default:
			prevRev = e.Revision()
			var p BackfillProgress
			if json.Unmarshal(e.Value(), &p) == nil {
				prev = &p
			}
		}
		if prev != nil && prev.Running(now, o.StaleAfter) && prev.Owner != o.Owner {
			s.p = *prev
			return s, fmt.Errorf("activation %s: %w (owner %s, heartbeat %s)", o.Activation.ID, ErrBackfillRunning,
				prev.Owner, prev.Heartbeat.Format(time.RFC3339))
		}
		p := fresh
		if prev != nil && prev.State != BackfillDone && prev.Subject == o.Subject && (o.Upto == 0 || o.Upto == prev.Upto) {
			p = *prev // resume: same history, after the last user sent
			p.Read, p.Undecodable, p.Ignored, p.Error = 0, 0, 0, ""
		}
		p.State, p.Phase, p.Owner, p.RunStarted, p.Rate, p.Heartbeat = BackfillRunning, "read", o.Owner, now, 0, now
		p.Finished = time.Time{}
		p.Runs++
		data, err := json.Marshal(p)
		if err != nil {
			return nil, err
		}
		var rev uint64
		if prevRev == 0 {
			rev, err = o.KV.Create(ctx, s.key, data)
		} else {
			rev, err = o.KV.Update(ctx, s.key, data, prevRev)
		}
		if errors.Is(err, jetstream.ErrKeyExists) {
			continue // another run was quicker: look again
		}
		if err != nil {
			return nil, fmt.Errorf("writing backfill state: %w", err)
		}
		s.p, s.rev = p, rev
		return s, nil
	}
	return nil, fmt.Errorf("activation %s: %w (the key keeps changing)", o.Activation.ID, ErrBackfillRunning)
}

// userRecord is the latest change of one user: compact, identifiers only
// while it is an enter.
type userRecord struct {
	ts    int64
	enter bool
	ids   cohorts.Identifiers
}

// Backfill rebuilds the activation's cohort from the stream's history and
// sends its members through o.Send (see the file comment). It returns the
// final progress; the error is nil when every member was sent or skipped,
// ErrBackfillRunning (wrapped) when another run holds it, ErrBackfillCancelled
// when cancelled through the key, ctx's error when ctx ended. In every case
// but the first two the progress is stored, and a later run resumes.
func Backfill(ctx context.Context, o BackfillOptions) (BackfillProgress, error) {
	if err := o.defaults(); err != nil {
		return BackfillProgress{}, err
	}
	log := o.Logger.With().Str("activation_id", o.Activation.ID).Str("cohort_id", o.Activation.CohortID).Logger()
	s, err := acquire(ctx, &o)
	if err != nil {
		if s != nil {
			return s.p, err
		}
		return BackfillProgress{}, err
	}

	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	keeperDone := make(chan struct{})
	stopKeeper := make(chan struct{})
	go func() {
		defer close(keeperDone)
		t := time.NewTicker(o.Heartbeat)
		defer t.Stop()
		for {
			select {
			case <-stopKeeper:
				return
			case <-runCtx.Done():
				return
			case <-t.C:
				if err := s.flush(runCtx); errors.Is(err, ErrBackfillCancelled) || errors.Is(err, ErrBackfillTakenOver) {
					cancel(err)
					return
				} else if err != nil && runCtx.Err() == nil {
					log.Warn().Err(err).Msg("backfill heartbeat not written")
				}
			}
		}
	}()

	r := &backfillRun{o: &o, s: s, log: log, lastReport: o.Now()}
	err = r.run(runCtx)
	close(stopKeeper)
	<-keeperDone
	if cause := context.Cause(runCtx); err != nil && runCtx.Err() != nil && cause != nil {
		err = cause
	}
	return r.finish(ctx, err)
}

type backfillRun struct {
	o          *BackfillOptions
	s          *backfillStore
	log        zerolog.Logger
	lastReport time.Time
}

// report hands the progress to o.Progress at most every ProgressEvery.
func (r *backfillRun) report(force bool) {
	if r.o.Progress == nil {
		return
	}
	now := r.o.Now()
	if !force && now.Sub(r.lastReport) < r.o.ProgressEvery {
		return
	}
	r.lastReport = now
	r.o.Progress(r.s.snapshot())
}

// finish writes the final state (unless another run owns the key) and
// reports it.
func (r *backfillRun) finish(ctx context.Context, err error) (BackfillProgress, error) {
	now := r.o.Now().UTC()
	state := BackfillDone
	switch {
	case err == nil:
	case errors.Is(err, ErrBackfillCancelled), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		state = BackfillCancelled
	default:
		state = BackfillFailed
	}
	r.s.update(func(p *BackfillProgress) {
		p.State, p.Owner = state, ""
		if err != nil {
			p.Error = err.Error()
		} else {
			p.Finished = now
		}
	})
	if !errors.Is(err, ErrBackfillTakenOver) {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		ferr := r.s.flush(wctx)
		if errors.Is(ferr, ErrBackfillCancelled) {
			ferr = r.s.flush(wctx) // cancelled meanwhile: write the final progress over it
		}
		cancel()
		if ferr != nil {
			r.log.Error().Err(ferr).Msg("backfill: final progress not written")
			if err == nil {
				err = ferr
			}
		}
	}
	p := r.s.snapshot()
	ev := r.log.Info()
	if state == BackfillFailed {
		ev = r.log.Error().Err(err)
	} else if state == BackfillCancelled {
		ev = ev.AnErr("cause", err)
	}
	ev.Str("state", string(state)).Int("members", p.Members).Int("sent", p.Sent).Int("skipped", p.Skipped).
		Uint64("undecodable", p.Undecodable).Uint64("upto", p.Upto).Str("last_user", p.LastUser).Msg("backfill ended")
	r.report(true)
	return p, err
}

func (r *backfillRun) run(ctx context.Context) error {
	o := r.o
	stream, err := o.JS.Stream(ctx, o.Stream)
	if err != nil {
		return fmt.Errorf("opening stream %s: %w", o.Stream, err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream %s info: %w", o.Stream, err)
	}
	upto := r.s.snapshot().Upto
	if upto == 0 {
		last, err := stream.GetLastMsgForSubject(ctx, o.Subject)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
		case err != nil:
			return fmt.Errorf("last message of %s: %w", o.Subject, err)
		default:
			upto = last.Sequence
		}
	}
	trimmed := info.State.FirstSeq > 1
	r.s.update(func(p *BackfillProgress) {
		p.Upto, p.FirstSeq, p.HistoryTrimmed = upto, info.State.FirstSeq, trimmed
	})
	ev, msg := r.log.Info(), "backfill started"
	if trimmed {
		ev, msg = r.log.Warn().Str("reason", "history_trimmed"),
			"backfill started on a trimmed history (stream first sequence > 1): members whose latest change is gone are not rebuilt"
	}
	ev.Str("subject", o.Subject).Uint64("upto", upto).Uint64("first_seq", info.State.FirstSeq).
		Dur("stream_max_age", info.Config.MaxAge).Str("resume_after", r.s.snapshot().LastUser).Msg(msg)
	if err := r.s.flush(ctx); err != nil {
		return err
	}

	users, err := r.read(ctx, stream, upto)
	if err != nil {
		return err
	}
	return r.send(ctx, users)
}

// read rebuilds the latest change of every user from the subject's history
// up to upto.
func (r *backfillRun) read(ctx context.Context, stream jetstream.Stream, upto uint64) (map[string]userRecord, error) {
	h := &rebuild{users: make(map[string]userRecord)}
	if upto == 0 {
		return h.users, nil
	}
	it, empty, err := r.openHistory(ctx, stream)
	if err != nil {
		return nil, err
	}
	defer it.Stop()
	if empty {
		return h.users, nil
	}
	start := r.o.Now()
	for {
		msg, meta, err := r.next(ctx, it, h.read)
		if err != nil {
			return nil, err
		}
		seq := meta.Sequence.Stream
		if seq > upto {
			break
		}
		h.add(msg.Data(), r.o.Now(), r.o.Activation.CohortID, r.o.Activation.ID)
		if h.read%1024 == 0 {
			r.publishRead(h, start)
			r.report(false)
		}
		if seq >= upto || meta.NumPending == 0 {
			break
		}
	}
	r.publishRead(h, start)
	r.report(false)
	return h.users, nil
}

// openHistory starts reading the subject's history from its first message
// and stores how many messages it holds as the progress's ReadTotal. empty
// reports that the history holds none, when the consumer knows it. The
// caller stops the returned iterator.
func (r *backfillRun) openHistory(ctx context.Context, stream jetstream.Stream) (it jetstream.MessagesContext, empty bool, err error) {
	o := r.o
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{o.Subject}, DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, false, fmt.Errorf("reading %s: %w", o.Subject, err)
	}
	it, err = cons.Messages(jetstream.PullMaxMessages(1000))
	if err != nil {
		return nil, false, fmt.Errorf("reading %s: %w", o.Subject, err)
	}
	if ci := cons.CachedInfo(); ci != nil {
		r.s.update(func(p *BackfillProgress) { p.ReadTotal = ci.NumPending })
		empty = ci.NumPending == 0
	}
	return it, empty, nil
}

// next returns the history's next message and its metadata. It decides
// when the history has stalled: no message within ReadStall is an error
// (read is how many were read so far, for the error), and so is ctx's end.
func (r *backfillRun) next(ctx context.Context, it jetstream.MessagesContext, read uint64) (jetstream.Msg, *jetstream.MsgMetadata, error) {
	o := r.o
	nctx, cancel := context.WithTimeout(ctx, o.ReadStall)
	msg, err := it.Next(jetstream.NextContext(nctx))
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, fmt.Errorf("reading %s (at message %d of about %d): %w", o.Subject, read, r.s.snapshot().ReadTotal, err)
	}
	meta, err := msg.Metadata()
	if err != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", o.Subject, err)
	}
	return msg, meta, nil
}

// publishRead stores read's counts in the progress, with the read rate
// since start.
func (r *backfillRun) publishRead(h *rebuild, start time.Time) {
	secs := r.o.Now().Sub(start).Seconds()
	r.s.update(func(p *BackfillProgress) {
		p.Read, p.Undecodable, p.Ignored, p.Users = h.read, h.undecodable, h.ignored, len(h.users)
		p.ReadTotal = max(p.ReadTotal, h.read)
		if secs > 0 {
			p.Rate = float64(h.read) / secs
		}
	})
}

// rebuild is what read has rebuilt so far: the latest change of each user
// and how many messages it read, could not decode, and ignored.
type rebuild struct {
	users                      map[string]userRecord
	read, undecodable, ignored uint64
}

// add takes in one message of the history, in sequence order, decoded at
// now. It decides what the message is: undecodable; ignored when it is not
// of cohortID or is restricted by activation_ids to activations other than
// activationID (as the live path ignores it); otherwise the user's latest
// change unless the record kept has a later ts.
func (h *rebuild) add(data []byte, now time.Time, cohortID, activationID string) {
	h.read++
	m, err := cohorts.Decode(data, now)
	switch {
	case err != nil:
		h.undecodable++
	case m.CohortID != cohortID ||
		(len(m.ActivationIDs) > 0 && !slices.Contains(m.ActivationIDs, activationID)):
		h.ignored++
	default:
		// Messages come in sequence order, so on equal ts the later
		// one wins; an older ts published later loses.
		ts := m.TS.UnixNano()
		if prev, ok := h.users[m.UserID]; !ok || ts >= prev.ts {
			rec := userRecord{ts: ts, enter: m.Action == cohorts.ActionEnter}
			if rec.enter {
				rec.ids = m.Identifiers
			}
			h.users[m.UserID] = rec
		}
	}
}

// send sends the members after LastUser in user id order, in batches, and
// stores the progress after each batch.
func (r *backfillRun) send(ctx context.Context, users map[string]userRecord) error {
	ids := memberIDs(users)
	from := resumeFrom(ids, r.s.snapshot().LastUser)
	r.s.update(func(p *BackfillProgress) { p.Phase, p.Members, p.Rate = "send", len(ids), 0 })
	r.report(false)

	b := &batcher{r: r, start: r.o.Now(), batch: make([]destinations.Item, 0, r.o.BatchSize)}
	for _, id := range ids[from:] {
		if err := b.add(ctx, id, users[id]); err != nil {
			return err
		}
	}
	if len(b.batch) > 0 || b.skipped > 0 {
		return b.commit(ctx)
	}
	return nil
}

// memberIDs decides who the members are, the users whose latest change is
// an enter, and returns their ids in order.
func memberIDs(users map[string]userRecord) []string {
	ids := make([]string, 0, len(users))
	for id, rec := range users {
		if rec.enter {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// resumeFrom decides where a resumed run starts: the index in ids (sorted)
// of the first member after lastUser, the last member an earlier run
// settled ("": none, start from the first).
func resumeFrom(ids []string, lastUser string) int {
	from, _ := slices.BinarySearch(ids, lastUser)
	if from < len(ids) && ids[from] == lastUser && lastUser != "" {
		from++
	}
	return from
}

// batcher gathers send's members into batches of BatchSize and commits
// them.
type batcher struct {
	r           *backfillRun
	start       time.Time // of the send phase in this run, for the rate
	sentThisRun int
	batch       []destinations.Item
	skipped     int    // members skipped since the last commit
	last        string // the last member added or skipped
}

// add puts member id into the batch, or counts it skipped when it has no
// matchable identifier, and commits the batch once it holds BatchSize
// items.
func (b *batcher) add(ctx context.Context, id string, rec userRecord) error {
	o := b.r.o
	b.last = id
	hashed := rec.ids.Hash()
	if !hashed.Matchable() {
		b.skipped++
		return nil
	}
	m := cohorts.Membership{UserID: id, CohortID: o.Activation.CohortID, Action: cohorts.ActionEnter,
		TS: time.Unix(0, rec.ts).UTC(), Identifiers: rec.ids}
	b.batch = append(b.batch, destinations.Item{EventID: m.EventID(), Membership: m, Hashed: hashed})
	if len(b.batch) == o.BatchSize {
		return b.commit(ctx)
	}
	return nil
}

// commit sends the batch (if it holds any item), then counts it and the
// skipped members as done up to the last member, stores the progress and
// reports it.
func (b *batcher) commit(ctx context.Context) error {
	r := b.r
	if len(b.batch) > 0 {
		if err := r.sendBatch(ctx, b.batch); err != nil {
			return err
		}
	}
	b.sentThisRun += len(b.batch)
	secs := r.o.Now().Sub(b.start).Seconds()
	r.s.update(func(p *BackfillProgress) {
		p.Sent += len(b.batch)
		p.Skipped += b.skipped
		p.LastUser = b.last
		if secs > 0 {
			p.Rate = float64(b.sentThisRun) / secs
		}
	})
	b.batch, b.skipped = b.batch[:0], 0
	if err := r.s.flush(ctx); err != nil {
		return err
	}
	r.report(false)
	return nil
}

// sendBatch calls Send until it takes the batch, waiting RetryMin, doubling
// to RetryMax, between attempts; a permanent destination error ends it.
func (r *backfillRun) sendBatch(ctx context.Context, batch []destinations.Item) error {
	wait := r.o.RetryMin
	for attempt := 1; ; attempt++ {
		err := r.o.Send(ctx, batch)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if destinations.ReasonOf(err).Permanent() {
			return fmt.Errorf("sending a batch of %d from user %s: %w", len(batch), batch[0].Membership.UserID, err)
		}
		r.log.Warn().Err(err).Int("attempt", attempt).Dur("retry_in", wait).Int("items", len(batch)).
			Msg("backfill batch not taken: retrying")
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(wait*2, r.o.RetryMax)
	}
}

// BackfillResult is what a backfill started by StartBackfill ended with.
type BackfillResult struct {
	Progress BackfillProgress
	Err      error
}

// StartBackfill runs Backfill in its own goroutine, for the daemon: unless
// o.Progress is set, it logs the progress at most every 5 seconds. The
// channel receives the result once, then is closed. A backfill already
// running elsewhere is logged at info level and reported as its result.
func StartBackfill(ctx context.Context, o BackfillOptions) <-chan BackfillResult {
	if o.Progress == nil {
		log := o.Logger.With().Str("activation_id", o.Activation.ID).Logger()
		o.Progress = func(p BackfillProgress) {
			log.Info().Str("state", string(p.State)).Str("phase", p.Phase).Uint64("read", p.Read).Uint64("read_total", p.ReadTotal).
				Int("members", p.Members).Int("sent", p.Sent).Int("skipped", p.Skipped).Float64("rate", p.Rate).
				Msg("backfill progress")
		}
		if o.ProgressEvery <= 0 {
			o.ProgressEvery = 5 * time.Second
		}
	}
	out := make(chan BackfillResult, 1)
	go func() {
		defer close(out)
		p, err := Backfill(ctx, o)
		if errors.Is(err, ErrBackfillRunning) {
			o.Logger.Info().Str("activation_id", o.Activation.ID).Err(err).Msg("backfill not started")
		}
		out <- BackfillResult{Progress: p, Err: err}
	}()
	return out
}
