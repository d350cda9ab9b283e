package connector

import (
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cohort-connector/cohort-connector/cohorts"
)

// origin identifies a message of the input stream. A parked copy carries its
// original's origin (in headers, see parking.go), so that order, dead
// letters and deduplication ids always speak of the message the producer
// published, never of the copy.
//
// The stream sequence alone is not an identity: a stream that is deleted and
// created again starts counting from 1. The time the stream stored the
// message makes it one. Origins are comparable: the memo is keyed by them.
type origin struct {
	stream  string
	subject string
	seq     uint64
	stored  int64 // Unix nanoseconds: when the stream stored the message
}

// id is the origin as one string: "<stream>:<seq>:<stored>", the base of
// every Nats-Msg-Id the connector publishes for the message.
func (o origin) id() string {
	return o.stream + ":" + strconv.FormatUint(o.seq, 10) + ":" + strconv.FormatInt(o.stored, 10)
}

// delivery is one JetStream delivery of one message, from the main consumer
// or from an ad account's parking consumer. It carries the message's ack
// handle and the outcomes of its targets (the ad accounts it goes to), and
// is settled exactly once, by settle, when its last target has reported.
//
// Every field after received is owned by the connector's loop goroutine:
// route sets them, lanes never touch them, settle reads them.
type delivery struct {
	msg      jetstream.Msg
	meta     *jetstream.MsgMetadata
	origin   origin
	received time.Time
	// parkedFor is "" for the main consumer, else the ad account whose
	// parking consumer delivered this parked copy (its only target).
	parkedFor string

	cohortID, userID string
	// The event of the change, set when it is routed to any ad account
	// (and read by the lanes' senders after that, never written again).
	eventID    string
	membership cohorts.Membership
	hashed     cohorts.Hashed
	pending    int     // targets still to report
	outcome    outcome // merged outcome of the targets that reported
	// done lists the ad accounts that need nothing more of this message:
	// they accepted it or it was parked for them, in this delivery or an
	// earlier one (the memo).
	done []string
	// ordered lists the ad accounts whose order book admitted this
	// delivery: their entries are released or kept when it is settled.
	ordered []string
	parked  []string // the ad accounts it was parked for in this delivery

	// Room for done and ordered of a delivery to one ad account, the
	// usual case, without an allocation of their own.
	doneRoom, orderedRoom [1]string
}

// newDelivery is a delivery of msg, received at now: a settled one reused
// if there is (loop only).
func (c *Connector) newDelivery(msg jetstream.Msg, meta *jetstream.MsgMetadata, parkedFor string, now time.Time) *delivery {
	var d *delivery
	if n := len(c.spareDeliveries); n > 0 {
		d, c.spareDeliveries = c.spareDeliveries[n-1], c.spareDeliveries[:n-1]
	} else {
		d = &delivery{}
	}
	// A spare is zero (recycle), so only what is known now is set.
	d.msg, d.meta, d.origin, d.received, d.parkedFor = msg, meta, originOf(msg, meta, parkedFor), now, parkedFor
	d.done, d.ordered = d.doneRoom[:0], d.orderedRoom[:0]
	return d
}

// recycle keeps d, settled, for reuse. Nothing refers to a settled
// delivery: every lane that had a share of it has reported (its batch is
// cleared when applied), and the memo keeps a copy of its accounts.
func (c *Connector) recycle(d *delivery) {
	if len(c.spareDeliveries) < maxSettledKept {
		*d = delivery{}
		c.spareDeliveries = append(c.spareDeliveries, d)
	}
}

// maxSettledKept bounds the settled deliveries kept for reuse.
const maxSettledKept = 1024

// first reports whether this is the message's first delivery by the main
// consumer: what the per-activation counts count (a parked copy was
// counted when its original first came).
func (d *delivery) first() bool { return d.parkedFor == "" && d.meta.NumDelivered == 1 }

// redelivered reports whether the main consumer delivered the message
// before.
func (d *delivery) redelivered() bool { return d.parkedFor == "" && d.meta.NumDelivered > 1 }

// last reports whether JetStream will not deliver the message again after
// this delivery (its consumer's MaxDeliver; 0 or less is unlimited).
func (d *delivery) last(maxDeliver int) bool {
	return maxDeliver > 0 && d.meta.NumDelivered >= uint64(maxDeliver)
}

type outcomeKind int

// Ordered by precedence when the outcomes of several targets are merged: a
// rejection wins over a retry, a retry over done.
const (
	kindDone   outcomeKind = iota // accepted, parked, or nothing to send
	kindRetry                     // redeliver after delay
	kindReject                    // permanently bad: dead letter, then term
	// kindKeep: left unsettled, to its AckWait (settle only: the dead
	// letter of a last delivery could not be written).
	kindKeep
)

// outcome is what one target of a delivery (or the delivery as a whole)
// calls for. reason is the settlement reason label.
type outcome struct {
	kind   outcomeKind
	reason string
	detail string
	delay  time.Duration // kindRetry only
}

// merge combines the outcomes of two targets of one delivery: the stronger
// kind wins, and of two retries the longer delay.
func (o outcome) merge(p outcome) outcome {
	switch {
	case p.reason == "":
		return o
	case o.reason == "":
		return p
	case p.kind > o.kind:
		return p
	case p.kind == o.kind && p.kind == kindRetry && p.delay > o.delay:
		return p
	}
	return o
}

var (
	accepted = outcome{kind: kindDone, reason: reasonOK}
	parked   = outcome{kind: kindDone, reason: reasonParked}
)
