package connector

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/cohort-connector/cohort-connector/cohorts"
)

// The readiness checks of the activations watcher.
const (
	CheckActivationsLoaded  = "activations_loaded"  // fail until the bucket's contents were loaded once
	CheckActivationsBucket  = "activations_bucket"  // fail while the bucket does not exist
	CheckActivationsInvalid = "activations_invalid" // warn while a key's newest value is invalid
)

// DefaultActivationsCheckInterval is how often an ActivationsWatcher checks
// that the bucket still exists, and how often it looks for it again once it
// is gone.
const DefaultActivationsCheckInterval = 5 * time.Second

// ActivationsWatcher keeps a Resolver in step with the activations bucket:
// every put and delete is applied as it arrives (JetStream pushes it, well
// under a second), without restart. Ready is closed once the bucket's
// current contents are loaded, so the caller can hold back consumption
// until then: a membership consumed before its activation is known would be
// acked as not activated.
//
// An invalid value (one that does not decode, or whose id differs from its
// key) never changes what is in force: the newest valid revision of the key
// is used instead (see [cohorts.KeyState]), read from the key's history at
// load and on a live update alike, and the error log names both revisions.
// When the history holds no valid revision, nothing is in force for the
// key, unless this process already had an activation in force for it: that
// one stays until the process restarts. Such keys are reported by the
// activations_invalid check as a warning: a data problem, which a restart
// or a replica cannot fix, so the daemon stays ready for every other
// cohort. An activation whose Tag ID has no account is kept (its messages
// are held back, not dropped) and logged at error level.
//
// A deleted bucket is not a per-key delete: the watcher notices that the
// bucket is gone (its watch ends or fails, or the check every interval
// finds no bucket), logs it once at error level, fails the
// activations_bucket check, and keeps the last known activations in force.
// It does not recreate the bucket: an empty bucket would tell every
// replica that nothing is activated, and the last known state lives only
// in this process's memory (Ensure does create a missing bucket, empty, at
// startup, when there is no state to lose). It waits for an operator to
// recreate it, then
// reads it from scratch and makes the Resolver match its contents exactly
// (activations no longer in it are removed). A bucket deleted and recreated
// between two checks is noticed by its creation time and read again the
// same way.
//
// The watcher is the Resolver's only writer.
type ActivationsWatcher struct {
	kv       jetstream.KeyValue
	r        *cohorts.Resolver
	log      zerolog.Logger
	interval time.Duration
	ready    chan struct{}

	// OnChange, if set before Run, is called on Run's goroutine after an
	// activation changed (not during the first load). becameEnabled is
	// set when it is enabled now and was absent or disabled before.
	OnChange func(a cohorts.Activation, becameEnabled bool)

	// Owned by Run's goroutine.
	inForce  map[string]uint64 // activation id → revision in force
	loaded   bool              // the bucket was loaded once
	replaced bool              // the bucket was recreated since the last load

	mu        sync.Mutex // guards the fields below, read by Checks
	isReady   bool
	goneSince time.Time         // zero while the bucket exists
	problems  map[string]string // key → why its newest value is not in force
}

// NewActivationsWatcher returns a watcher of the bucket kv that feeds r.
// checkInterval is how often the bucket's existence is checked (0:
// [DefaultActivationsCheckInterval]). Call Run to start it.
func NewActivationsWatcher(kv jetstream.KeyValue, r *cohorts.Resolver, log zerolog.Logger, checkInterval time.Duration) *ActivationsWatcher {
	if checkInterval <= 0 {
		checkInterval = DefaultActivationsCheckInterval
	}
	return &ActivationsWatcher{
		kv: kv, r: r, log: log, interval: checkInterval,
		ready: make(chan struct{}), inForce: map[string]uint64{}, problems: map[string]string{},
	}
}

// Ready is closed once the bucket's contents were loaded the first time.
func (w *ActivationsWatcher) Ready() <-chan struct{} { return w.ready }

