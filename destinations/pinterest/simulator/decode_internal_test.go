package simulator

import (
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// plainEventsBody is a request body as a sender writes it, with now and
// then a property the spec allows but the daemon never sends.
func plainEventsBody(rng *rand.Rand) string {
	var b strings.Builder
	b.WriteString(`{"data":[`)
	for i := range 1 + rng.IntN(4) {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"event_name":"custom","action_source":"web","event_time":` + strconv.Itoa(1_700_000_000+rng.IntN(1e6)) +
			`,"event_id":"ev-` + strconv.Itoa(rng.IntN(1e9)) + `","user_data":{"em":["` + strings.Repeat("ab", 32) + `"]`)
		if rng.IntN(3) == 0 {
			b.WriteString(`,"external_id":["` + strings.Repeat("0f", 32) + `"],"ph":["x"],"country":{"a":[1,{"b":null}]}`)
		}
		b.WriteString(`},"custom_data":{"content_ids":["cohort-` + strconv.Itoa(rng.IntN(200)) + `"],"content_name":"cohort_enter"`)
		if rng.IntN(3) == 0 {
			b.WriteString(`,"value":"12.5","num_items":3,"contents":[{"quantity":1}]`)
		}
		b.WriteString(`},"partner_name":"ss-cohort-connector"`)
		if rng.IntN(4) == 0 {
			b.WriteString(`,"app_id":"1","opt_out":false,"wifi":true,"language":"en"`)
		}
		b.WriteByte('}')
	}
	b.WriteString(`]}`)
	return b.String()
}

// mutateBody breaks a body, or takes it where decoders are known to part:
// case-insensitive keys, escapes, duplicates, wrong types, numbers,
// invalid UTF-8, unknown properties, nulls, trailing data, truncation.
func mutateBody(rng *rand.Rand, s string) string {
	edits := []func(string) string{
		func(s string) string { return strings.Replace(s, `"event_name"`, `"Event_Name"`, 1) },
		func(s string) string { return strings.Replace(s, `"event_id"`, `"event_\u0069d"`, 1) },
		func(s string) string { return strings.Replace(s, `"event_id":`, `"event_id":"dup","event_id":`, 1) },
		func(s string) string { return strings.Replace(s, `"user_data":{`, `"user_data":{"bogus":1,`, 1) },
		func(s string) string { return strings.Replace(s, `"custom_data":{`, `"custom_data":{"Value":1,`, 1) },
		func(s string) string { return strings.Replace(s, `{"data"`, `{"extra":[],"data"`, 1) },
		func(s string) string { return strings.Replace(s, `"custom_data":{`, `"custom_data":null,"x":{`, 1) },
		func(s string) string {
			return strings.Replace(s, `"custom_data":{`, `"custom_data":null,"custom_data":{`, 1)
		},
		func(s string) string { return strings.Replace(s, `"user_data":{`, `"user_data":null,"user_data":{`, 1) },
		func(s string) string { return strings.Replace(s, `"event_time":1`, `"event_time":"1`, 1) },
		func(s string) string { return strings.Replace(s, `"event_time":1`, `"event_time":1.5e0+`, 1) },
		func(s string) string { return strings.Replace(s, `"event_time":1`, `"event_time":-01`, 1) },
		func(s string) string { return strings.Replace(s, `"event_time":1`, `"event_time":1e3,"z":1`, 1) },
		func(s string) string {
			return strings.Replace(s, `"event_time":1`, `"event_time":99999999999999999999`, 1)
		},
		func(s string) string {
			return strings.Replace(s, `"event_time":`, `"event_time":null,"event_time":`, 1)
		},
		func(s string) string { return strings.Replace(s, `"em":["`, `"em":"`, 1) },
		func(s string) string { return strings.Replace(s, `"em":[`, `"em":[null,1,`, 1) },
		func(s string) string { return strings.Replace(s, `"em":[`, `"em":null,"hashed_maids":[`, 1) },
		func(s string) string { return strings.Replace(s, `"web"`, `"w\u00e9b\ud800"`, 1) },
		func(s string) string { return strings.Replace(s, `"web"`, "\"w\xffb\"", 1) },
		func(s string) string { return strings.Replace(s, `"web"`, "\"w\tb\"", 1) },
		func(s string) string { return strings.Replace(s, `"web"`, `"w\/b\"\\"`, 1) },
		func(s string) string { return strings.Replace(s, `"country":{"a"`, `"country":{"a":}`, 1) },
		func(s string) string { return strings.Replace(s, `"contents":[{`, `"contents":[{,`, 1) },
		func(s string) string { return strings.Replace(s, `"value":"12.5"`, `"value":tru`, 1) },
		func(s string) string { return strings.Replace(s, `"wifi":true`, `"wifi":nul`, 1) },
		func(s string) string { return strings.Replace(s, `]}`, `],}`, 1) },
		func(s string) string { return strings.Replace(s, `:`, ` : `, 3) },
		func(s string) string { return strings.Replace(s, `{"data":[`, `{"data":{`, 1) },
		func(s string) string { return strings.Replace(s, `{"data":[`, `{"data":null`, 1) },
		func(s string) string { return s + " \n" },
		func(s string) string { return s + ` {}` },
		func(s string) string { return s + `x` },
		func(s string) string { return "\ufeff" + s },
		func(s string) string { return s[:rng.IntN(len(s)+1)] },
		func(s string) string {
			i := rng.IntN(len(s) + 1)
			return s[:i] + string(rune(rng.IntN(128))) + s[i:]
		},
		func(s string) string {
			i := rng.IntN(len(s))
			return s[:i] + s[i+1:]
		},
	}
	for range 1 + rng.IntN(2) {
		s = edits[rng.IntN(len(edits))](s)
	}
	return s
}

// TestStrictDecodeIsEncodingJSON: on 60,000 request bodies, plain and
// mutated, strictDecode accepts exactly what encoding/json accepts, with the
// same value, and refuses with encoding/json's error text. Events bodies
// mostly; the audience and customer list bodies go through the same
// function.
func TestStrictDecodeIsEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	others := []struct {
		body string
		typ  reflect.Type
	}{
		{`{"ad_account_id":"1","name":"n","rule":{"visitor_source_id":["2612345678901"],"retention_days":30,"event":"custom"},"audience_type":"VISITOR","description":"d"}`,
			reflect.TypeFor[audienceCreate]()},
		{`{"ad_account_id":"1","name":"n","operation_type":"UPDATE","description":"d"}`, reflect.TypeFor[audienceUpdate]()},
		{`{"name":"l","records":"` + strings.Repeat("ab", 32) + `","list_type":"EMAIL"}`, reflect.TypeFor[customerListCreate]()},
		{`{"records":"` + strings.Repeat("ab", 32) + `,` + strings.Repeat("cd", 32) + `","operation_type":"ADD"}`, reflect.TypeFor[customerListUpdate]()},
	}
	accepted, refused := 0, 0
	for i := range 60_000 {
		body, typ := plainEventsBody(rng), reflect.TypeFor[wireRequest]()
		if i%10 == 9 {
			o := others[rng.IntN(len(others))]
			body, typ = o.body, o.typ
		}
		if i%3 != 0 {
			body = mutateBody(rng, body)
		}
		want, got := reflect.New(typ), reflect.New(typ)
		wantErr := stdDecode([]byte(body), want.Interface())
		gotErr := strictDecode([]byte(body), got.Interface())
		if wantErr != nil {
			require.Error(t, gotErr, "go-json accepted what encoding/json refuses: %q", body)
			require.Equal(t, wantErr.Error(), gotErr.Error(), "%q", body)
			refused++
			continue
		}
		require.NoError(t, gotErr, "%q", body)
		require.Equal(t, want.Interface(), got.Interface(), "%q", body)
		accepted++
	}
	t.Logf("%d bodies accepted alike, %d refused alike", accepted, refused)
	require.Greater(t, accepted, 20_000)
	require.Greater(t, refused, 10_000)
}
