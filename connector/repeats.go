package connector

import (
	"time"

	"github.com/rs/zerolog"
)

// repeats keeps a failure that can happen to every message from being
// logged for every message: the first failure of an episode, and each
// change of its cause, is logged; the others are counted; the episode's
// end (the next success) is one line with the count and how long it
// lasted. Used on the connector's loop only: not safe for concurrent use.
type repeats struct {
	what  string // what fails, for the end line: "dead-letter publishes"
	key   string // the current failure's kind, "" between episodes
	cause string // its error, for the end line
	since time.Time
	count int // failures in the episode
}

// failed counts a failure of a kind (key) with its error (cause) and
// reports whether it is to be logged: the episode's first, or a new
// kind. The line logged should carry the fields of logFields.
func (r *repeats) failed(key, cause string, now time.Time) bool {
	if r.count == 0 {
		r.since = now
	}
	r.count++
	r.cause = cause
	if key == r.key {
		return false
	}
	r.key = key
	return true
}

// logFields adds the episode's count and start to ev.
func (r *repeats) logFields(ev *zerolog.Event) *zerolog.Event {
	return ev.Int("failures_so_far", r.count).Time("failing_since", r.since)
}

// succeeded ends the episode, if there is one, with one line on log (now
// is read only then: a success is the common case).
func (r *repeats) succeeded(log zerolog.Logger, now func() time.Time) {
	if r.count == 0 {
		return
	}
	log.Info().Int("failures", r.count).Str("lasted", now().Sub(r.since).Round(time.Millisecond).String()).
		Str("last_cause", r.cause).Msg(r.what + " work again")
	r.key, r.cause, r.count = "", "", 0
}
