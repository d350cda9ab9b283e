package cohorts

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Action is what happened to a user's membership of a cohort.
type Action string

// The two actions a membership change can carry; anything else is rejected
// by [Decode].
const (
	ActionEnter Action = "enter"
	ActionExit  Action = "exit"
)

// Identifiers are the user identifiers a producer attached to a membership
// change, as sent: plain or already SHA-256 hashed, not yet normalised. All
// are optional; [Identifiers.Hash] normalises and hashes them and
// [Hashed.Matchable] tells whether Pinterest can match the result.
type Identifiers struct {
	Email      string `json:"email,omitempty"`
	MAID       string `json:"maid,omitempty"`
	ExternalID string `json:"external_id,omitempty"`
	IP         string `json:"ip,omitempty"`
	UserAgent  string `json:"user_agent,omitempty"`
}

// Membership is one decoded and validated membership change: user UserID
// entered or left cohort CohortID at TS. Only [Decode] should build one from
// untrusted input; it guarantees the rules documented there.
type Membership struct {
	UserID   string `json:"user_id"`
	CohortID string `json:"cohort_id"`
	Action   Action `json:"action"`
	// TS is when the change happened, in UTC.
	TS          time.Time   `json:"ts"`
	Identifiers Identifiers `json:"identifiers"`
	// ActivationIDs, when non-empty, restricts the change to these
	// activations of CohortID (see [Resolver.Resolve]). nil when absent.
	ActivationIDs []string `json:"activation_ids,omitempty"`
}

// DecodeReason says why [Decode] rejected a message. The values are stable:
// they are metric labels and DLQ headers.
type DecodeReason string

// The reasons a message is rejected, in the order Decode checks for them.
const (
	DecodeTooLarge      DecodeReason = "too_large"      // len(data) > MaxMessageBytes
	DecodeInvalidUTF8   DecodeReason = "invalid_utf8"   // data is not valid UTF-8
	DecodeMalformedJSON DecodeReason = "malformed_json" // not a JSON object / syntax error / trailing data
	DecodeMissingField  DecodeReason = "missing_field"  // a required field is absent, null or blank
	DecodeInvalidField  DecodeReason = "invalid_field"  // wrong JSON type, bad value
)

// DecodeReasons lists every [DecodeReason], so that metrics can pre-initialise
// one series per label value. Do not modify it.
var DecodeReasons = []DecodeReason{
	DecodeTooLarge,
	DecodeInvalidUTF8,
	DecodeMalformedJSON,
	DecodeMissingField,
	DecodeInvalidField,
}

// MaxMessageBytes is the largest message [Decode] accepts (64 KiB). A
// membership change is a few hundred bytes; anything near this is a
// producer bug, not data.
const MaxMessageBytes = 64 << 10

// Limits on the fields of a membership, checked by Decode.
const (
	maxIDBytes = 256 // user_id and cohort_id, in bytes
	// maxDetailValue bounds how much of an offending value a DecodeError
	// echoes, since Details end up in logs and NATS headers.
	maxDetailValue = 64
)

// Bounds on Membership.TS: minTS is the earliest accepted, maxTSAhead how far
// past the decoder's clock a ts may lie (clock skew between hosts).
var minTS = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

const maxTSAhead = time.Hour

// DecodeError is the only error type [Decode] returns. Reason is one of
// [DecodeReasons]; Field names the offending JSON field, dotted for nested
// ones ("identifiers.ip"), and is empty when the message as a whole is bad.
type DecodeError struct {
	Reason DecodeReason
	Field  string
	Detail string
}

// Error returns "reason: field: detail", or "reason: detail" without a field,
// e.g. "missing_field: cohort_id: required".
func (e *DecodeError) Error() string {
	if e.Field == "" {
		return string(e.Reason) + ": " + e.Detail
	}
	return string(e.Reason) + ": " + e.Field + ": " + e.Detail
}

func decodeErr(reason DecodeReason, field, detail string) *DecodeError {
	return &DecodeError{Reason: reason, Field: field, Detail: detail}
}

// wireMembership is the JSON shape of a message. ts is a string so that a bad
// timestamp is reported as field "ts" instead of an opaque time parse error.
type wireMembership struct {
	UserID        string      `json:"user_id"`
	CohortID      string      `json:"cohort_id"`
	Action        string      `json:"action"`
	TS            string      `json:"ts"`
	Identifiers   Identifiers `json:"identifiers"`
	ActivationIDs []string    `json:"activation_ids"`
}