// Checks reports the watcher's readiness checks, in a fixed order:
// activations_loaded, activations_bucket, activations_invalid. Safe for
// concurrent use.
func (w *ActivationsWatcher) Checks() []Check {
	w.mu.Lock()
	defer w.mu.Unlock()
	bucket := w.kv.Bucket()
	checks := []Check{
		{Name: CheckActivationsLoaded, State: CheckOK},
		{Name: CheckActivationsBucket, State: CheckOK},
		{Name: CheckActivationsInvalid, State: CheckOK},
	}
	if !w.isReady {
		checks[0].State, checks[0].Detail = CheckFail, "activations not loaded yet from bucket "+bucket
	}
	if !w.goneSince.IsZero() {
		checks[1].State = CheckFail
		checks[1].Detail = fmt.Sprintf("bucket %s not found since %s (deleted?): the last known activations stay in force; "+
			"recreate it (deploy/nats) and put the activations back", bucket, w.goneSince.UTC().Format(time.RFC3339))
	}
	if len(w.problems) > 0 {
		keys := slices.Sorted(maps.Keys(w.problems))
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + ": " + w.problems[k]
		}
		checks[2].State = CheckWarn
		what := fmt.Sprintf("%d keys of bucket %s hold invalid values", len(keys), bucket)
		if len(keys) == 1 {
			what = fmt.Sprintf("1 key of bucket %s holds an invalid value", bucket)
		}
		checks[2].Detail = what + ": " + strings.Join(parts, " | ")
	}
	return checks
}

// Errors that end one watch of the bucket.
var (
	errBucketGone     = errors.New("activations bucket not found")
	errBucketReplaced = errors.New("activations bucket deleted and recreated")
	errWatchEnded     = errors.New("activations watch ended")
)

// Run watches the bucket until ctx is cancelled (then it returns nil) or
// the NATS connection is closed (then it returns the error). A watch that
// ends or fails is started again from scratch after the check interval.
func (w *ActivationsWatcher) Run(ctx context.Context) error {
	var lastErr string
	for {
		err := w.watch(ctx)
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case errors.Is(err, nats.ErrConnectionClosed):
			return fmt.Errorf("watching activations bucket %s: %w", w.kv.Bucket(), err)
		case errors.Is(err, errBucketReplaced):
			continue // read the new bucket now
		case errors.Is(err, errBucketGone):
		case err.Error() != lastErr:
			// NATS unreachable, or a watch that ended: what is in force
			// stays; readiness reports NATS itself.
			w.log.Warn().Err(err).Str("bucket", w.kv.Bucket()).Dur("retry_in", w.interval).
				Msg("activations watch interrupted: the bucket will be read again")
		}
		lastErr = err.Error()
		t := time.NewTimer(w.interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// watch reads the bucket from scratch and follows it until ctx is
// cancelled or the watch ends: the bucket is gone or replaced, or the
// watch failed.
func (w *ActivationsWatcher) watch(ctx context.Context) error {
	created, err := w.created(ctx)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	kw, err := w.kv.WatchAll(wctx)
	if err != nil {
		if bucketGone(err) {
			w.markGone()
			return errBucketGone
		}
		return fmt.Errorf("watching activations bucket %s: %w", w.kv.Bucket(), err)
	}
	defer func() { _ = kw.Stop() }()
	tick := time.NewTicker(w.interval)
	defer tick.Stop()
	loading := true
	seen := map[string]bool{} // keys of the initial contents
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			now, err := w.created(ctx)
			switch {
			case errors.Is(err, errBucketGone):
				return err
			case err != nil:
				// NATS unreachable: keep the watch, which resumes by itself
				// after a reconnect.
			case !now.Equal(created):
				w.log.Error().Str("bucket", w.kv.Bucket()).Time("created", now).Str("reason", "bucket_replaced").
					Msg("activations bucket was deleted and recreated: reading it again")
				w.replaced = true
				return errBucketReplaced
			}
		case e, ok := <-kw.Updates():
			if !ok {
				// The bucket is gone, the connection closed, or the
				// watch failed: say which.
				if _, err := w.created(ctx); err != nil {
					return err
				}
				return errWatchEnded
			}
			if e == nil { // end of the bucket's current contents
				if loading {
					loading = false
					w.finishLoad(seen)
				}
				continue
			}
			if loading {
				seen[e.Key()] = true
			}
			w.apply(ctx, e, loading)
		}
	}
}

// created returns the bucket's creation time, or errBucketGone (after
// marking it gone) when it does not exist.
func (w *ActivationsWatcher) created(ctx context.Context) (time.Time, error) {
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := w.kv.Status(sctx)
	if err != nil {
		if bucketGone(err) {
			w.markGone()
			return time.Time{}, errBucketGone
		}
		return time.Time{}, fmt.Errorf("activations bucket %s status: %w", w.kv.Bucket(), err)
	}
	if bs, ok := st.(*jetstream.KeyValueBucketStatus); ok && bs.StreamInfo() != nil {
		return bs.StreamInfo().Created, nil
	}
	return time.Time{}, nil
}

