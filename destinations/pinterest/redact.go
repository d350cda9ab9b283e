package pinterest

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// redacted replaces a secret in text that leaves the client.
const redacted = "[REDACTED]"

// minFragment is the shortest run of a token's first characters that
// redact treats as an echo of that token: long enough that ordinary text
// does not match it ("pina_" alone starts every Pinterest token), short
// enough to catch an echo that a server or a proxy cut short.
const minFragment = 8

// bearerRe matches "Bearer <credential>" (RFC 6750 b64token), whatever the
// credential: an echoed Authorization header is a secret even when it is
// not one of ours or is cut short. ("Basic" is not matched the same way: it
// is an ordinary word too. The OAuth call adds its exact Basic credential
// to its redactor instead.)
var bearerRe = regexp.MustCompile(`(?i)\b(bearer\s+)[A-Za-z0-9\-._~+/]+=*`)

// pinaRe matches a Pinterest token ("pina_" and at least minFragment
// characters in all) that is none of the ones the redactor knows: a token
// that rotated since, or another account's.
var pinaRe = regexp.MustCompile(`pina_[A-Za-z0-9\-._~+/]{` + strconv.Itoa(minFragment-len("pina_")) + `,}=*`)

// redactor holds the secrets that must never leave the client in a message.
type redactor struct {
	tokens []string // every configured token, longest first
}

func newRedactor(tokens map[string]string) redactor {
	var r redactor
	for _, t := range tokens {
		if t != "" {
			r.tokens = append(r.tokens, t)
		}
	}
	slices.SortFunc(r.tokens, func(a, b string) int { return len(b) - len(a) })
	return r
}

// with returns a redactor that also scrubs secrets: the token of one
// request (a TokenSource's, which rotates and is unknown at New), an OAuth
// secret. r itself is not changed.
func (r redactor) with(secrets ...string) redactor {
	n := redactor{tokens: slices.Clone(r.tokens)}
	for _, s := range secrets {
		if s != "" && !slices.Contains(n.tokens, s) {
			n.tokens = append(n.tokens, s)
		}
	}
	slices.SortFunc(n.tokens, func(a, b string) int { return len(b) - len(a) })
	return n
}

// redact is the one function every string taken from a response body goes
// through before it leaves the client (an error Message, ItemResult.Error or
// ItemResult.Warning, which end up in logs and in dead letters' Dlq-Detail).
// It replaces with [REDACTED]:
//   - every configured token, of any ad account (a proxy may echo any);
//   - any run of at least minFragment characters that starts a token (an
//     echo cut short), or the whole token when it is shorter than that;
//   - the credential of any "Bearer <credential>";
//   - any "pina_" run of at least minFragment characters (a Pinterest
//     token, known or not).
func (r redactor) redact(s string) string {
	if s == "" { // every processed event's error_message: nothing to scan
		return s
	}
	for _, tok := range r.tokens {
		s = redactToken(s, tok)
	}
	if strings.Contains(strings.ToLower(s), "bearer") {
		s = bearerRe.ReplaceAllString(s, "${1}"+redacted)
	}
	if strings.Contains(s, "pina_") {
		s = pinaRe.ReplaceAllString(s, redacted)
	}
	return s
}

// redactToken replaces every run of s that matches tok's first
// min(len(tok), minFragment) or more characters.
func redactToken(s, tok string) string {
	head := tok[:min(len(tok), minFragment)]
	if !strings.Contains(s, head) {
		return s
	}
	var b strings.Builder
	for {
		i := strings.Index(s, head)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		n := len(head)
		for n < len(tok) && i+n < len(s) && s[i+n] == tok[n] {
			n++
		}
		b.WriteString(s[:i])
		b.WriteString(redacted)
		s = s[i+n:]
	}
}
