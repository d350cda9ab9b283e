package cohorts

import (
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	defaultTag  = "2610000000001"
	brandBTag   = "2610000000002"
	unmappedTag = "2610000000099"
	defaultAcct = "549755885175"
	brandBAcct  = "549755885176"
	cohortC123  = "c123"
	otherCohort = "c999"
)

func newTestResolver(t testing.TB) *Resolver {
	t.Helper()
	r, err := NewResolver(defaultTag, map[string]string{defaultTag: defaultAcct, brandBTag: brandBAcct})
	require.NoError(t, err)
	return r
}

func activation(id, cohort, tag string, enabled bool) Activation {
	return Activation{ID: id, CohortID: cohort, Destination: DestinationPinterest, Enabled: enabled, TagID: tag, Mode: ModeEvents}
}

func membership(cohort string, activationIDs ...string) Membership {
	return Membership{UserID: "u", CohortID: cohort, Action: ActionEnter, TS: testNow, ActivationIDs: activationIDs}
}

func targetIDs(ts []Target) []string {
	var ids []string
	for _, t := range ts {
		ids = append(ids, t.Activation.ID)
	}
	return ids
}

func TestNewResolver(t *testing.T) {
	accounts := map[string]string{defaultTag: defaultAcct}
	for _, tc := range []struct {
		name     string
		def      string
		accounts map[string]string
		wantErr  error
		wantText string
	}{
		{name: "a blank default tag is an error", def: " ", accounts: accounts, wantErr: ErrNoDefaultTag},
		{name: "a default tag without an account is an error", def: unmappedTag, accounts: accounts, wantErr: ErrUnknownTag},
		{name: "no accounts at all is an error", def: defaultTag, accounts: nil, wantErr: ErrUnknownTag},
		{name: "a tag mapped to a blank account is an error", def: defaultTag,
			accounts: map[string]string{defaultTag: defaultAcct, brandBTag: ""}, wantText: "blank ad account"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := NewResolver(tc.def, tc.accounts)
			require.Error(t, err)
			assert.Nil(t, r)
			if tc.wantErr != nil {
				assert.ErrorIs(t, err, tc.wantErr)
			}
			assert.Contains(t, err.Error(), tc.wantText)
		})
	}

	t.Run("the accounts map is copied", func(t *testing.T) {
		m := map[string]string{defaultTag: defaultAcct}
		r, err := NewResolver(defaultTag, m)
		require.NoError(t, err)
		delete(m, defaultTag)
		assert.Equal(t, defaultAcct, r.Target(activation("a", "c", "", true)).AdAccountID)
		assert.Equal(t, defaultTag, r.DefaultTagID())
	})
}

func TestResolverTargets(t *testing.T) {
	r := newTestResolver(t)
	require.NoError(t, r.Put(activation("brand-a", cohortC123, "", true)))
	require.NoError(t, r.Put(activation("brand-b", cohortC123, brandBTag, true)))
	require.NoError(t, r.Put(activation("brand-c-off", cohortC123, "", false)))
	err := r.Put(activation("brand-d", cohortC123, unmappedTag, true))
	require.ErrorIs(t, err, ErrUnknownTag, "kept but reported")

	got := r.Resolve(membership(cohortC123))
	require.Equal(t, []string{"brand-a", "brand-b", "brand-d"}, targetIDs(got), "enabled only, sorted by id")

	for _, tc := range []struct {
		name    string
		target  Target
		tag     string
		source  TagSource
		account string
		wantErr error
	}{
		{"a blank tag uses the default tag and its account", got[0], defaultTag, TagSourceDefault, defaultAcct, nil},
		{"an override tag uses its own account", got[1], brandBTag, TagSourceOverride, brandBAcct, nil},
		{"an unknown tag has no account and an error", got[2], unmappedTag, TagSourceOverride, "", ErrUnknownTag},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.tag, tc.target.TagID)
			assert.Equal(t, tc.source, tc.target.TagSource)
			assert.Equal(t, tc.account, tc.target.AdAccountID)
			if tc.wantErr == nil {
				assert.NoError(t, tc.target.Err)
			} else {
				assert.ErrorIs(t, tc.target.Err, tc.wantErr)
			}
		})
	}

	t.Run("a cohort without activations resolves to nil", func(t *testing.T) {
		assert.Nil(t, r.Resolve(membership(otherCohort)))
	})
	t.Run("activation ids restrict the targets", func(t *testing.T) {
		assert.Equal(t, []string{"brand-b"}, targetIDs(r.Resolve(membership(cohortC123, "brand-b", "unknown"))))
	})
	t.Run("activation ids naming only a disabled activation resolve to nil", func(t *testing.T) {
		assert.Nil(t, r.Resolve(membership(cohortC123, "brand-c-off")))
	})
	t.Run("activation ids of another cohort are ignored", func(t *testing.T) {
		require.NoError(t, r.Put(activation("other", otherCohort, "", true)))
		assert.Nil(t, r.Resolve(membership(cohortC123, "other")))
	})
	t.Run("an append to the returned slice copies it", func(t *testing.T) {
		first := r.Resolve(membership(cohortC123))
		grown := append(first, Target{TagID: "appended"})
		grown[0].TagID = "changed"
		assert.Equal(t, defaultTag, r.Resolve(membership(cohortC123))[0].TagID)
	})
}

