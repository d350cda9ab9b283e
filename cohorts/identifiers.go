package cohorts

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"unicode/utf8"
)

// Hashed holds a membership's identifiers as Pinterest's user_data wants
// them: normalised, and hashed where Pinterest expects a hash. Empty strings
// mean "not given".
type Hashed struct {
	Em         string // lowercase SHA-256 hex of the normalised email, "" if none
	HashedMAID string // lowercase SHA-256 hex of the normalised MAID, "" if none
	ExternalID string // lowercase SHA-256 hex of the trimmed external_id, "" if none
	ClientIP   string // plain, trimmed (Pinterest takes the IP in clear)
	UserAgent  string // plain, trimmed
}

// Hash normalises and hashes the identifiers; plain values never leave the
// process, except IP and user agent which Pinterest takes in clear.
//
//   - email and MAID: trimmed and lowercased, then [HashValue].
//   - external_id: trimmed only (it is case-sensitive), then [HashValue].
//   - ip and user_agent: trimmed.
//
// So for every hashed field, a value that already is a SHA-256 hex digest
// (64 hex digits, in any mix of case) comes out as the lowercase digest and
// is not hashed twice.
//
// Hash is on the hot path: it allocates only the result strings.
func (ids Identifiers) Hash() Hashed {
	return Hashed{
		Em:         hashFolded(ids.Email),
		HashedMAID: hashFolded(ids.MAID),
		ExternalID: HashValue(strings.TrimSpace(ids.ExternalID)),
		ClientIP:   strings.TrimSpace(ids.IP),
		UserAgent:  strings.TrimSpace(ids.UserAgent),
	}
}

// Matchable reports whether Pinterest can match the user: it needs an email,
// a MAID, or the pair client IP + user agent. An external id alone does not
// match, nor does an IP without a user agent.
func (h Hashed) Matchable() bool {
	return h.Em != "" || h.HashedMAID != "" || (h.ClientIP != "" && h.UserAgent != "")
}

// HashValue returns the lowercase SHA-256 hex digest of an already
// normalised value. "" stays "", and a value that already is 64 hex digits,
// in either case, is taken to be a digest already: it is returned
// lowercased, not hashed again (Pinterest wants lowercase hex).
func HashValue(normalised string) string {
	if normalised == "" {
		return ""
	}
	if isHex64(normalised) {
		return strings.ToLower(normalised) // no allocation when already lowercase
	}
	return hexDigest(sha256.Sum256([]byte(normalised)))
}

// maxStackFold is the longest ASCII value hashFolded lowercases on the stack.
const maxStackFold = 256

// hashFolded is HashValue(strings.ToLower(strings.TrimSpace(s))) without the
// intermediate allocations for the common case of an ASCII value.
func hashFolded(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	// Only ASCII hex digits lowercase to hex digits, so a lowercased value is
	// a digest exactly when the value is one in either case.
	if isHex64(s) {
		return strings.ToLower(s) // no allocation when already lowercase
	}
	if len(s) > maxStackFold || !isASCII(s) {
		return HashValue(strings.ToLower(s))
	}
	var buf [maxStackFold]byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return hexDigest(sha256.Sum256(buf[:len(s)]))
}

// hexDigest encodes a SHA-256 sum as lowercase hex with a single allocation.
func hexDigest(sum [sha256.Size]byte) string {
	var out [2 * sha256.Size]byte
	hex.Encode(out[:], sum[:])
	return string(out[:])
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// isHex64 reports whether s is 64 hex digits, in either case.
func isHex64(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}
