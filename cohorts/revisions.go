package cohorts

import (
	"fmt"
	"strings"
)

// DecodeStoredActivation decodes the value stored under key in the
// activations bucket: [DecodeActivation], and the activation's id must be
// the key (a value copied under another key would otherwise be applied under
// its own id, or shadow it).
func DecodeStoredActivation(key string, value []byte) (Activation, error) {
	a, err := DecodeActivation(value)
	if err == nil && a.ID != key {
		err = fmt.Errorf("key %q holds activation id %q", key, a.ID)
	}
	return a, err
}

// Revision is one stored revision of a key of the activations bucket. The
// bucket keeps the last few revisions of each key (History 5 in
// deploy/nats); a revision is JetStream's sequence number of the write.
type Revision struct {
	Revision uint64
	// Deleted marks a delete or purge of the key; Value is then empty.
	Deleted bool
	Value   []byte
}

// RejectedRevision is a revision whose value is not a valid activation.
type RejectedRevision struct {
	Revision uint64
	Err      error
}

// KeyState is what the daemon uses for one key of the activations bucket,
// decided by [Resolver.KeyState] from the key's stored revisions. The rule:
// an invalid value never changes what is in force. The newest revision
// that is a valid activation ([DecodeStoredActivation]) is in force, unless
// a delete is newer than it: a delete is a choice, an invalid value after
// it brings nothing back.
type KeyState struct {
	Key string
	// InForce is the revision whose activation is in force, 0 when none is.
	InForce uint64
	// Target is that activation with its Tag ID and ad account resolved;
	// Target.Err is set when no account owns the Tag ID (the activation is
	// still in force: its messages are held back, see [Target]). Zero when
	// InForce is 0.
	Target Target
	// DeletedAt is the revision of the delete that ends the search, 0 when
	// there was none.
	DeletedAt uint64
	// Rejected are the revisions newer than the one in force (or than the
	// delete, or all of them when neither was found) whose values are
	// invalid, newest first.
	Rejected []RejectedRevision
}

// Newest returns the newest revision the state was decided from.
func (s KeyState) Newest() uint64 {
	switch {
	case len(s.Rejected) > 0:
		return s.Rejected[0].Revision
	case s.InForce != 0:
		return s.InForce
	}
	return s.DeletedAt
}

// Problem describes, in one line, why the key's newest value is not what is
// in force, or "" when it is: "revision 7 invalid: …; revision 5 in force
// (the newest valid revision)", "not in force: revision 7 invalid: …; no
// valid revision in the key's history", "not in force: revision 7 invalid:
// …; the key was deleted at revision 4". An unknown Tag ID is not part of
// it (see Target.Err).
func (s KeyState) Problem() string {
	if len(s.Rejected) == 0 {
		return ""
	}
	newest := s.Rejected[0]
	invalid := fmt.Sprintf("revision %d invalid: %s", newest.Revision, oneLine(newest.Err))
	if n := len(s.Rejected) - 1; n > 0 {
		invalid += fmt.Sprintf(" (and %d older invalid revisions)", n)
	}
	switch {
	case s.InForce != 0:
		return fmt.Sprintf("%s; revision %d in force (the newest valid revision)", invalid, s.InForce)
	case s.DeletedAt != 0:
		return fmt.Sprintf("not in force: %s; the key was deleted at revision %d", invalid, s.DeletedAt)
	}
	return fmt.Sprintf("not in force: %s; no valid revision in the key's history", invalid)
}

// oneLine joins the lines of err's message (errors.Join puts one problem a
// line) with "; ".
func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}

// KeyState decides what is in force for key from its stored revisions,
// oldest first (as JetStream KV's History returns them): see [KeyState].
// Revisions are examined newest first and the search stops at the first
// valid activation or delete.
func (r *Resolver) KeyState(key string, revisions []Revision) KeyState {
	s := KeyState{Key: key}
	for i := len(revisions) - 1; i >= 0; i-- {
		rev := revisions[i]
		if rev.Deleted {
			s.DeletedAt = rev.Revision
			return s
		}
		a, err := DecodeStoredActivation(key, rev.Value)
		if err != nil {
			s.Rejected = append(s.Rejected, RejectedRevision{Revision: rev.Revision, Err: err})
			continue
		}
		s.InForce, s.Target = rev.Revision, r.Target(a)
		return s
	}
	return s
}
