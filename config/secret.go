package config

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
)

const redacted = "[REDACTED]"

// Secret is a string that never prints its value. Every way of rendering it
// (fmt with any verb, JSON, text marshalling, zerolog's Interface/Any and
// Stringer) gives "[REDACTED]", or "" when the secret is empty so that a
// missing token is still visible as missing. Reveal is the only way to the
// value; call it at the one place the value is used (the Authorization
// header).
type Secret string

// Reveal returns the secret value.
func (s Secret) Reveal() string { return string(s) }

func (s Secret) masked() string {
	if s == "" {
		return ""
	}
	return redacted
}

// String implements fmt.Stringer.
func (s Secret) String() string { return s.masked() }

// GoString implements fmt.GoStringer.
func (s Secret) GoString() string { return s.masked() }

// Format implements fmt.Formatter, so that no verb (%x included) reaches the
// value. %q quotes the mask; width and '-' pad it.
func (s Secret) Format(f fmt.State, verb rune) {
	m := s.masked()
	if verb == 'q' {
		m = strconv.Quote(m)
	}
	if w, ok := f.Width(); ok && len(m) < w {
		pad := strings.Repeat(" ", w-len(m))
		if f.Flag('-') {
			m += pad
		} else {
			m = pad + m
		}
	}
	_, _ = io.WriteString(f, m)
}

// MarshalJSON implements json.Marshaler.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.masked()) }

// MarshalText implements encoding.TextMarshaler.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.masked()), nil }
