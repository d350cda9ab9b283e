package connector

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Parking keeps one failing ad account from stalling the others.
//
// A message nak'd with a delay stays unacknowledged in JetStream until it is
// redelivered, so the held messages of a failing account would fill the
// main consumer's MaxAckPending and stop delivery for every account. When
// an account is failing (or congested), its share of a message is instead
// copied to the parking stream, on <ParkingSubject>.<ad_account_id>, and
// that target counts as done for the main message. Each account has its own
// durable consumer on its parking subject, which feeds only that account's
// lane: parked messages are retried there, held back with growing delays
// against that consumer's own limits, and settled like any other message.
// Per-user order carries over: the parked copy keeps the original sequence
// as its order position, and its user's later changes wait for it.

// Headers of a parked copy: where the original came from.
const (
	headerOriginStream  = "Connector-Origin-Stream"
	headerOriginSubject = "Connector-Origin-Subject"
	headerOriginSeq     = "Connector-Origin-Sequence"
)

// park copies t's message to account's parking subject and waits for the
// PubAck.
func (c *Connector) park(t *tracked, account string) error {
	out := nats.NewMsg(c.o.Topology.ParkingSubject + "." + account)
	out.Data = t.msg.Data()
	for k, vs := range t.msg.Headers() {
		if strings.HasPrefix(http.CanonicalHeaderKey(k), "Nats-") {
			continue
		}
		for _, v := range vs {
			out.Header.Add(k, v)
		}
	}
	out.Header.Set(headerOriginStream, t.meta.Stream)
	out.Header.Set(headerOriginSubject, t.msg.Subject())
	out.Header.Set(headerOriginSeq, strconv.FormatUint(t.orderSeq(), 10))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	id := fmt.Sprintf("park:%s:%d:%s", t.meta.Stream, t.meta.Sequence.Stream, account)
	if _, err := c.o.JS.PublishMsg(ctx, out, jetstream.WithMsgID(id)); err != nil {
		return fmt.Errorf("parking for ad account %s: %w", account, err)
	}
	return nil
}

// origin returns the original subject, stream and sequence of a message:
// its own, or those recorded when it was parked.
func origin(t *tracked) (subject, stream string, seq uint64) {
	subject, stream, seq = t.msg.Subject(), t.meta.Stream, t.meta.Sequence.Stream
	if t.parkedFor == "" {
		return subject, stream, seq
	}
	h := t.msg.Headers()
	if v := h.Get(headerOriginSubject); v != "" {
		subject = v
	}
	if v := h.Get(headerOriginStream); v != "" {
		stream = v
	}
	if v, err := strconv.ParseUint(h.Get(headerOriginSeq), 10, 64); err == nil {
		seq = v
	}
	return subject, stream, seq
}

// consumeParked runs one consume loop per ad account on its parking
// consumer, until their iterators are drained; the returned function drains
// them and waits.
func (c *Connector) consumeParked(ctx context.Context) (stop func(), err error) {
	var its []jetstream.MessagesContext
	var wg sync.WaitGroup
	stop = func() {
		for _, it := range its {
			it.Drain()
		}
		wg.Wait()
	}
	for account := range c.lanes {
		cons, err := c.o.JS.CreateOrUpdateConsumer(ctx, c.o.Topology.ParkingStream, c.o.Topology.ParkingConsumerConfig(account))
		if err != nil {
			stop()
			return nil, fmt.Errorf("parking consumer of ad account %s: %w", account, err)
		}
		it, err := cons.Messages(jetstream.PullMaxMessages(max(c.o.BatchSize, 256)))
		if err != nil {
			stop()
			return nil, fmt.Errorf("consuming parked messages of ad account %s: %w", account, err)
		}
		its = append(its, it)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				msg, err := it.Next()
				if err != nil {
					if errors.Is(err, jetstream.ErrMsgIteratorClosed) || errors.Is(err, jetstream.ErrConnectionClosed) {
						return
					}
					c.o.Logger.Warn().Err(err).Str("ad_account_id", account).Msg("consuming parked messages: transient error")
					continue
				}
				c.handle(msg, account)
			}
		}()
	}
	return stop, nil
}
