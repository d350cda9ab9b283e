// Package destinations holds what every destination shares: the Destination
// interface, the Batch it is handed, the Result it returns, and the small
// error vocabulary (Reason) that decides how the connector settles each
// message.
//
// Errors are classified once, at the edge (the destination's client), and
// everything above uses errors.As on *Error. The Reason names the metric
// label and decides the settlement:
//
//	ReasonBadInput     terminate + dead-letter (the message will never pass)
//	ReasonAuth         nak with a long delay, never dropped (token/account wrong)
//	ReasonNotFound     same as ReasonAuth (ad account unknown to Pinterest)
//	ReasonRedirect     same as ReasonAuth: the destination (or a proxy before
//	                   it) answered 3xx. Redirects are never followed, since
//	                   following one would send the token and the events to
//	                   another host; the base URL or the proxy must be fixed
//	ReasonRateLimited  nak with Retry-After or a delay growing with deliveries
//	ReasonServer       nak with a delay growing with deliveries
//	ReasonTimeout      nak with a delay growing with deliveries
//	ReasonShutdown     nak with a short delay: the process is stopping
package destinations

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cohort-connector/cohort-connector/cohorts"
)

// Destination sends batches of membership changes to one external system.
type Destination interface {
	// Send delivers every item of b to the ad account b.AdAccountID.
	//
	// A nil error means the destination answered for the batch as a whole;
	// Result.Items then holds one verdict per item, in the order of b.Items.
	// A non-nil error means no item was accepted; it is (or wraps) an *Error
	// whose Reason says why. A cancelled ctx returns an *Error with
	// ReasonShutdown or ReasonTimeout and nothing is known to be accepted.
	Send(ctx context.Context, b Batch) (Result, error)
}

// CallGate is implemented by a destination whose calls an ad account may
// make are budgeted (Pinterest: 5,000 a minute). AwaitCall returns when
// the account may make a call, that call's place in the budget taken (the
// next call of the account uses it), or with ctx's error: a sender waits
// for its turn before it takes a batch, so that the batch carries
// everything that arrived meanwhile and its call then goes at once.
type CallGate interface {
	AwaitCall(ctx context.Context, adAccountID string) error
}

// Item is one membership change bound for one ad account.
type Item struct {
	// EventID is deterministic for the membership (see cohorts.Membership.EventID),
	// so a redelivered message produces the same id and Pinterest deduplicates.
	EventID    string
	Membership cohorts.Membership
	// Hashed holds the normalised, SHA-256 hashed identifiers: nothing in
	// plain text leaves the process.
	Hashed cohorts.Hashed
	// CustomerLists are the ids of the customer lists the change is
	// mirrored to (customer_list mode): an enter is ADDed to each, an exit
	// REMOVEd. The item is processed only when every list took it.
	CustomerLists []string
	// ListsOnly is set when no activation of this ad account is in events
	// mode: no conversion event is sent, only the list operations.
	ListsOnly bool
}

// Batch is a group of items for a single ad account, at most the
// destination's maximum batch size (1000 for Pinterest events).
type Batch struct {
	AdAccountID string
	Items       []Item
}

// Result is the destination's verdict per item of a Batch.
type Result struct {
	// Items[i] is the verdict for Batch.Items[i].
	Items []ItemResult
	// Answered is set when the destination was called and answered; it is
	// not when nothing was left to send (every item already applied).
	// Only an answer says anything of the account's health.
	Answered bool
}

// ItemResult is the verdict for one item.
type ItemResult struct {
	// Processed is true when the destination accepted and processed the item.
	Processed bool
	// Error is the destination's reason when Processed is false.
	Error string
	// Warning is an advisory message from the destination; it does not
	// change the verdict.
	Warning string
}

// Reason is the small vocabulary every destination error is classified into.
// Its values are stable: they are metric label values and log fields.
type Reason string

// The reasons. See the package documentation for how each is settled.
const (
	ReasonBadInput    Reason = "bad_input"
	ReasonAuth        Reason = "auth"
	ReasonNotFound    Reason = "not_found"
	ReasonRedirect    Reason = "redirect"
	ReasonRateLimited Reason = "rate_limited"
	ReasonServer      Reason = "server_error"
	ReasonTimeout     Reason = "timeout"
	ReasonShutdown    Reason = "shutdown"
)

// Reasons lists every Reason, for pre-initialising metric labels.
var Reasons = []Reason{ReasonBadInput, ReasonAuth, ReasonNotFound, ReasonRedirect, ReasonRateLimited, ReasonServer, ReasonTimeout, ReasonShutdown}

// Permanent reports whether a batch that failed for this reason would fail
// again however often it is retried.
func (r Reason) Permanent() bool { return r == ReasonBadInput }

// DestinationFault reports whether the reason is a fault of the destination's
// configuration (token, ad account, base URL) rather than of the message or
// a passing outage: the message must be kept, and an operator must act.
func (r Reason) DestinationFault() bool {
	return r == ReasonAuth || r == ReasonNotFound || r == ReasonRedirect
}

// Error is a classified destination failure.
type Error struct {
	Reason Reason
	// StatusCode is the final HTTP status, 0 when no answer was received.
	StatusCode int
	// RetryAfter is the destination's requested wait (429/503), 0 if none.
	RetryAfter time.Duration
	// Message is the destination's own explanation, if it gave one.
	Message string
	// Err is the underlying error, if any.
	Err error
}

func (e *Error) Error() string {
	s := string(e.Reason)
	if e.StatusCode != 0 {
		s += fmt.Sprintf(" (HTTP %d)", e.StatusCode)
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// ReasonOf returns the Reason of err, or ReasonServer for an error that was
// never classified (an unknown failure is treated as transient: retrying is
// safe, dropping is not).
func ReasonOf(err error) Reason {
	var de *Error
	if errors.As(err, &de) {
		return de.Reason
	}
	return ReasonServer
}

// RetryAfterOf returns the Retry-After carried by err, or 0.
func RetryAfterOf(err error) time.Duration {
	var de *Error
	if errors.As(err, &de) {
		return de.RetryAfter
	}
	return 0
}