// Decode parses and validates one membership change. now is the decoder's
// clock, used only for the upper bound of ts. The error, if any, is always a
// *[DecodeError]; a message that fails to decode is permanently bad and must
// not be retried.
//
// Checks, in order (the first failure is returned):
//   - size: at most [MaxMessageBytes] (too_large);
//   - encoding: valid UTF-8 (invalid_utf8);
//   - syntax: exactly one JSON object, nothing after it; null, arrays and
//     scalars are rejected (malformed_json). Unknown fields are allowed, so
//     that producers can add fields without breaking the connector. As with
//     encoding/json, field names match case-insensitively and the last of
//     duplicate fields wins;
//   - JSON types of known fields (invalid_field, naming the field);
//   - user_id: required (absent, null or blank is missing_field), kept as
//     sent, at most 256 bytes;
//   - cohort_id: required, at most 256 bytes, no whitespace or control
//     characters anywhere (so leading/trailing spaces are invalid_field, not
//     trimmed);
//   - action: required, exactly "enter" or "exit";
//   - ts: required, an RFC 3339 string (fractional seconds allowed), no
//     earlier than 2000-01-01T00:00:00Z and no later than now+1h. It is
//     stored in UTC;
//   - identifiers: all optional, and absent or empty identifiers are valid
//     (the membership is then simply not matchable). A non-blank ip must be an
//     IPv4 or IPv6 address without zone; a non-blank email must, trimmed,
//     contain "@" or be 64 hex digits (an already hashed email);
//   - activation_ids: optional; every entry must be non-blank. An empty list
//     is the same as none (nil).
//
// A required string field that is present but empty counts as missing.
//
// A message in the plain shape producers send is read without
// encoding/json (scanPlain), with the same result; everything else goes
// through encoding/json.
func Decode(data []byte, now time.Time) (Membership, error) {
	if err := checkMessage(data); err != nil {
		return Membership{}, err
	}
	var w wireMembership
	if !scanPlain(string(data), &w) {
		return decodeJSON(data, now)
	}
	return w.validate(now)
}

// decodeReference is Decode without scanPlain: encoding/json alone. The
// tests hold Decode to it.
func decodeReference(data []byte, now time.Time) (Membership, error) {
	if err := checkMessage(data); err != nil {
		return Membership{}, err
	}
	return decodeJSON(data, now)
}

// decodeJSON decodes a checked message with encoding/json.
func decodeJSON(data []byte, now time.Time) (Membership, error) {
	var w wireMembership
	if err := json.Unmarshal(data, &w); err != nil {
		return Membership{}, jsonDecodeError(err)
	}
	return w.validate(now)
}

// checkMessage checks what comes before the JSON: size, encoding, and that
// it is an object.
func checkMessage(data []byte) error {
	if len(data) > MaxMessageBytes {
		return decodeErr(DecodeTooLarge, "",
			fmt.Sprintf("message is %d bytes, the limit is %d", len(data), MaxMessageBytes))
	}
	if !utf8.Valid(data) {
		return decodeErr(DecodeInvalidUTF8, "", "message is not valid UTF-8")
	}
	// json.Unmarshal accepts null (leaving the struct untouched) and reports
	// arrays or scalars as a type error without a field, so check for an
	// object first. It does reject trailing data itself.
	if !startsWithObject(data) {
		return decodeErr(DecodeMalformedJSON, "", "message is not a JSON object")
	}
	return nil
}

// validate checks the fields of a decoded message (the rules of Decode)
// and builds its Membership.
func (w wireMembership) validate(now time.Time) (Membership, error) {
	if strings.TrimSpace(w.UserID) == "" {
		return Membership{}, decodeErr(DecodeMissingField, "user_id", "required")
	}
	if len(w.UserID) > maxIDBytes {
		return Membership{}, decodeErr(DecodeInvalidField, "user_id",
			fmt.Sprintf("%d bytes, the limit is %d", len(w.UserID), maxIDBytes))
	}
	if strings.TrimSpace(w.CohortID) == "" {
		return Membership{}, decodeErr(DecodeMissingField, "cohort_id", "required")
	}
	if detail := checkCohortID(w.CohortID); detail != "" {
		return Membership{}, decodeErr(DecodeInvalidField, "cohort_id", detail)
	}
	var action Action
	switch w.Action {
	case "":
		return Membership{}, decodeErr(DecodeMissingField, "action", "required")
	case string(ActionEnter):
		action = ActionEnter
	case string(ActionExit):
		action = ActionExit
	default:
		return Membership{}, decodeErr(DecodeInvalidField, "action",
			fmt.Sprintf(`%s is not "enter" or "exit"`, quoteShort(w.Action)))
	}
	if w.TS == "" {
		return Membership{}, decodeErr(DecodeMissingField, "ts", "required")
	}
	ts, err := time.Parse(time.RFC3339Nano, w.TS)
	if err != nil {
		return Membership{}, decodeErr(DecodeInvalidField, "ts",
			fmt.Sprintf("not RFC 3339: %s", quoteShort(w.TS)))
	}
	ts = ts.UTC()
	if ts.Before(minTS) {
		return Membership{}, decodeErr(DecodeInvalidField, "ts",
			fmt.Sprintf("too far in the past: %s is before %s", ts.Format(time.RFC3339Nano), minTS.Format(time.RFC3339)))
	}
	if limit := now.Add(maxTSAhead); ts.After(limit) {
		return Membership{}, decodeErr(DecodeInvalidField, "ts",
			fmt.Sprintf("too far in the future: %s is after now+%s (%s)", ts.Format(time.RFC3339Nano), maxTSAhead, limit.UTC().Format(time.RFC3339)))
	}
	if ip := strings.TrimSpace(w.Identifiers.IP); ip != "" {
		addr, err := netip.ParseAddr(ip)
		if err != nil || addr.Zone() != "" {
			return Membership{}, decodeErr(DecodeInvalidField, "identifiers.ip",
				fmt.Sprintf("not an IP address: %s", quoteShort(ip)))
		}
	}
	if email := strings.TrimSpace(w.Identifiers.Email); email != "" {
		if !strings.Contains(email, "@") && !isHex64(email) {
			return Membership{}, decodeErr(DecodeInvalidField, "identifiers.email",
				"neither an email address (no @) nor a SHA-256 hex digest")
		}
	}
	for i, id := range w.ActivationIDs {
		if strings.TrimSpace(id) == "" {
			return Membership{}, decodeErr(DecodeInvalidField, "activation_ids",
				fmt.Sprintf("entry %d is blank", i))
		}
	}
	if len(w.ActivationIDs) == 0 {
		w.ActivationIDs = nil
	}

	return Membership{
		UserID:        w.UserID,
		CohortID:      w.CohortID,
		Action:        action,
		TS:            ts,
		Identifiers:   w.Identifiers,
		ActivationIDs: w.ActivationIDs,
	}, nil
}

