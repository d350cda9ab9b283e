package cohorts

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// ErrUnknownTag means a Tag ID belongs to no configured ad account.
var ErrUnknownTag = errors.New("tag_id is owned by no configured ad account")

// ErrNoDefaultTag means no default Tag ID was configured.
var ErrNoDefaultTag = errors.New("no default tag_id configured")

// Target is where one activation sends memberships: the Tag ID that won
// ([ResolveTag]) and the ad account that owns it.
type Target struct {
	Activation  Activation
	TagID       string
	TagSource   TagSource
	AdAccountID string // "" when Err != nil
	// Err wraps [ErrUnknownTag] when TagID maps to no account. Such a target
	// is still returned by [Resolver.Resolve]: its messages must be held back
	// (not acked, not dropped) until configuration or the activation is fixed.
	Err error
}

// Resolver maps a membership to the targets of its cohort's enabled
// activations. It holds the live activations (fed by the KV watcher through
// Put and Delete) and the fixed Tag ID → ad account mapping.
//
// It is safe for concurrent use and built for many readers and rare writers:
// reads load an immutable snapshot without locking; writes are serialised
// and publish a new snapshot (copy-on-write). A reader sees each write
// entirely or not at all.
type Resolver struct {
	defaultTagID string
	tagAccounts  map[string]string // Tag ID → ad account id; never modified

	mu   sync.Mutex // serialises writers
	snap atomic.Pointer[snapshot]
}

// snapshot is never modified once published; writers build a new one.
type snapshot struct {
	byID map[string]Target // every stored activation, enabled or not
	// byCohort holds the enabled targets of each cohort, sorted by
	// activation id. Slices are replaced, never modified in place.
	byCohort map[string][]Target
	// disabled holds the ids of each cohort's disabled activations,
	// sorted; rebuilt on every write.
	disabled map[string][]string
}

// NewResolver returns an empty Resolver. tagAccounts maps a Pinterest Tag ID
// to the ad account id that owns it; it is copied. It is an error (wrapping
// [ErrNoDefaultTag]) if defaultTagID is blank, (wrapping [ErrUnknownTag]) if
// the default is not in tagAccounts, and if any Tag ID maps to a blank
// account id.
func NewResolver(defaultTagID string, tagAccounts map[string]string) (*Resolver, error) {
	if strings.TrimSpace(defaultTagID) == "" {
		return nil, fmt.Errorf("creating resolver: %w", ErrNoDefaultTag)
	}
	if _, ok := tagAccounts[defaultTagID]; !ok {
		return nil, fmt.Errorf("creating resolver: default tag_id %q: %w", defaultTagID, ErrUnknownTag)
	}
	for _, tag := range slices.Sorted(maps.Keys(tagAccounts)) {
		if strings.TrimSpace(tagAccounts[tag]) == "" {
			return nil, fmt.Errorf("creating resolver: tag_id %q maps to a blank ad account id", tag)
		}
	}
	r := &Resolver{defaultTagID: defaultTagID, tagAccounts: maps.Clone(tagAccounts)}
	r.snap.Store(&snapshot{byID: map[string]Target{}, byCohort: map[string][]Target{}})
	return r, nil
}

// DefaultTagID returns the Tag ID used by activations without an override.
func (r *Resolver) DefaultTagID() string { return r.defaultTagID }

// Target resolves one activation's Tag ID ([ResolveTag]) and the ad account
// that owns it. It does not validate a, and does not need a to be stored.
func (r *Resolver) Target(a Activation) Target {
	tagID, source := ResolveTag(a.TagID, r.defaultTagID)
	t := Target{Activation: a, TagID: tagID, TagSource: source}
	account, ok := r.tagAccounts[tagID]
	if !ok {
		t.Err = fmt.Errorf("activation %q: tag_id %q (%s): %w", a.ID, tagID, source, ErrUnknownTag)
		return t
	}
	t.AdAccountID = account
	return t
}

// Check is what a writer (the CLI) runs before writing an activation: the
// errors of [Activation.Validate], or, if it is valid, the error of its
// [Resolver.Target] (an unknown Tag ID).
func (r *Resolver) Check(a Activation) error {
	if err := a.Validate(); err != nil {
		return err
	}
	return r.Target(a).Err
}

