package connector

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cohort-connector/cohort-connector/destinations"
)

// Parking keeps one failing ad account from stalling the others.
//
// A message nak'd with a delay stays unacknowledged in JetStream until it is
// redelivered, so the held messages of a failing account would fill the
// main consumer's MaxAckPending and stop delivery for every account. When
// an account is failing (or congested), its share of a message is instead
// copied to the parking stream, on <ParkingSubject>.<ad_account_id>, and
// that target is done for the main delivery. Each account has its own
// durable consumer there, which feeds only that account's lane: a parked
// copy is retried with growing delays against that consumer's own limits,
// and settled like any other delivery.
//
// A parked copy carries its original's origin in headers: order, dead
// letters and ids speak of the original. Parking consumers are created with
// no MaxDeliver of their own: the connector dead-letters a parked copy itself
// at the main consumer's MaxDeliver, and because JetStream never gives up on
// it, a copy whose last delivery was cut by a crash, or whose dead letter
// could not be written, comes back and is dead-lettered then.

// Headers of a parked copy: where the original came from.
const (
	headerOriginStream  = "Connector-Origin-Stream"
	headerOriginSubject = "Connector-Origin-Subject"
	headerOriginSeq     = "Connector-Origin-Sequence"
	headerOriginStored  = "Connector-Origin-Stored" // Unix nanoseconds
)

// parkTimeout bounds the wait for the PubAcks of one parked batch.
const parkTimeout = 5 * time.Second

// park copies items to account's parking subject: every publish is sent
// first, then the PubAcks are awaited together, so a batch costs one round
// trip. An item whose copy was not acknowledged is to be redelivered.
func (c *Connector) park(account string, items []laneItem, why error) []outcome {
	outcomes := make([]outcome, len(items))
	futures := make([]jetstream.PubAckFuture, len(items))
	for i, it := range items {
		f, err := c.o.JS.PublishMsgAsync(c.parkedCopy(account, it.d),
			jetstream.WithMsgID("park:"+it.d.origin.id()+":"+account))
		if err != nil {
			outcomes[i] = c.parkFailed(it.d, err)
			continue
		}
		futures[i] = f
	}
	timeout := time.NewTimer(parkTimeout)
	defer timeout.Stop()
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case <-f.Ok():
			outcomes[i] = parked
			outcomes[i].detail = why.Error()
		case err := <-f.Err():
			outcomes[i] = c.parkFailed(items[i].d, err)
		case <-timeout.C:
			outcomes[i] = c.parkFailed(items[i].d, context.DeadlineExceeded)
			timeout.Reset(0) // the rest are late too
		}
	}
	return outcomes
}

func (c *Connector) parkFailed(d *delivery, err error) outcome {
	c.o.Logger.Warn().Err(err).Str("stream", d.origin.stream).Uint64("stream_seq", d.origin.seq).
		Msg("parking failed: message held back for redelivery instead")
	return outcome{kind: kindRetry, reason: reasonParkingFailed, delay: c.o.RetryDelayMin,
		detail: fmt.Sprintf("parking failed: %v", err)}
}

// parkedCopy is d's message as parked for account: body and headers (but
// Nats-* instructions to the server) of the original, plus its origin.
func (c *Connector) parkedCopy(account string, d *delivery) *nats.Msg {
	out := nats.NewMsg(c.o.Topology.ParkingSubject + "." + account)
	out.Data = d.msg.Data()
	copyHeaders(out.Header, d.msg.Headers())
	out.Header.Set(headerOriginStream, d.origin.stream)
	out.Header.Set(headerOriginSubject, d.origin.subject)
	out.Header.Set(headerOriginSeq, strconv.FormatUint(d.origin.seq, 10))
	out.Header.Set(headerOriginStored, strconv.FormatInt(d.origin.stored, 10))
	return out
}

// copyHeaders copies every header of from but the Nats-* ones (instructions
// to the server, such as Nats-Msg-Id or Nats-Expected-Last-Sequence, that
// would make the receiving stream refuse or misfile the copy).
func copyHeaders(to, from nats.Header) {
	for k, vs := range from {
		if strings.HasPrefix(http.CanonicalHeaderKey(k), "Nats-") {
			continue
		}
		for _, v := range vs {
			to.Add(k, v)
		}
	}
}

// originOf is where a delivered message came from: itself, or for a parked
// copy the original named in its headers. A parked copy without them (not
// written by the connector) is its own origin.
func originOf(msg jetstream.Msg, meta *jetstream.MsgMetadata, parkedFor string) origin {
	o := origin{stream: meta.Stream, subject: msg.Subject(), seq: meta.Sequence.Stream, stored: meta.Timestamp.UnixNano()}
	if parkedFor == "" {
		return o
	}
	h := msg.Headers()
	seq, err1 := strconv.ParseUint(h.Get(headerOriginSeq), 10, 64)
	stored, err2 := strconv.ParseInt(h.Get(headerOriginStored), 10, 64)
	if err1 != nil || err2 != nil || h.Get(headerOriginStream) == "" || h.Get(headerOriginSubject) == "" {
		return o
	}
	return origin{stream: h.Get(headerOriginStream), subject: h.Get(headerOriginSubject), seq: seq, stored: stored}
}

// hold is the lanes' hold function: an account fault (err) means the call
// would fail, so items from the main consumer are parked and parked copies
// are held back for redelivery.
func (c *Connector) hold(account string, items []laneItem, err error) []outcome {
	outcomes := make([]outcome, len(items))
	var toPark []laneItem
	var at []int
	for i, it := range items {
		if it.parkable && c.o.Topology.ParkingStream != "" {
			toPark = append(toPark, it)
			at = append(at, i)
			continue
		}
		outcomes[i] = c.retryAfterFault(it.d, err)
	}
	if len(toPark) > 0 {
		for j, o := range c.park(account, toPark, err) {
			outcomes[at[j]] = o
		}
	}
	return outcomes
}

// retryAfterFault is the outcome of a delivery whose target could not be
// sent for err.
func (c *Connector) retryAfterFault(d *delivery, err error) outcome {
	reason := destinations.ReasonOf(err)
	o := outcome{kind: kindRetry, reason: string(reason), detail: err.Error()}
	switch {
	case reason.Permanent():
		o.kind = kindReject
	case reason.DestinationFault():
		// A long delay that still grows, so that MaxDeliver deliveries
		// cover a credential outage as long as a Pinterest outage.
		o.delay = max(c.o.AuthRetryDelay, c.backoff(d.meta.NumDelivered, 0))
	case reason == destinations.ReasonShutdown:
		// Prompt redelivery to whichever instance runs next.
		o.delay = time.Second
	default:
		o.delay = c.backoff(d.meta.NumDelivered, destinations.RetryAfterOf(err))
	}
	return o
}
