package cohorts

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDecodeStoredActivation(t *testing.T) {
	a := activation("brand-a-c123", cohortC123, "", true)
	b, err := json.Marshal(a)
	require.NoError(t, err)

	got, err := DecodeStoredActivation("brand-a-c123", b)
	require.NoError(t, err)
	assert.Equal(t, a, got)

	_, err = DecodeStoredActivation("brand-b-c123", b)
	assert.EqualError(t, err, `key "brand-b-c123" holds activation id "brand-a-c123"`)

	_, err = DecodeStoredActivation("brand-a-c123", []byte(`{"id":"brand-a-c123"`))
	assert.ErrorContains(t, err, "decoding activation")
}

func TestResolverKeyState(t *testing.T) {
	r := newTestResolver(t)
	const key = "k"
	valid := func(rev uint64, tag string, enabled bool) Revision {
		b, err := json.Marshal(activation(key, cohortC123, tag, enabled))
		require.NoError(t, err)
		return Revision{Revision: rev, Value: b}
	}
	invalid := func(rev uint64) Revision { return Revision{Revision: rev, Value: []byte(`{"id":`)} }
	otherID := func(rev uint64) Revision {
		b, err := json.Marshal(activation("not-k", cohortC123, "", true))
		require.NoError(t, err)
		return Revision{Revision: rev, Value: b}
	}
	deleted := func(rev uint64) Revision { return Revision{Revision: rev, Deleted: true} }

	for _, tc := range []struct {
		name        string
		revs        []Revision
		inForce     uint64
		enabled     bool
		deletedAt   uint64
		rejected    []uint64
		newest      uint64
		problem     string
		unknownTags bool
	}{
		{name: "the newest valid value is in force", revs: []Revision{valid(1, "", false), valid(4, "", true)},
			inForce: 4, enabled: true, newest: 4},
		{name: "an invalid newest value leaves the newest valid one in force",
			revs:    []Revision{valid(1, "", false), valid(2, "", true), invalid(3), otherID(5)},
			inForce: 2, enabled: true, rejected: []uint64{5, 3}, newest: 5,
			problem: `revision 5 invalid: key "k" holds activation id "not-k" (and 1 older invalid revisions); revision 2 in force (the newest valid revision)`},
		{name: "a delete is newest: nothing is in force", revs: []Revision{valid(1, "", true), deleted(2)},
			deletedAt: 2, newest: 2},
		{name: "an invalid value after a delete brings nothing back", revs: []Revision{valid(1, "", true), deleted(2), invalid(3)},
			deletedAt: 2, rejected: []uint64{3}, newest: 3,
			problem: "not in force: revision 3 invalid: decoding activation: unexpected EOF; the key was deleted at revision 2"},
		{name: "no valid revision: nothing is in force", revs: []Revision{invalid(7), invalid(8)},
			rejected: []uint64{8, 7}, newest: 8,
			problem: "not in force: revision 8 invalid: decoding activation: unexpected EOF (and 1 older invalid revisions); no valid revision in the key's history"},
		{name: "an unknown Tag ID is in force, with the target's error", revs: []Revision{valid(3, unmappedTag, true)},
			inForce: 3, enabled: true, newest: 3, unknownTags: true},
		{name: "no revisions: nothing", revs: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := r.KeyState(key, tc.revs)
			assert.Equal(t, key, s.Key)
			assert.Equal(t, tc.inForce, s.InForce)
			assert.Equal(t, tc.deletedAt, s.DeletedAt)
			var rejected []uint64
			for _, rr := range s.Rejected {
				rejected = append(rejected, rr.Revision)
				assert.Error(t, rr.Err)
			}
			assert.Equal(t, tc.rejected, rejected)
			assert.Equal(t, tc.newest, s.Newest())
			assert.Equal(t, tc.problem, s.Problem())
			if tc.inForce != 0 {
				assert.Equal(t, key, s.Target.Activation.ID)
				assert.Equal(t, tc.enabled, s.Target.Activation.Enabled)
				if tc.unknownTags {
					assert.ErrorIs(t, s.Target.Err, ErrUnknownTag)
				} else {
					assert.NoError(t, s.Target.Err)
					assert.Equal(t, defaultAcct, s.Target.AdAccountID)
				}
			} else {
				assert.Equal(t, Target{}, s.Target)
			}
		})
	}
}
