package cohorts

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testNow is the decoder clock of every test, so that ts bounds are fixed.
var testNow = time.Date(2026, 11, 22, 20, 0, 0, 0, time.UTC)

const goodMessage = `{"user_id":"u123","cohort_id":"c123","action":"enter",
 "ts":"2026-11-22T19:05:01.123456789Z",
 "identifiers":{"email":" User123@Example.COM ","maid":"AAAA-BBBB","external_id":"Ext-1",
  "ip":"203.0.113.7","user_agent":"Mozilla/5.0"},
 "activation_ids":["brand-a-c123"],
 "producer_added_field":{"any":"thing"}}`

// decodeCase is one row of the Decode table; the fuzz target is seeded with
// every input.
type decodeCase struct {
	name   string
	input  string
	reason DecodeReason // "" means success
	field  string
}

// withField returns the good message's fields with one replaced (or, with
// the value "-", removed), re-encoded.
func withField(t testing.TB, key, rawValue string) string {
	t.Helper()
	var obj map[string]json.RawMessage
	require.NoError(t, json.Unmarshal([]byte(goodMessage), &obj))
	if rawValue == "-" {
		delete(obj, key)
	} else {
		obj[key] = json.RawMessage(rawValue)
	}
	b, err := json.Marshal(obj)
	require.NoError(t, err)
	return string(b)
}