// Put stores an activation, replacing any with the same id (even if it moved
// to another cohort). An invalid activation is not stored: the Validate
// error is returned. A valid one is stored and the error of its Target is
// returned: an activation whose Tag ID has no account is kept, so that its
// messages are held back by the caller rather than dropped, and the error
// is for the caller to report.
func (r *Resolver) Put(a Activation) error {
	if err := a.Validate(); err != nil {
		return err
	}
	t := r.Target(a)

	r.mu.Lock()
	defer r.mu.Unlock()
	next := r.snap.Load().clone()
	if prev, ok := next.byID[a.ID]; ok {
		next.remove(prev.Activation)
	}
	next.byID[a.ID] = t
	if a.Enabled {
		next.add(t)
	}
	next.disabled = disabledByCohort(next.byID)
	r.snap.Store(next)
	return t.Err
}

// Delete removes the activation with this id and returns it, or reports
// false if there was none.
func (r *Resolver) Delete(id string) (Activation, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := r.snap.Load()
	prev, ok := cur.byID[id]
	if !ok {
		return Activation{}, false
	}
	next := cur.clone()
	delete(next.byID, id)
	next.remove(prev.Activation)
	next.disabled = disabledByCohort(next.byID)
	r.snap.Store(next)
	return prev.Activation, true
}

// Get returns the stored activation with this id.
func (r *Resolver) Get(id string) (Activation, bool) {
	t, ok := r.snap.Load().byID[id]
	return t.Activation, ok
}

// List returns every stored activation, enabled or not, sorted by ID.
func (r *Resolver) List() []Activation {
	s := r.snap.Load()
	out := make([]Activation, 0, len(s.byID))
	for _, t := range s.byID {
		out = append(out, t.Activation)
	}
	slices.SortFunc(out, func(a, b Activation) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Resolve returns one Target per enabled activation of m.CohortID, sorted by
// activation ID, or nil if there is none (the cohort is not activated). If
// m.ActivationIDs is non-empty, only the activations of the cohort it names
// are considered; ids of unknown or other cohorts' activations are ignored.
// Targets whose Err is set are included: see [Target].
//
// Resolve runs for every message: it takes no lock, and allocates only
// for a membership restricted by activation_ids. The returned slice is
// read-only: it may be shared with other callers.
func (r *Resolver) Resolve(m Membership) []Target {
	targets := r.snap.Load().byCohort[m.CohortID]
	if len(targets) == 0 {
		return nil
	}
	if len(m.ActivationIDs) == 0 {
		return targets[:len(targets):len(targets)] // an append copies
	}
	n := 0
	for i := range targets {
		if slices.Contains(m.ActivationIDs, targets[i].Activation.ID) {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	out := make([]Target, 0, n)
	for i := range targets {
		if slices.Contains(m.ActivationIDs, targets[i].Activation.ID) {
			out = append(out, targets[i])
		}
	}
	return out
}

// Disabled returns the ids of the cohort's disabled activations, sorted;
// nil when there is none. Like Resolve it takes no lock; the slice is
// read-only.
func (r *Resolver) Disabled(cohortID string) []string { return r.snap.Load().disabled[cohortID] }

func disabledByCohort(byID map[string]Target) map[string][]string {
	out := map[string][]string{}
	for id, t := range byID {
		if !t.Activation.Enabled {
			out[t.Activation.CohortID] = append(out[t.Activation.CohortID], id)
		}
	}
	for _, ids := range out {
		slices.Sort(ids)
	}
	return out
}

// clone copies the maps; the per-cohort slices are shared until replaced.
func (s *snapshot) clone() *snapshot {
	return &snapshot{byID: maps.Clone(s.byID), byCohort: maps.Clone(s.byCohort)}
}

func compareTargetID(t Target, id string) int { return cmp.Compare(t.Activation.ID, id) }

// remove replaces a's cohort slice by one without a.
func (s *snapshot) remove(a Activation) {
	old := s.byCohort[a.CohortID]
	i, found := slices.BinarySearchFunc(old, a.ID, compareTargetID)
	if !found {
		return // a was disabled
	}
	if len(old) == 1 {
		delete(s.byCohort, a.CohortID)
		return
	}
	next := make([]Target, 0, len(old)-1)
	next = append(next, old[:i]...)
	s.byCohort[a.CohortID] = append(next, old[i+1:]...)
}

// add replaces t's cohort slice by one with t, in id order. t's id must not
// be in it.
func (s *snapshot) add(t Target) {
	old := s.byCohort[t.Activation.CohortID]
	i, _ := slices.BinarySearchFunc(old, t.Activation.ID, compareTargetID)
	next := make([]Target, 0, len(old)+1)
	next = append(next, old[:i]...)
	next = append(next, t)
	s.byCohort[t.Activation.CohortID] = append(next, old[i:]...)
}
