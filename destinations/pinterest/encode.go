package pinterest

import (
	"strconv"
	"sync/atomic"
	"unicode/utf8"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/destinations"
)

// The events request is encoded without reflection: appendEvent writes an
// item's event straight into the request body, byte for byte what
// json.Marshal(NewEvent(it)) writes (encode_test.go checks it on a fuzzed
// corpus). NewEvent and the Event type stay the reference and the
// documentation of the wire format; this is the hot path.

// encodedEvents are the events of a batch, encoded once into the body of
// the request that carries them all: buf is {"data":[e0,e1,...]}, event k
// ending before ends[k] (each followed by a comma or, the last, by "]}").
type encodedEvents struct {
	buf  []byte
	ends []int
}

const (
	eventsHead = `{"data":[`
	eventsTail = `]}`
)

// eventBytes is the size of the last batch's events, on average: the next
// body is allocated with room for as many, so that it rarely grows.
var eventBytes atomic.Int64

// encodeEvents encodes the events of items[idx...].
func encodeEvents(items []destinations.Item, idx []int) encodedEvents {
	hint := max(eventBytes.Load(), 256)
	b := make([]byte, 0, int64(len(eventsHead)+len(eventsTail))+hint*int64(len(idx)))
	b = append(b, eventsHead...)
	ends := make([]int, len(idx))
	for k, i := range idx {
		b = append(appendEvent(b, items[i]), ',')
		ends[k] = len(b)
	}
	if len(idx) > 0 {
		eventBytes.Store(int64(len(b)-len(eventsHead)) / int64(len(idx)))
		b = b[:len(b)-1] // the last comma
	}
	return encodedEvents{buf: append(b, eventsTail...), ends: ends}
}

// body is the EventsRequest of events lo..hi-1 ({"data":[...]}): the
// whole buffer for all of them, else a new slice. The HTTP client may
// still read it after the call returned: neither is ever written again.
func (e encodedEvents) body(lo, hi int) []byte {
	if lo == 0 && hi == len(e.ends) {
		return e.buf
	}
	from := len(eventsHead)
	if lo > 0 {
		from = e.ends[lo-1]
	}
	events := e.buf[from : e.ends[hi-1]-1] // without the comma after the last
	b := make([]byte, 0, len(eventsHead)+len(events)+len(eventsTail))
	b = append(b, eventsHead...)
	b = append(b, events...)
	return append(b, eventsTail...)
}

// appendEvent appends the JSON of NewEvent(it) to b.
func appendEvent(b []byte, it destinations.Item) []byte {
	b = append(b, `{"event_name":"`+EventNameCustom+`","action_source":"`+ActionSourceOffline+`","event_time":`...)
	b = strconv.AppendInt(b, it.Membership.TS.Unix(), 10)
	b = append(b, `,"event_id":`...)
	b = appendJSONString(b, it.EventID)
	b = append(b, `,"user_data":{`...)
	h := it.Hashed
	n := len(b)
	b = appendOptional(b, n, `"em":[`, h.Em, `]`)
	b = appendOptional(b, n, `"hashed_maids":[`, h.HashedMAID, `]`)
	b = appendOptional(b, n, `"external_id":[`, h.ExternalID, `]`)
	b = appendOptional(b, n, `"client_ip_address":`, h.ClientIP, ``)
	b = appendOptional(b, n, `"client_user_agent":`, h.UserAgent, ``)
	b = append(b, `},"custom_data":{"content_ids":[`...)
	b = appendJSONString(b, it.Membership.CohortID)
	if it.Membership.Action == cohorts.ActionExit {
		return append(b, `],"content_name":"`+ContentNameExit+`"}}`...)
	}
	return append(b, `],"content_name":"`+ContentNameEnter+`"}}`...)
}

// appendOptional appends the field open+v+close unless v is empty
// (omitempty), after a comma unless it is the first field of the object
// that starts at start.
func appendOptional(b []byte, start int, open, v, close string) []byte {
	if v == "" {
		return b
	}
	if len(b) > start {
		b = append(b, ',')
	}
	b = append(b, open...)
	b = appendJSONString(b, v)
	return append(b, close...)
}

// appendJSONString appends s as a JSON string the way encoding/json does
// by default: quotes, backslashes and control characters escaped (\b \f
// \n \r \t by name, the others as \u00XX), <, > and & as \u003c, \u003e
// and \u0026 (HTML-safe), each byte of invalid UTF-8 as \ufffd, and the
// line and paragraph separators U+2028 and U+2029 escaped.
func appendJSONString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