// bucketGone reports whether err means the bucket (its stream) does not
// exist.
func bucketGone(err error) bool {
	return errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrBucketNotFound) ||
		errors.Is(err, nats.ErrStreamNotFound) || errors.Is(err, nats.ErrBucketNotFound)
}

// markGone records that the bucket is gone; the first time in a row it logs
// at error level.
func (w *ActivationsWatcher) markGone() {
	w.mu.Lock()
	first := w.goneSince.IsZero()
	if first {
		w.goneSince = time.Now()
	}
	w.mu.Unlock()
	if first {
		w.log.Error().Str("bucket", w.kv.Bucket()).Int("activations", len(w.r.List())).Str("reason", "bucket_not_found").
			Msg("activations bucket not found: the last known activations stay in force until it is recreated")
	}
}

// finishLoad ends the reading of the bucket's contents: activations the
// bucket no longer holds are removed (only on a read after the first), and
// the first load makes the watcher ready.
func (w *ActivationsWatcher) finishLoad(seen map[string]bool) {
	removed := 0
	for _, a := range w.r.List() {
		if seen[a.ID] {
			continue
		}
		w.r.Delete(a.ID)
		delete(w.inForce, a.ID)
		w.setProblem(a.ID, "")
		removed++
		w.log.Info().Str("activation_id", a.ID).Str("cohort_id", a.CohortID).Str("reason", "not_in_bucket").
			Msg("activation deleted")
	}
	for key := range w.problemKeys() {
		if !seen[key] {
			w.setProblem(key, "")
		}
	}
	w.mu.Lock()
	wasGone := !w.goneSince.IsZero() || w.replaced
	w.goneSince, w.replaced = time.Time{}, false
	w.isReady = true
	w.mu.Unlock()
	n := len(w.r.List())
	switch {
	case !w.loaded:
		w.loaded = true
		w.log.Info().Int("activations", n).Msg("activations loaded")
		close(w.ready)
	case wasGone:
		w.log.Info().Str("bucket", w.kv.Bucket()).Int("activations", n).Int("removed", removed).
			Msg("activations bucket is back: activations re-read from it")
	default:
		w.log.Info().Str("bucket", w.kv.Bucket()).Int("activations", n).Int("removed", removed).
			Msg("activations re-read")
	}
}

func (w *ActivationsWatcher) problemKeys() map[string]bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	keys := make(map[string]bool, len(w.problems))
	for k := range w.problems {
		keys[k] = true
	}
	return keys
}

func (w *ActivationsWatcher) setProblem(key, problem string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if problem == "" {
		delete(w.problems, key)
	} else {
		w.problems[key] = problem
	}
}

// apply brings the Resolver in step with e, the newest entry of its key.
// loading is true while the bucket's contents are read (at start, and
// again after the bucket was recreated).
func (w *ActivationsWatcher) apply(ctx context.Context, e jetstream.KeyValueEntry, loading bool) {
	key := e.Key()
	st, err := ActivationKeyState(ctx, w.kv, w.r, e)
	if err != nil {
		w.setProblem(key, fmt.Sprintf("revision %d invalid, and the key's history unreadable: %v", e.Revision(), err))
		w.log.Error().Str("activation_id", key).Uint64("revision", e.Revision()).Uint64("revision_in_force", w.inForce[key]).
			Err(err).Str("reason", "invalid_activation").
			Msg("activation value invalid and the key's history unreadable: what was in force stays")
		return
	}
	prev, had := w.r.Get(key)
	switch {
	case st.InForce != 0:
		w.put(st, prev, had, loading)
	case len(st.Rejected) == 0: // deleted
		w.setProblem(key, "")
		if _, ok := w.r.Delete(key); ok {
			delete(w.inForce, key)
			w.log.Info().Str("activation_id", key).Str("cohort_id", prev.CohortID).Uint64("revision", e.Revision()).
				Msg("activation deleted")
			if w.OnChange != nil {
				prev.Enabled = false
				w.OnChange(prev, false)
			}
		}
	case st.DeletedAt != 0:
		// Deleted, then written with an invalid value: the delete stands.
		w.setProblem(key, st.Problem())
		if _, ok := w.r.Delete(key); ok {
			delete(w.inForce, key)
		}
		w.log.Error().Str("activation_id", key).Uint64("revision", st.Newest()).Uint64("deleted_at", st.DeletedAt).
			Err(st.Rejected[0].Err).Str("reason", "invalid_activation").
			Msg("activation value invalid: not in force, the key was deleted before it")
	case had:
		// No valid revision left in the history, but this process has one
		// in force: keep it rather than switch the cohort off.
		problem := fmt.Sprintf("%s; revision %d, loaded earlier, stays in force until the daemon restarts", st.Problem(), w.inForce[key])
		w.setProblem(key, problem)
		ev := w.log.Error()
		w.targetFields(ev, w.r.Target(prev)).Uint64("revision", st.Newest()).Uint64("revision_in_force", w.inForce[key]).
			Err(st.Rejected[0].Err).Str("reason", "invalid_activation").
			Msg("activation value invalid and no valid revision left in the key's history: the revision loaded earlier stays in force until restart")
	default:
		w.setProblem(key, st.Problem())
		w.log.Error().Str("activation_id", key).Uint64("revision", st.Newest()).Err(st.Rejected[0].Err).
			Str("reason", "invalid_activation").
			Msg("activation value invalid and no valid revision in the key's history: not in force")
	}
}