func TestResolverWrites(t *testing.T) {
	t.Run("an invalid activation is not stored", func(t *testing.T) {
		r := newTestResolver(t)
		bad := activation("a", cohortC123, "abc", true)
		require.Error(t, r.Put(bad))
		_, ok := r.Get("a")
		assert.False(t, ok)
		assert.Error(t, r.Check(bad))
	})
	t.Run("check reports an unknown tag of a valid activation", func(t *testing.T) {
		r := newTestResolver(t)
		assert.ErrorIs(t, r.Check(activation("a", cohortC123, unmappedTag, true)), ErrUnknownTag)
		assert.NoError(t, r.Check(activation("a", cohortC123, brandBTag, true)))
	})
	t.Run("moving an activation to another cohort removes it from the old one", func(t *testing.T) {
		r := newTestResolver(t)
		require.NoError(t, r.Put(activation("a", cohortC123, "", true)))
		require.NoError(t, r.Put(activation("a", otherCohort, "", true)))
		assert.Nil(t, r.Resolve(membership(cohortC123)))
		assert.Equal(t, []string{"a"}, targetIDs(r.Resolve(membership(otherCohort))))
	})
	t.Run("disabling an activation stops its targets but keeps it", func(t *testing.T) {
		r := newTestResolver(t)
		require.NoError(t, r.Put(activation("a", cohortC123, "", true)))
		require.NoError(t, r.Put(activation("a", cohortC123, "", false)))
		assert.Nil(t, r.Resolve(membership(cohortC123)))
		got, ok := r.Get("a")
		require.True(t, ok)
		assert.False(t, got.Enabled)
	})
	t.Run("replacing an activation changes its tag", func(t *testing.T) {
		r := newTestResolver(t)
		require.NoError(t, r.Put(activation("a", cohortC123, "", true)))
		require.NoError(t, r.Put(activation("a", cohortC123, brandBTag, true)))
		got := r.Resolve(membership(cohortC123))
		require.Len(t, got, 1)
		assert.Equal(t, brandBAcct, got[0].AdAccountID)
	})
	t.Run("delete removes an activation and returns it", func(t *testing.T) {
		r := newTestResolver(t)
		a := activation("a", cohortC123, "", true)
		require.NoError(t, r.Put(a))
		require.NoError(t, r.Put(activation("b", cohortC123, "", true)))
		got, ok := r.Delete("a")
		require.True(t, ok)
		assert.Equal(t, a, got)
		assert.Equal(t, []string{"b"}, targetIDs(r.Resolve(membership(cohortC123))))
		_, ok = r.Delete("a")
		assert.False(t, ok, "deleting twice finds nothing")
	})
	t.Run("list returns every activation sorted by id", func(t *testing.T) {
		r := newTestResolver(t)
		assert.Empty(t, r.List())
		require.NoError(t, r.Put(activation("c", otherCohort, "", false)))
		require.NoError(t, r.Put(activation("a", cohortC123, "", true)))
		require.NoError(t, r.Put(activation("b", cohortC123, "", true)))
		var ids []string
		for _, a := range r.List() {
			ids = append(ids, a.ID)
		}
		assert.Equal(t, []string{"a", "b", "c"}, ids)
	})
}

func TestResolveDuringWritesIsRaceFree(t *testing.T) {
	r := newTestResolver(t)
	const readers, writes = 8, 500
	var wg sync.WaitGroup
	done := make(chan struct{})
	for range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				for _, tgt := range r.Resolve(membership(cohortC123)) {
					// Every snapshot is consistent: only enabled activations of
					// the asked cohort, each resolved to an account.
					if !tgt.Activation.Enabled || tgt.Activation.CohortID != cohortC123 || tgt.AdAccountID == "" {
						t.Errorf("inconsistent target: %+v", tgt)
						return
					}
				}
				_ = r.List()
			}
		}()
	}
	for i := range writes {
		id := fmt.Sprintf("a%d", i%10)
		switch i % 3 {
		case 0:
			assert.NoError(t, r.Put(activation(id, cohortC123, "", true)))
		case 1:
			assert.NoError(t, r.Put(activation(id, otherCohort, brandBTag, i%2 == 0)))
		default:
			r.Delete(id)
		}
	}
	close(done)
	wg.Wait()
}

func TestResolveAllocatesOnlyARestrictedResult(t *testing.T) {
	r := newTestResolver(t)
	require.NoError(t, r.Put(activation("a", cohortC123, "", true)))
	require.NoError(t, r.Put(activation("b", cohortC123, brandBTag, true)))
	m := membership(cohortC123)
	restricted := membership(cohortC123, "b")
	unknown := membership(otherCohort)
	assert.Equal(t, 0.0, testing.AllocsPerRun(100, func() { _ = r.Resolve(m) }))
	assert.Equal(t, 1.0, testing.AllocsPerRun(100, func() { _ = r.Resolve(restricted) }))
	assert.Equal(t, 0.0, testing.AllocsPerRun(100, func() { _ = r.Resolve(unknown) }))
}