// startsWithObject reports whether the first non-whitespace byte is '{'.
func startsWithObject(data []byte) bool {
	for _, c := range data {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		case '{':
			return true
		default:
			return false
		}
	}
	return false
}

// jsonDecodeError classifies an error of json.Unmarshal: a type mismatch on a
// named field is invalid_field, everything else malformed_json.
func jsonDecodeError(err error) *DecodeError {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) && typeErr.Field != "" {
		return decodeErr(DecodeInvalidField, typeErr.Field,
			fmt.Sprintf("wrong JSON type: got %s, want %s", typeErr.Value, jsonKind(typeErr.Type)))
	}
	return decodeErr(DecodeMalformedJSON, "", err.Error())
}

// jsonKind names the JSON type that decodes into t.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "value"
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Slice, reflect.Array:
		return "array"
	case reflect.Struct, reflect.Map:
		return "object"
	case reflect.Bool:
		return "boolean"
	default:
		return t.Kind().String()
	}
}

// checkCohortID returns why id is not a valid cohort id, or "" if it is: at
// most 256 bytes, no whitespace or control characters. Blank ids are the
// caller's concern (missing vs invalid).
func checkCohortID(id string) string {
	if len(id) > maxIDBytes {
		return fmt.Sprintf("%d bytes, the limit is %d", len(id), maxIDBytes)
	}
	for _, r := range id {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Sprintf("contains whitespace or a control character: %s", quoteShort(id))
		}
	}
	return ""
}

// quoteShort quotes s for an error detail, cut to maxDetailValue bytes.
func quoteShort(s string) string {
	if len(s) <= maxDetailValue {
		return strconv.Quote(s)
	}
	cut := maxDetailValue
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "…"
}

// EventID is the membership's deterministic event id: the same message gives
// the same id on every redelivery and replay, so Pinterest can deduplicate,
// and a different user, cohort, action or ts (to the nanosecond) gives a
// different one.
//
// Format (a public contract): the first 32 hex digits of
// SHA-256(user_id "\x00" cohort_id "\x00" action "\x00" ts), then ":" ts,
// where ts is TS as decimal Unix nanoseconds. The id always ends with
// ":<TS.UnixNano()>".
func (m Membership) EventID() string {
	var out [eventIDMaxLen]byte
	return string(m.appendEventID(out[:0]))
}

// eventIDMaxLen is the longest event id: 32 hex digits, ":", and at most
// 20 characters of an int64.
const eventIDMaxLen = 53

// appendEventID appends the event id to b.
func (m Membership) appendEventID(b []byte) []byte {
	nanos := m.TS.UnixNano()
	// Hash input on the stack for typical ids; append grows to the heap only
	// for unusually long ones.
	var in [256]byte
	h := append(in[:0], m.UserID...)
	h = append(h, 0)
	h = append(h, m.CohortID...)
	h = append(h, 0)
	h = append(h, m.Action...)
	h = append(h, 0)
	h = strconv.AppendInt(h, nanos, 10)
	sum := sha256.Sum256(h)
	b = hex.AppendEncode(b, sum[:16])
	b = append(b, ':')
	return strconv.AppendInt(b, nanos, 10)
}
