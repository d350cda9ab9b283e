package cohorts

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// Prepare returns m.EventID() and m.Identifiers.Hash() with a single
// allocation: the id and the hex digests are written side by side into one
// buffer that becomes one string, and the returned strings are parts of
// it (or of m's own strings). It is what the hot path calls; EventID and
// Hash are the reference it is held to (prepare_test.go compares them on
// a fuzzed corpus). A value outside the common case (non-ASCII or longer
// than maxStackFold, to be lowercased) is left to the reference function.
func (m Membership) Prepare() (eventID string, h Hashed) {
	var arena [eventIDMaxLen + 3*2*sha256.Size]byte
	b := m.appendEventID(arena[:0])
	idEnd := len(b)
	ids := m.Identifiers
	var spans [3][2]int // where each digest lies in b; [0,0]: none there
	var direct [3]string
	for i, v := range [3]string{ids.Email, ids.MAID, ids.ExternalID} {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		fold := i < 2 // email and MAID are lowercased, external_id is not
		start := len(b)
		var ok bool
		if b, ok = appendDigest(b, v, fold); ok {
			spans[i] = [2]int{start, len(b)}
		} else if fold {
			direct[i] = hashFolded(v) // the reference, for the uncommon value
		} else {
			direct[i] = HashValue(v)
		}
	}
	s := string(b)
	for i, sp := range spans {
		if sp[1] > sp[0] {
			direct[i] = s[sp[0]:sp[1]]
		}
	}
	return s[:idEnd], Hashed{Em: direct[0], HashedMAID: direct[1], ExternalID: direct[2],
		ClientIP: strings.TrimSpace(ids.IP), UserAgent: strings.TrimSpace(ids.UserAgent)}
}

// appendDigest appends what HashValue gives for the trimmed, non-empty v
// (lowercased first when fold is set, as hashFolded does) and reports
// true, or leaves b as it is and reports false when the caller must use
// the reference (a value to fold that is not ASCII, or too long for the
// stack).
func appendDigest(b []byte, v string, fold bool) ([]byte, bool) {
	switch {
	case isHex64(v): // a digest already: lowercased, not hashed again
		for i := 0; i < len(v); i++ {
			b = append(b, lowerASCII(v[i]))
		}
		return b, true
	case len(v) > maxStackFold || (fold && !isASCII(v)):
		return b, false
	}
	var buf [maxStackFold]byte
	for i := 0; i < len(v); i++ {
		c := v[i]
		if fold {
			c = lowerASCII(c)
		}
		buf[i] = c
	}
	sum := sha256.Sum256(buf[:len(v)])
	return hex.AppendEncode(b, sum[:]), true
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
