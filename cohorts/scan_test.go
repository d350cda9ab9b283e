package cohorts

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// requireSameDecode fails unless m, err (from Decode) are what the
// reference, encoding/json alone, gives for data.
func requireSameDecode(t testing.TB, data []byte, m Membership, err error) {
	t.Helper()
	wantM, wantErr := decodeReference(data, testNow)
	require.Equal(t, wantM, m, "membership of %q", data)
	if wantErr == nil {
		require.NoError(t, err, "%q", data)
		return
	}
	require.Error(t, err, "%q", data)
	require.Equal(t, wantErr.Error(), err.Error(), "%q", data)
}

// plainMessages are messages as producers send them: the shape scanPlain
// reads.
var plainMessages = []string{
	`{"user_id":"bench-1","cohort_id":"c-7","action":"enter","ts":"2026-11-22T19:05:01.123456789Z","identifiers":{"email":"Bench.User1@Example.com"}}`,
	`{"user_id":"u","cohort_id":"c","action":"exit","ts":"2026-11-22T19:05:01Z","identifiers":{"maid":"AAAA-BBBB","ip":"203.0.113.7","user_agent":"Mozilla/5.0 (X11)"},"activation_ids":["a1","a2"]}`,
	" {\n \"action\" : \"enter\" ,\t\"ts\":\"2026-11-22T19:05:01+02:00\", \"cohort_id\":\"c\",\"user_id\":\"ü\", \"identifiers\":{}, \"activation_ids\":[] }\r\n",
	`{"user_id":"u","cohort_id":"c","action":"enter","ts":"2026-11-22T19:05:01Z","identifiers":{"email":"x@y","external_id":"E-1"}}`,
}

func TestScanPlainReadsWhatProducersSend(t *testing.T) {
	for _, msg := range plainMessages {
		var w wireMembership
		require.True(t, scanPlain(msg, &w), "declined: %s", msg)
		m, err := Decode([]byte(msg), testNow)
		requireSameDecode(t, []byte(msg), m, err)
	}
}

// mutate changes msg the ways that take it out of the plain shape or
// break it: keys in other case, escapes, repeated and unknown fields,
// other JSON types, stray or missing bytes, bad values.
func mutate(rng *rand.Rand, msg string) string {
	edits := []func(string) string{
		func(s string) string { return strings.Replace(s, `"user_id"`, `"User_ID"`, 1) },
		func(s string) string { return strings.Replace(s, `"email"`, `"EMAIL"`, 1) },
		func(s string) string { return strings.Replace(s, `"enter"`, `"ent\u0065r"`, 1) },
		func(s string) string { return strings.Replace(s, `"c`, `"\"c`, 1) },
		func(s string) string { return strings.Replace(s, `"c`, "\"\tc", 1) },
		func(s string) string { return strings.Replace(s, `{"user_id"`, `{"user_id":"dup","user_id"`, 1) },
		func(s string) string { return strings.Replace(s, `{"email"`, `{"email":"a@b","email"`, 1) },
		func(s string) string { return strings.Replace(s, `"action"`, `"extra":{"n":[1,2,null]},"action"`, 1) },
		func(s string) string { return strings.Replace(s, `"enter"`, `1`, 1) },
		func(s string) string { return strings.Replace(s, `"enter"`, `null`, 1) },
		func(s string) string { return strings.Replace(s, `"enter"`, `"leave"`, 1) },
		func(s string) string { return strings.Replace(s, `"2026`, `"1999`, 1) },
		func(s string) string { return strings.Replace(s, `"2026`, `"2126`, 1) },
		func(s string) string { return strings.Replace(s, `Z"`, `"`, 1) },
		func(s string) string { return strings.Replace(s, `"u`, `" `, 1) },
		func(s string) string { return strings.Replace(s, `"c-7"`, `"c 7"`, 1) },
		func(s string) string { return strings.Replace(s, `203.0.113.7`, `203.0.113`, 1) },
		func(s string) string { return strings.Replace(s, `x@y`, `xy`, 1) },
		func(s string) string { return strings.Replace(s, `["a1"`, `["  "`, 1) },
		func(s string) string { return strings.Replace(s, `]`, `,]`, 1) },
		func(s string) string { return strings.Replace(s, `}`, `,}`, 1) },
		func(s string) string { return strings.Replace(s, `:`, ``, 1) },
		func(s string) string { return strings.Replace(s, `"identifiers":{`, `"identifiers":null,"x":{`, 1) },
		func(s string) string { return s + `{}` },
		func(s string) string { return s + ` x` },
		func(s string) string { return `[` + s + `]` },
		func(s string) string {
			i := rng.IntN(len(s) + 1)
			return s[:i]
		},
		func(s string) string {
			i := rng.IntN(len(s) + 1)
			return s[:i] + string(rune(rng.IntN(128))) + s[i:]
		},
		func(s string) string {
			if s == "" {
				return s
			}
			i := rng.IntN(len(s))
			return s[:i] + s[i+1:]
		},
	}
	for range 1 + rng.IntN(3) {
		msg = edits[rng.IntN(len(edits))](msg)
	}
	return msg
}

// TestDecodeAgreesWithEncodingJSON: on 100,000 mutated messages, Decode
// (scanPlain, then encoding/json for what it declines) gives exactly the
// membership or error that encoding/json alone gives.
func TestDecodeAgreesWithEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	plain := 0
	for range 100_000 {
		msg := mutate(rng, plainMessages[rng.IntN(len(plainMessages))])
		var w wireMembership
		if scanPlain(msg, &w) {
			plain++
		}
		m, err := Decode([]byte(msg), testNow)
		requireSameDecode(t, []byte(msg), m, err)
	}
	t.Logf("%d of 100000 mutated messages read by scanPlain", plain)
	require.Greater(t, plain, 10_000, "too few mutants in the plain shape: the comparison says little about scanPlain")
}