func decodeCases(t testing.TB) []decodeCase {
	return []decodeCase{
		{name: "a message with every identifier kind decodes", input: goodMessage},
		{name: "a minimal exit without identifiers decodes",
			input: `{"user_id":"u","cohort_id":"c","action":"exit","ts":"2026-11-22T19:05:01Z"}`},
		{name: "a ts with an offset decodes", input: withField(t, "ts", `"2026-11-22T20:05:01+01:00"`)},
		{name: "an empty identifiers object decodes", input: withField(t, "identifiers", `{}`)},
		{name: "null identifiers decode", input: withField(t, "identifiers", `null`)},
		{name: "an already hashed email decodes",
			input: withField(t, "identifiers", `{"email":"B4C9A289323B21A01C3E940F150EB9B8C542587F1ABFD8F0E1CC1FFC5E475514"}`)},
		{name: "an IPv6 address decodes", input: withField(t, "identifiers", `{"ip":"2001:db8::1"}`)},

		{name: "a 1 MB message is too large", input: `{"user_id":"` + strings.Repeat("u", 1<<20) + `"}`,
			reason: DecodeTooLarge},
		{name: "a message one byte over the limit is too large",
			input: `{"x":"` + strings.Repeat("x", MaxMessageBytes-7) + `"}`, reason: DecodeTooLarge},

		{name: "invalid UTF-8 bytes in a value are rejected",
			input:  `{"user_id":"u` + "\xff\xfe" + `","cohort_id":"c","action":"enter","ts":"2026-11-22T19:05:01Z"}`,
			reason: DecodeInvalidUTF8},
		{name: "a truncated multi-byte character is rejected", input: "{\"user_id\":\"\xe2\x82\"}",
			reason: DecodeInvalidUTF8},

		{name: "an array is malformed", input: `[1]`, reason: DecodeMalformedJSON},
		{name: "null is malformed", input: `null`, reason: DecodeMalformedJSON},
		{name: "a string is malformed", input: `"hello"`, reason: DecodeMalformedJSON},
		{name: "an empty message is malformed", input: ``, reason: DecodeMalformedJSON},
		{name: "a second object after the first is malformed", input: `{"a":1} {}`, reason: DecodeMalformedJSON},
		{name: "truncated JSON is malformed", input: goodMessage[:40], reason: DecodeMalformedJSON},

		{name: "a missing user_id is reported", input: withField(t, "user_id", "-"),
			reason: DecodeMissingField, field: "user_id"},
		{name: "a blank user_id is missing", input: withField(t, "user_id", `"  "`),
			reason: DecodeMissingField, field: "user_id"},
		{name: "a missing cohort_id is reported", input: withField(t, "cohort_id", "-"),
			reason: DecodeMissingField, field: "cohort_id"},
		{name: "a null cohort_id is missing", input: withField(t, "cohort_id", "null"),
			reason: DecodeMissingField, field: "cohort_id"},
		{name: "a missing action is reported", input: withField(t, "action", "-"),
			reason: DecodeMissingField, field: "action"},
		{name: "a missing ts is reported", input: withField(t, "ts", "-"),
			reason: DecodeMissingField, field: "ts"},

		{name: "a numeric user_id is invalid", input: withField(t, "user_id", `123`),
			reason: DecodeInvalidField, field: "user_id"},
		{name: "a numeric ts is invalid", input: withField(t, "ts", `1700000000`),
			reason: DecodeInvalidField, field: "ts"},
		{name: "a string as identifiers is invalid", input: withField(t, "identifiers", `"x"`),
			reason: DecodeInvalidField, field: "identifiers"},
		{name: "a numeric ip is invalid", input: withField(t, "identifiers", `{"ip":7}`),
			reason: DecodeInvalidField, field: "identifiers.ip"},
		{name: "a user_id over 256 bytes is invalid", input: withField(t, "user_id", `"`+strings.Repeat("u", 257)+`"`),
			reason: DecodeInvalidField, field: "user_id"},
		{name: "a cohort_id with a leading space is invalid", input: withField(t, "cohort_id", `" c123"`),
			reason: DecodeInvalidField, field: "cohort_id"},
		{name: "a cohort_id with a control character is invalid", input: withField(t, "cohort_id", `"c\u0001"`),
			reason: DecodeInvalidField, field: "cohort_id"},
		{name: "the action join is invalid", input: withField(t, "action", `"join"`),
			reason: DecodeInvalidField, field: "action"},
		{name: "an uppercase action is invalid", input: withField(t, "action", `"ENTER"`),
			reason: DecodeInvalidField, field: "action"},
		{name: "the ts yesterday is invalid", input: withField(t, "ts", `"yesterday"`),
			reason: DecodeInvalidField, field: "ts"},
		{name: "a ts in 1900 is too far in the past", input: withField(t, "ts", `"1900-01-01T00:00:00Z"`),
			reason: DecodeInvalidField, field: "ts"},
		{name: "a ts next year is too far in the future", input: withField(t, "ts", `"2027-11-22T19:05:01Z"`),
			reason: DecodeInvalidField, field: "ts"},
		{name: "the ip 999.1.1.1 is invalid", input: withField(t, "identifiers", `{"ip":"999.1.1.1"}`),
			reason: DecodeInvalidField, field: "identifiers.ip"},
		{name: "an ip with a zone is invalid", input: withField(t, "identifiers", `{"ip":"fe80::1%eth0"}`),
			reason: DecodeInvalidField, field: "identifiers.ip"},
		{name: "the email nope is invalid", input: withField(t, "identifiers", `{"email":"nope"}`),
			reason: DecodeInvalidField, field: "identifiers.email"},
		{name: "a blank activation id is invalid", input: withField(t, "activation_ids", `["a",""]`),
			reason: DecodeInvalidField, field: "activation_ids"},
		{name: "a numeric activation id is invalid", input: withField(t, "activation_ids", `[1]`),
			reason: DecodeInvalidField, field: "activation_ids"},
	}
}

func TestDecode(t *testing.T) {
	for _, tc := range decodeCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Decode([]byte(tc.input), testNow)
			if tc.reason == "" {
				require.NoError(t, err)
				assert.NotEmpty(t, m.UserID)
				assert.NotEmpty(t, m.CohortID)
				return
			}
			var de *DecodeError
			require.ErrorAs(t, err, &de)
			assert.Equal(t, tc.reason, de.Reason, "reason; error: %v", err)
			assert.Equal(t, tc.field, de.Field, "field; error: %v", err)
			assert.Equal(t, Membership{}, m)
			assert.LessOrEqual(t, len(de.Error()), 400, "details are bounded")
		})
	}
}

