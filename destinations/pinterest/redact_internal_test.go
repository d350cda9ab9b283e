package pinterest

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestRedact(t *testing.T) {
	const tok, other = "pina_AMAZ3secretTOKENvalue0123456789", "short"
	r := newRedactor(map[string]string{"1": tok, "2": other, "3": ""})
	for _, tc := range []struct {
		name, in, want string
	}{
		{"text without a secret is unchanged", "Invalid event_time.", "Invalid event_time."},
		{"an empty string stays empty", "", ""},
		{"every occurrence of a token is replaced", tok + " and " + tok, "[REDACTED] and [REDACTED]"},
		{"a token shorter than a fragment is replaced whole", "token short is wrong", "token [REDACTED] is wrong"},
		{"an echo cut short is replaced", "got " + tok[:12] + "…", "got [REDACTED]…"},
		{"a token's first characters followed by others are replaced up to where they differ", tok[:10] + "XYZ", "[REDACTED]XYZ"},
		{"a common prefix shorter than a fragment is kept", "pina_ is the token prefix", "pina_ is the token prefix"},
		{"the credential of an Authorization header is replaced whatever it is", "Authorization: bearer abc.DEF-123==\n", "Authorization: bearer [REDACTED]\n"},
		{"Bearer followed by a token is replaced once", "Bearer " + tok, "Bearer [REDACTED]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, r.redact(tc.in))
		})
	}
}

func FuzzRedact(f *testing.F) {
	const tok = "pina_AMAZ3secretTOKENvalue0123456789"
	r := newRedactor(map[string]string{"1": tok})
	for _, s := range []string{"", tok, "x" + tok[:9], "Bearer " + tok[:20], strings.Repeat(tok[:8], 3)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		assert.NotContains(t, r.redact(s), tok[:minFragment])
	})
}

func TestRedactorWithScrubsTheTokenOfOneCall(t *testing.T) {
	base := newRedactor(map[string]string{"1": "pina_STATICtoken000"})
	r := base.with("rotatedXYZ123456", "")
	assert.Equal(t, "[REDACTED] [REDACTED]", r.redact("pina_STATICtoken000 rotatedXYZ123456"))
	assert.Equal(t, "rotatedXYZ123456", base.redact("rotatedXYZ123456"), "with leaves the base redactor alone")
}

func TestRedactScrubsAnyPinterestToken(t *testing.T) {
	r := newRedactor(nil)
	for in, want := range map[string]string{
		"token pina_UNKNOWNtoken.value== expired": "token [REDACTED] expired",
		"pina_abc is 8 characters":                "[REDACTED] is 8 characters",
		"pina_ab is shorter than a fragment":      "pina_ab is shorter than a fragment",
		"no token here":                           "no token here",
	} {
		assert.Equal(t, want, r.redact(in), in)
	}
}
