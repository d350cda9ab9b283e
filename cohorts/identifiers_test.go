package cohorts

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// Known SHA-256 vectors (computed with sha256sum).
const (
	sumUserEmail = "865c4dd20427a134c6a6637f1d2c905077b7d7380cd8e029c4a358e222f91b43" // "user123@example.com"
	sumMAID      = "10413e1053ddd87840224411ac5e7130210e560cb1969174d7ef9742dd63740e" // "aaaa-bbbb"
	sumExternal  = "5d80282673c36eec583bc11c4c05d0f757856c95fa288d486c65fd7f832279a4" // "Ext-1"
)

func TestHash(t *testing.T) {
	for _, tc := range []struct {
		name string
		ids  Identifiers
		want Hashed
	}{
		{
			name: "a plain email is trimmed, lowercased and hashed",
			ids:  Identifiers{Email: " User123@Example.COM "},
			want: Hashed{Em: sumUserEmail},
		},
		{
			name: "an already hashed lowercase email passes unchanged",
			ids:  Identifiers{Email: sumUserEmail},
			want: Hashed{Em: sumUserEmail},
		},
		{
			name: "an uppercase hex email digest is lowercased, not hashed again",
			ids:  Identifiers{Email: "  " + strings.ToUpper(sumUserEmail) + "\n"},
			want: Hashed{Em: sumUserEmail},
		},
		{
			name: "an uppercase hex MAID digest is lowercased, not hashed again",
			ids:  Identifiers{MAID: strings.ToUpper(sumMAID)},
			want: Hashed{HashedMAID: sumMAID},
		},
		{
			name: "an already hashed lowercase external id passes unchanged",
			ids:  Identifiers{ExternalID: sumExternal},
			want: Hashed{ExternalID: sumExternal},
		},
		{
			name: "an uppercase hex external id digest is lowercased, not hashed again",
			ids:  Identifiers{ExternalID: " " + strings.ToUpper(sumExternal) + " "},
			want: Hashed{ExternalID: sumExternal},
		},
		{
			name: "a mixed-case hex external id digest is lowercased, not hashed again",
			ids:  Identifiers{ExternalID: strings.ToUpper(sumExternal[:32]) + sumExternal[32:]},
			want: Hashed{ExternalID: sumExternal},
		},
		{
			name: "a MAID is lowercased before hashing",
			ids:  Identifiers{MAID: "AAAA-BBBB"},
			want: Hashed{HashedMAID: sumMAID},
		},
		{
			name: "an external id keeps its case",
			ids:  Identifiers{ExternalID: " Ext-1 "},
			want: Hashed{ExternalID: sumExternal},
		},
		{
			name: "ip and user agent are trimmed and stay plain",
			ids:  Identifiers{IP: " 203.0.113.7 ", UserAgent: " Mozilla/5.0 "},
			want: Hashed{ClientIP: "203.0.113.7", UserAgent: "Mozilla/5.0"},
		},
		{
			name: "blank identifiers hash to nothing",
			ids:  Identifiers{Email: "  ", MAID: "\t", ExternalID: " "},
			want: Hashed{},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, tc.ids.Hash())
		})
	}
}

func TestHashValue(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"an empty value stays empty", "", ""},
		{"a plain value is hashed as it is", "user123@example.com", sumUserEmail},
		{"a lowercase digest is not hashed again", sumUserEmail, sumUserEmail},
		{"an uppercase digest is lowercased, not hashed again", strings.ToUpper(sumUserEmail), sumUserEmail},
		{"63 hex digits are not a digest and are hashed", sumUserEmail[:63], sha256Hex(sumUserEmail[:63])},
		{"64 characters with one that is not hex are hashed", sumUserEmail[:63] + "g", sha256Hex(sumUserEmail[:63] + "g")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, HashValue(tc.in))
		})
	}
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestMatchable(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    Hashed
		want bool
	}{
		{"an email is matchable", Hashed{Em: sumUserEmail}, true},
		{"a MAID is matchable", Hashed{HashedMAID: sumMAID}, true},
		{"ip with user agent is matchable", Hashed{ClientIP: "203.0.113.7", UserAgent: "UA"}, true},
		{"ip without user agent is not matchable", Hashed{ClientIP: "203.0.113.7"}, false},
		{"user agent without ip is not matchable", Hashed{UserAgent: "UA"}, false},
		{"an external id alone is not matchable", Hashed{ExternalID: sumExternal}, false},
		{"nothing is not matchable", Hashed{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, tc.h.Matchable())
		})
	}
}

// FuzzHashFolded checks the allocation-saving email/MAID path against the
// rule it implements.
func FuzzHashFolded(f *testing.F) {
	for _, s := range []string{"", " User123@Example.COM ", sumUserEmail, strings.ToUpper(sumUserEmail),
		"ÉMILE@example.com", "\u212a@x", strings.Repeat("A", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		assert.Equal(t, HashValue(strings.ToLower(strings.TrimSpace(s))), hashFolded(s))
	})
}

func TestHashAllocatesOnlyItsResults(t *testing.T) {
	ids := Identifiers{Email: " User123@Example.COM ", MAID: "AAAA-BBBB", ExternalID: "Ext-1",
		IP: "203.0.113.7", UserAgent: "Mozilla/5.0"}
	allocs := testing.AllocsPerRun(100, func() { _ = ids.Hash() })
	assert.LessOrEqual(t, allocs, 3.0, "one string per hashed identifier")
}
