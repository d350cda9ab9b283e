// Package plainjson reads JSON in its plain shape without reflection or
// allocation: objects, strings without escape sequences or control
// characters, arrays of such strings, and non-negative integers. It is the
// fast path of decoders whose input is almost always that plain (membership
// messages, Pinterest's answers): on anything else a Scanner method
// reports false, and the caller decodes the input with encoding/json
// instead, which keeps encoding/json's exact rules and errors. The strings
// it returns are substrings of the input.
package plainjson

import (
	"slices"
)

// Scanner walks a JSON text. Every method skips the spaces before what it
// reads, and reports false at anything outside the plain shape (it may
// then have read part of the input).
type Scanner struct {
	s string
	i int
}

// New returns a Scanner at the start of s.
func New(s string) *Scanner { return &Scanner{s: s} }

func (sc *Scanner) skipSpace() {
	for sc.i < len(sc.s) {
		switch sc.s[sc.i] {
		case ' ', '\t', '\r', '\n':
			sc.i++
		default:
			return
		}
	}
}

// consume reads the byte c.
func (sc *Scanner) consume(c byte) bool {
	sc.skipSpace()
	if sc.i < len(sc.s) && sc.s[sc.i] == c {
		sc.i++
		return true
	}
	return false
}

// End reports whether only spaces are left.
func (sc *Scanner) End() bool {
	sc.skipSpace()
	return sc.i == len(sc.s)
}

// Object reads {"key": value, ...}, calling member after each key's colon;
// member reads the value and reports whether it could. A key given twice,
// or more than maxMembers members, is outside the plain shape: Object
// reports false (encoding/json's rule for a repeated key, the last one
// wins, is the caller's fallback to apply).
func (sc *Scanner) Object(member func(key string) bool) bool {
	if !sc.consume('{') {
		return false
	}
	if sc.consume('}') {
		return true
	}
	var seen [maxMembers]string
	for n := 0; ; n++ {
		var key string
		if !sc.String(&key) || n == maxMembers || slices.Contains(seen[:n], key) || !sc.consume(':') || !member(key) {
			return false
		}
		seen[n] = key
		if sc.consume('}') {
			return true
		}
		if !sc.consume(',') {
			return false
		}
	}
}

// maxMembers is the most members a plain object has.
const maxMembers = 8

// StringObject reads an object whose members are all strings: the value
// of keys[i] goes to *values[i]. A key not in keys ends the read with
// false. (Keys and destinations are passed side by side, not through a
// callback returning pointers, so that the caller's values can stay on
// its stack.)
func (sc *Scanner) StringObject(keys []string, values []*string) bool {
	return sc.Object(func(key string) bool {
		i := slices.Index(keys, key)
		return i >= 0 && sc.String(values[i])
	})
}

// Array reads [value, ...], calling elem to read each value.
func (sc *Scanner) Array(elem func() bool) bool {
	if !sc.consume('[') {
		return false
	}
	if sc.consume(']') {
		return true
	}
	for {
		if !elem() {
			return false
		}
		if sc.consume(']') {
			return true
		}
		if !sc.consume(',') {
			return false
		}
	}
}

// String reads a string without escapes or control characters into v.
func (sc *Scanner) String(v *string) bool {
	if !sc.consume('"') {
		return false
	}
	start := sc.i
	for i := start; i < len(sc.s); i++ {
		if c := sc.s[i]; stringStop[c] {
			if c != '"' {
				return false // an escape or a control character
			}
			*v = sc.s[start:i]
			sc.i = i + 1
			return true
		}
	}
	return false
}

// stringStop marks the bytes String stops at: the closing quote, the
// backslash of an escape, and the control characters JSON forbids in a
// string.
var stringStop = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// Strings reads an array of strings into v (a non-nil slice, empty for []).
func (sc *Scanner) Strings(v *[]string) bool {
	out := []string{}
	ok := sc.Array(func() bool {
		var e string
		if !sc.String(&e) {
			return false
		}
		out = append(out, e)
		return true
	})
	if ok {
		*v = out
	}
	return ok
}

// Int reads a non-negative integer without sign, fraction or exponent
// (and without leading zeros), of at most 18 digits.
func (sc *Scanner) Int(v *int) bool {
	sc.skipSpace()
	start, n := sc.i, 0
	for sc.i < len(sc.s) && '0' <= sc.s[sc.i] && sc.s[sc.i] <= '9' {
		n = n*10 + int(sc.s[sc.i]-'0')
		sc.i++
	}
	digits := sc.i - start
	if digits == 0 || digits > 18 || (digits > 1 && sc.s[start] == '0') {
		return false
	}
	if sc.i < len(sc.s) {
		switch sc.s[sc.i] {
		case '.', 'e', 'E':
			return false
		}
	}
	*v = n
	return true
}
