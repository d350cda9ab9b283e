package pinterest

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// plainAnswer is an answer as the simulator (and, per the spec, Pinterest)
// writes it.
func plainAnswer(rng *rand.Rand) string {
	events := []string{`{"status":"processed"}`, `{"status":"failed","error_message":"Invalid event_time."}`,
		`{"status":"processed","warning_message":"w","error_message":""}`, `{"status":"processed","error_message":"","warning_message":""}`}
	var parts []string
	for range rng.IntN(5) {
		parts = append(parts, events[rng.IntN(len(events))])
	}
	return `{"num_events_received":` + "3" + `,"num_events_processed":2,"events":[` + strings.Join(parts, ",") + "]}"
}

// mutateAnswer takes an answer out of the plain shape, or breaks it.
func mutateAnswer(rng *rand.Rand, s string) string {
	edits := []func(string) string{
		func(s string) string { return strings.Replace(s, `"status"`, `"Status"`, 1) },
		func(s string) string { return strings.Replace(s, `"processed"`, `"proc\u0065ssed"`, 1) },
		func(s string) string { return strings.Replace(s, `{"status"`, `{"status":"x","status"`, 1) },
		func(s string) string { return strings.Replace(s, `"events":[`, `"events":null,"e":[`, 1) },
		func(s string) string { return strings.Replace(s, `2`, `02`, 1) },
		func(s string) string { return strings.Replace(s, `2`, `-2`, 1) },
		func(s string) string { return strings.Replace(s, `2`, `2.5`, 1) },
		func(s string) string { return strings.Replace(s, `3`, `"3"`, 1) },
		func(s string) string { return strings.Replace(s, `"processed"`, `7`, 1) },
		func(s string) string {
			return strings.Replace(s, `"num_events_received"`, `"other":{"a":[1]},"num_events_received"`, 1)
		},
		func(s string) string { return strings.Replace(s, `]`, `,]`, 1) },
		func(s string) string { return s + ` {"more":1}` },
		func(s string) string { return s + "\xff" },
		func(s string) string { return strings.Replace(s, `Invalid`, "In\xffvalid", 1) },
		func(s string) string { return s[:rng.IntN(len(s)+1)] },
		func(s string) string {
			i := rng.IntN(len(s) + 1)
			return s[:i] + string(rune(rng.IntN(128))) + s[i:]
		},
	}
	for range 1 + rng.IntN(2) {
		s = edits[rng.IntN(len(edits))](s)
	}
	return s
}

// TestDecodeEventsResponseIsJSONDecode: on 50,000 answers, plain and
// mutated, the fast path gives what json.Decoder gives.
func TestDecodeEventsResponseIsJSONDecode(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	plain := 0
	for i := range 50_000 {
		body := plainAnswer(rng)
		if i%2 == 1 {
			body = mutateAnswer(rng, body)
		}
		var want, got EventsResponse
		wantErr := json.NewDecoder(bytes.NewReader([]byte(body))).Decode(&want)
		gotErr := decodeEventsResponse([]byte(body), &got)
		if wantErr != nil {
			require.Error(t, gotErr, "%q", body)
			require.Equal(t, wantErr.Error(), gotErr.Error(), "%q", body)
			continue
		}
		require.NoError(t, gotErr, "%q", body)
		require.Equal(t, want, got, "%q", body)
		var r EventsResponse
		if scanEventsResponse(body, &r) {
			plain++
		}
	}
	require.Greater(t, plain, 25_000, "too few answers took the fast path")
}
