package plainjson

import (
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestScannerReadsThePlainShapeOnly(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{` {"a": "x", "b" : [ "y" , "z" ], "n": 12} `, true},
		{`{"a":"x","b":[],"n":0}`, true},
		{`{}`, true},
		{`{"a":"x\"y"}`, false},               // an escape
		{"{\"a\":\"x\ty\"}", false},           // a control character
		{`{"a":"x",}`, false},                 // a trailing comma
		{`{"a":"x"} {}`, false},               // more after the object
		{`{"a":"x","b":["y",],"n":1}`, false}, // a trailing comma in the array
		{`{"n":012}`, false},                  // a leading zero
		{`{"n":-1}`, false},                   // a sign
		{`{"n":1.5}`, false},                  // a fraction
		{`{"n":1e3}`, false},                  // an exponent
		{`{"a":null}`, false},
		{`{"a":"x"`, false}, // cut short
	} {
		sc := New(tc.in)
		var a string
		var b []string
		var n int
		got := sc.Object(func(key string) bool {
			switch key {
			case "a":
				return sc.String(&a)
			case "b":
				return sc.Strings(&b)
			case "n":
				return sc.Int(&n)
			}
			return false
		}) && sc.End()
		assert.Equal(t, tc.want, got, "%s", tc.in)
	}
}

func TestStringObjectRefusesUnknownAndRepeatedKeys(t *testing.T) {
	keys := []string{"status", "error_message"}
	read := func(in string) (string, string, bool) {
		var s, e string
		ok := New(in).StringObject(keys, []*string{&s, &e})
		return s, e, ok
	}
	s, e, ok := read(`{"error_message":"bad","status":"failed"}`)
	assert.True(t, ok)
	assert.Equal(t, "failed", s)
	assert.Equal(t, "bad", e)
	_, _, ok = read(`{"status":"a","status":"b"}`)
	assert.False(t, ok, "a key given twice")
	_, _, ok = read(`{"Status":"a"}`)
	assert.False(t, ok, "a key spelled otherwise")
	_, _, ok = read(`{"status":1}`)
	assert.False(t, ok, "a value that is no string")
}

func TestObjectRefusesARepeatedKeyAndTooManyMembers(t *testing.T) {
	read := func(in string) bool {
		sc := New(in)
		var nested func(string) bool
		nested = func(string) bool {
			var v string
			if sc.String(&v) {
				return true
			}
			return sc.Object(nested)
		}
		return sc.Object(nested) && sc.End()
	}
	assert.True(t, read(`{"a":"1","b":"2"}`))
	assert.False(t, read(`{"a":"1","b":"2","a":"3"}`), "a key given twice")
	assert.True(t, read(`{"a":{"a":"1","b":"2"},"b":{"a":"3"}}`), "the same keys in different objects")
	assert.False(t, read(`{"a":{"b":"1","b":"2"}}`), "a key given twice in a nested object")
	members := func(n int) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = `"k` + strconv.Itoa(i) + `":"v"`
		}
		return "{" + strings.Join(parts, ",") + "}"
	}
	assert.True(t, read(members(maxMembers)))
	assert.False(t, read(members(maxMembers+1)), "more members than a plain object has")
}
