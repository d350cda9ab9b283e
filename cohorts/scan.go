package cohorts

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
// would have filled w the same (membership_test.go checks it on a fuzzed
// corpus). No library gives both zero-copy strings and this strictness.
func scanPlain(s string, w *wireMembership) bool {
	sc := scanner{s: s}
	var seen uint8
	return sc.object(func(key string) bool {
		var bit uint8
		var ok bool
		switch key {
		case "user_id":
			bit, ok = 1, sc.str(&w.UserID)
		case "cohort_id":
			bit, ok = 2, sc.str(&w.CohortID)
		case "action":
			bit, ok = 4, sc.str(&w.Action)
		case "ts":
			bit, ok = 8, sc.str(&w.TS)
		case "identifiers":
			bit, ok = 16, sc.identifiers(&w.Identifiers)
		case "activation_ids":
			bit, ok = 32, sc.strings(&w.ActivationIDs)
		}
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
		return true
	}) && sc.end()
}

// scanner walks s; every method returns false at anything outside the
// plain shape.
type scanner struct {
	s string
	i int
}

func (sc *scanner) skipSpace() {
	for sc.i < len(sc.s) {
		switch sc.s[sc.i] {
		case ' ', '\t', '\r', '\n':
			sc.i++
		default:
			return
		}
	}
}

// consume skips spaces and then c.
func (sc *scanner) consume(c byte) bool {
	sc.skipSpace()
	if sc.i < len(sc.s) && sc.s[sc.i] == c {
		sc.i++
		return true
	}
	return false
}

// end reports whether only spaces are left.
func (sc *scanner) end() bool {
	sc.skipSpace()
	return sc.i == len(sc.s)
}

// object reads {"key": value, ...}, calling member after each key's colon
// to read its value.
func (sc *scanner) object(member func(key string) bool) bool {
	if !sc.consume('{') {
		return false
	}
	if sc.consume('}') {
		return true
	}
	for {
		var key string
		if !sc.str(&key) || !sc.consume(':') || !member(key) {
			return false
		}
		if sc.consume('}') {
			return true
		}
		if !sc.consume(',') {
			return false
		}
	}
}

// str reads a string without escapes or control characters into v.
func (sc *scanner) str(v *string) bool {
	if !sc.consume('"') {
		return false
	}
	start := sc.i
	for ; sc.i < len(sc.s); sc.i++ {
		switch c := sc.s[sc.i]; {
		case c == '"':
			*v = sc.s[start:sc.i]
			sc.i++
			return true
		case c == '\\' || c < 0x20:
			return false
		}
	}
	return false
}

// identifiers reads the identifiers object.
func (sc *scanner) identifiers(ids *Identifiers) bool {
	var seen uint8
	return sc.object(func(key string) bool {
		var bit uint8
		var v *string
		switch key {
		case "email":
			bit, v = 1, &ids.Email
		case "maid":
			bit, v = 2, &ids.MAID
		case "external_id":
			bit, v = 4, &ids.ExternalID
		case "ip":
			bit, v = 8, &ids.IP
		case "user_agent":
			bit, v = 16, &ids.UserAgent
		default:
			return false
		}
		if seen&bit != 0 || !sc.str(v) {
			return false
		}
		seen |= bit
		return true
	})
}

// strings reads an array of strings.
func (sc *scanner) strings(v *[]string) bool {
	if !sc.consume('[') {
		return false
	}
	out := []string{}
	if sc.consume(']') {
		*v = out
		return true
	}
	for {
		var e string
		if !sc.str(&e) {
			return false
		}
		out = append(out, e)
		if sc.consume(']') {
			*v = out
			return true
		}
		if !sc.consume(',') {
			return false
		}
	}
}
