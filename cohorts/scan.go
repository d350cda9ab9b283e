package cohorts

import "github.com/cohort-connector/cohort-connector/cohorts/plainjson"

// scanPlain reads a message in its plain shape without encoding/json:
// the fast path of Decode. The plain shape is what producers send: one
// JSON object whose members are the known fields, each at most once,
// spelled exactly (lowercase), with string values, identifiers an object
// of string members, activation_ids an array of strings, and no escape
// sequence in any string. The strings of w are substrings of s, so a
// message costs one allocation (the conversion of its bytes to s).
//
// Anything else (other spellings, unknown or repeated fields, escapes,
// numbers, null, a syntax error) makes scanPlain return false, leaving
// the message to encoding/json with its exact rules and error messages.
// So scanPlain never decides an error, and on what it accepts, json.Unmarshal
// would have filled w the same (scan_test.go checks it on a fuzzed corpus).
func scanPlain(s string, w *wireMembership) bool {
	sc := plainjson.New(s)
	return sc.Object(func(key string) bool {
		switch key {
		case "user_id":
			return sc.String(&w.UserID)
		case "cohort_id":
			return sc.String(&w.CohortID)
		case "action":
			return sc.String(&w.Action)
		case "ts":
			return sc.String(&w.TS)
		case "identifiers":
			return scanIdentifiers(sc, &w.Identifiers)
		case "activation_ids":
			return sc.Strings(&w.ActivationIDs)
		}
		return false // a key the plain shape does not have
	}) && sc.End()
}

// identifierKeys are the members of the identifiers object.
var identifierKeys = []string{"email", "maid", "external_id", "ip", "user_agent"}

// scanIdentifiers reads the identifiers object.
func scanIdentifiers(sc *plainjson.Scanner, ids *Identifiers) bool {
	return sc.StringObject(identifierKeys, []*string{&ids.Email, &ids.MAID, &ids.ExternalID, &ids.IP, &ids.UserAgent})
}