// put stores the activation in force of st and logs it: at info level when
// it changed what is in force, at debug level at the first load or when
// nothing changed, at error level when its Tag ID has no account or a newer
// value was invalid.
func (w *ActivationsWatcher) put(st cohorts.KeyState, prev cohorts.Activation, had, loading bool) {
	a := st.Target.Activation
	putErr := w.r.Put(a)
	w.inForce[a.ID] = st.InForce
	w.setProblem(a.ID, st.Problem())
	if len(st.Rejected) > 0 {
		ev := w.log.Error()
		w.targetFields(ev, st.Target).Uint64("revision", st.Newest()).Uint64("revision_in_force", st.InForce).
			Err(st.Rejected[0].Err).Int("invalid_revisions", len(st.Rejected)).Str("reason", "invalid_activation").
			Msg("activation value invalid: the newest valid revision is in force")
	}
	first := loading && !w.loaded
	changed := !had || !prev.Equal(a)
	msg, level := "activation changed", zerolog.InfoLevel
	switch {
	case first:
		msg, level = "activation loaded", zerolog.DebugLevel
	case !changed && len(st.Rejected) > 0:
		return // the line above says it all
	case !changed:
		msg, level = "activation unchanged", zerolog.DebugLevel
	}
	if putErr != nil {
		level = zerolog.ErrorLevel
	}
	ev := w.log.WithLevel(level)
	if putErr != nil {
		ev = ev.Err(putErr).Str("reason", "unknown_tag")
	}
	w.targetFields(ev, st.Target).Uint64("revision", st.InForce).Msg(msg)
	if changed && !first && w.OnChange != nil {
		w.OnChange(a, a.Enabled && !(had && prev.Enabled))
	}
}

// targetFields adds the activation's and its target's log fields.
func (w *ActivationsWatcher) targetFields(ev *zerolog.Event, t cohorts.Target) *zerolog.Event {
	return ev.Str("activation_id", t.Activation.ID).Str("cohort_id", t.Activation.CohortID).Bool("enabled", t.Activation.Enabled).
		Str("tag_id", t.TagID).Str("tag_source", string(t.TagSource)).Str("ad_account_id", t.AdAccountID)
}

// ActivationKeyState decides what is in force for the key of e, the key's
// newest entry in the bucket kv: e's activation when it is valid, nothing
// when e is a delete, and otherwise the newest valid revision of the key's
// history up to e (kv.History; see [cohorts.KeyState]). The daemon's watcher
// and the activations CLI both use it, so that they agree.
func ActivationKeyState(ctx context.Context, kv jetstream.KeyValue, r *cohorts.Resolver, e jetstream.KeyValueEntry) (cohorts.KeyState, error) {
	st := r.KeyState(e.Key(), []cohorts.Revision{revision(e)})
	if len(st.Rejected) == 0 {
		return st, nil
	}
	hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	history, err := kv.History(hctx, e.Key())
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return st, nil // purged meanwhile: e is all there is
	}
	if err != nil {
		return st, fmt.Errorf("reading the history of activation %q: %w", e.Key(), err)
	}
	revs := make([]cohorts.Revision, 0, len(history))
	for _, h := range history {
		if h.Revision() <= e.Revision() { // newer ones are the watcher's next entries
			revs = append(revs, revision(h))
		}
	}
	return r.KeyState(e.Key(), revs), nil
}

func revision(e jetstream.KeyValueEntry) cohorts.Revision {
	return cohorts.Revision{Revision: e.Revision(), Deleted: e.Operation() != jetstream.KeyValuePut, Value: e.Value()}
}