func TestDecodeTableCoversEveryReasonTwice(t *testing.T) {
	seen := map[DecodeReason]int{}
	for _, tc := range decodeCases(t) {
		seen[tc.reason]++
	}
	for _, r := range DecodeReasons {
		assert.GreaterOrEqual(t, seen[r], 2, "reason %s", r)
	}
}

func TestDecodeKeepsEveryField(t *testing.T) {
	m, err := Decode([]byte(goodMessage), testNow)
	require.NoError(t, err)
	assert.Equal(t, Membership{
		UserID:   "u123",
		CohortID: "c123",
		Action:   ActionEnter,
		TS:       time.Date(2026, 11, 22, 19, 5, 1, 123456789, time.UTC),
		Identifiers: Identifiers{
			Email:      " User123@Example.COM ",
			MAID:       "AAAA-BBBB",
			ExternalID: "Ext-1",
			IP:         "203.0.113.7",
			UserAgent:  "Mozilla/5.0",
		},
		ActivationIDs: []string{"brand-a-c123"},
	}, m)
}

func TestDecodeStoresTSInUTC(t *testing.T) {
	m, err := Decode([]byte(withField(t, "ts", `"2026-11-22T20:05:01+01:00"`)), testNow)
	require.NoError(t, err)
	assert.Equal(t, time.UTC, m.TS.Location())
	assert.True(t, m.TS.Equal(time.Date(2026, 11, 22, 19, 5, 1, 0, time.UTC)))
}

func TestDecodeTSBoundsAreInclusive(t *testing.T) {
	for _, tc := range []struct {
		name string
		ts   time.Time
		ok   bool
	}{
		{"the first instant of 2000 is accepted", minTS, true},
		{"one nanosecond before 2000 is rejected", minTS.Add(-time.Nanosecond), false},
		{"exactly one hour ahead of now is accepted", testNow.Add(time.Hour), true},
		{"one nanosecond beyond one hour ahead is rejected", testNow.Add(time.Hour + time.Nanosecond), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode([]byte(withField(t, "ts", strconv.Quote(tc.ts.Format(time.RFC3339Nano)))), testNow)
			if tc.ok {
				require.NoError(t, err)
				return
			}
			var de *DecodeError
			require.True(t, errors.As(err, &de))
			assert.Equal(t, "ts", de.Field)
			assert.Regexp(t, "too far in the (past|future)", de.Detail)
		})
	}
}

func TestDecodeErrorMessage(t *testing.T) {
	assert.Equal(t, "missing_field: cohort_id: required",
		(&DecodeError{Reason: DecodeMissingField, Field: "cohort_id", Detail: "required"}).Error())
	assert.Equal(t, "malformed_json: message is not a JSON object",
		(&DecodeError{Reason: DecodeMalformedJSON, Detail: "message is not a JSON object"}).Error())
}

func FuzzDecode(f *testing.F) {
	for _, tc := range decodeCases(f) {
		if len(tc.input) <= MaxMessageBytes {
			f.Add([]byte(tc.input))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data, testNow)
		requireSameDecode(t, data, m, err)
		if err != nil {
			var de *DecodeError
			require.ErrorAs(t, err, &de)
			require.Contains(t, DecodeReasons, de.Reason)
			require.Equal(t, Membership{}, m)
			return
		}
		require.Contains(t, []Action{ActionEnter, ActionExit}, m.Action)
		require.NotEmpty(t, strings.TrimSpace(m.CohortID))
		require.NotEmpty(t, strings.TrimSpace(m.UserID))
		require.False(t, m.TS.Before(minTS))
		require.False(t, m.TS.After(testNow.Add(maxTSAhead)))

		again, err := json.Marshal(m)
		require.NoError(t, err)
		m2, err := Decode(again, testNow)
		require.NoError(t, err, "re-encoded: %s", again)
		require.Equal(t, m, m2)
		require.Equal(t, m.EventID(), m2.EventID())
	})
}
