package pinterest

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"

	"github.com/cohort-connector/cohort-connector/cohorts/plainjson"
)

// decodeEventsResponse decodes a 200 answer of the events endpoint into
// r: what json.NewDecoder(bytes.NewReader(body)).Decode(r) does, and faster
// for the plain answer Pinterest gives (every field known, spelled
// exactly, once; strings without escapes): a status per event is most of
// what the daemon reads, 1000 of them per call. Anything else goes to
// encoding/json (answer_internal_test.go holds the two to the same result
// on a fuzzed corpus).
func decodeEventsResponse(body []byte, r *EventsResponse) error {
	if utf8.Valid(body) && scanEventsResponse(string(body), r) {
		return nil
	}
	*r = EventsResponse{}
	return json.NewDecoder(bytes.NewReader(body)).Decode(r)
}

// scanEventsResponse reads the plain shape of EventsResponse.
func scanEventsResponse(s string, r *EventsResponse) bool {
	sc := plainjson.New(s)
	return sc.Object(func(key string) bool {
		switch key {
		case "num_events_received":
			return sc.Int(&r.NumEventsReceived)
		case "num_events_processed":
			return sc.Int(&r.NumEventsProcessed)
		case "events":
			return scanEventResponses(sc, &r.Events)
		}
		return false // a key the plain shape does not have
	}) && sc.End()
}

// eventResponseKeys are the members of an EventResponse.
var eventResponseKeys = []string{"status", "error_message", "warning_message"}

func scanEventResponses(sc *plainjson.Scanner, events *[]EventResponse) bool {
	out := make([]EventResponse, 0, 64)
	ok := sc.Array(func() bool {
		var e EventResponse
		if !sc.StringObject(eventResponseKeys, []*string{&e.Status, &e.ErrorMessage, &e.WarningMessage}) {
			return false
		}
		out = append(out, e)
		return true
	})
	if ok {
		*events = out
	}
	return ok
}
