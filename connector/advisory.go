package connector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// MaxDeliveriesAdvisoryPrefix is the subject prefix of JetStream's
// max-deliveries advisories; the full subject is
// <prefix>.<stream>.<consumer> (nats-server JSAdvisoryConsumerMaxDeliveryExceedPre).
const MaxDeliveriesAdvisoryPrefix = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"

// maxDeliveriesAdvisory is the advisory's JSON, as nats-server's
// JSConsumerDeliveryExceededAdvisory (type io.nats.jetstream.advisory.v1.max_deliver).
type maxDeliveriesAdvisory struct {
	Type       string    `json:"type"`
	ID         string    `json:"id"`
	Time       time.Time `json:"timestamp"`
	Stream     string    `json:"stream"`
	Consumer   string    `json:"consumer"`
	StreamSeq  uint64    `json:"stream_seq"`
	Deliveries uint64    `json:"deliveries"`
	Domain     string    `json:"domain,omitempty"`
}

// WatchMaxDeliveries subscribes to the MAX_DELIVERIES advisories of t's
// stream and durable and copies each message that JetStream gave up on into
// the dead-letter stream (reason "max_deliveries", same Dlq-* headers as
// connector.deadLetter, Dlq-Detail "JetStream gave up after N deliveries
// (AckWait expired)"), fetching the original with Stream.GetMsg(stream_seq).
//
// The connector dead-letters a message itself when it would nak it at its
// last delivery; this catches the others: a last delivery that expired
// through AckWait (crash, hang, or a dead letter the connector could not
// write), which JetStream drops silently. A copy that cannot be written is
// tried again every 5s while the watcher runs. Publishing uses Nats-Msg-Id
// "dlq:<stream>:<seq>:<stored>", the id the connector uses, so a message the
// connector already dead-lettered is deduplicated by the DLQ stream (within
// its duplicate window), not doubled. Parked copies need no watcher: their
// consumers have no MaxDeliver (see parking.go).
//
// nats-server (2.15) publishes the advisory when the consumer is next
// pulled after the last delivery's AckWait expired: promptly while the
// daemon runs, at its first pull after a restart. Advisories are not stored:
// one published while nothing is subscribed is lost (the message then stays
// only in the input stream), so start this before the connector pulls. The
// subscription is a core NATS one; it survives reconnects.
//
// onDeadLetter, if not nil, is called with the reason for every dead letter
// actually written (not for a deduplicated one). WatchMaxDeliveries returns
// nil when ctx is done, and an error if it cannot subscribe or the
// connection is closed under it; cancel ctx before closing nc.
func WatchMaxDeliveries(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, t Topology, log zerolog.Logger, onDeadLetter func(reason string)) error {
	switch {
	case nc == nil || js == nil:
		return errors.New("watching max-deliveries advisories: NATS connection and JetStream are required")
	case t.Stream == "" || t.Durable == "" || t.DLQSubject == "":
		return errors.New("watching max-deliveries advisories: Topology.Stream, Durable and DLQSubject are required")
	}
	subject := MaxDeliveriesAdvisoryPrefix + "." + t.Stream + "." + t.Durable
	w := &maxDeliveriesWatcher{js: js, t: t, log: log.With().Str("component", "max_deliveries_watcher").Logger(),
		onDeadLetter: onDeadLetter, now: time.Now}
	// Copies run one at a time: on the subscription's goroutine as
	// advisories come, and here for the ones to try again.
	var mu sync.Mutex
	var failed []maxDeliveriesAdvisory // copies to try again
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
		a, ok := w.parse(m.Data)
		mu.Lock()
		defer mu.Unlock()
		if ok && ctx.Err() == nil && !w.copy(ctx, a, false) {
			failed = append(failed, a)
		}
	})
	if err != nil {
		return fmt.Errorf("subscribing to %s: %w", subject, err)
	}
	// A burst of advisories (many messages abandoned at once) queues in
	// nats.go, unbounded in number, while one is being copied: it must not
	// be dropped as a slow consumer.
	_ = sub.SetPendingLimits(-1, 256<<20)
	if err := nc.FlushTimeout(5 * time.Second); err != nil {
		// Not fatal: the subscription is (re)sent when the connection is back.
		log.Warn().Err(err).Str("subject", subject).Msg("max-deliveries advisories: subscription not confirmed yet")
	}
	retry := time.NewTicker(advisoryRetryEvery)
	defer retry.Stop()
	var dropped int
	for {
		select {
		case <-ctx.Done():
			_ = sub.Unsubscribe()
			mu.Lock() // the copy in hand, if any, is finished
			defer mu.Unlock()
			if len(failed) > 0 {
				w.log.Error().Int("messages", len(failed)).Str("reason", reasonMaxDeliveries).
					Msg("stopping with messages abandoned by JetStream NOT dead-lettered: recover them from the input stream by their sequence")
			}
			return nil
		case <-retry.C:
		}
		if nc.IsClosed() {
			return fmt.Errorf("max-deliveries advisories on %s: %w", subject, nats.ErrConnectionClosed)
		}
		if n, err := sub.Dropped(); err == nil && n > dropped {
			// Their messages are still in the input stream, findable by
			// the consumer's ack floor.
			w.log.Error().Int("dropped", n-dropped).Msg("max-deliveries advisories: some were dropped (slow consumer) and are not dead-lettered")
			dropped = n
		}
		mu.Lock()
		failed = slices.DeleteFunc(failed, func(a maxDeliveriesAdvisory) bool { return w.copy(ctx, a, true) })
		mu.Unlock()
	}
}

// advisoryRetryEvery is how often a failed dead-letter copy is tried again.
const advisoryRetryEvery = 5 * time.Second

type maxDeliveriesWatcher struct {
	js           jetstream.JetStream
	t            Topology
	log          zerolog.Logger
	onDeadLetter func(string)
	now          func() time.Time
	stream       jetstream.Stream // looked up on first use
}

// parse decodes an advisory and checks it names our stream and consumer.
func (w *maxDeliveriesWatcher) parse(data []byte) (maxDeliveriesAdvisory, bool) {
	var a maxDeliveriesAdvisory
	if err := json.Unmarshal(data, &a); err != nil {
		w.log.Error().Err(err).Msg("max-deliveries advisory: undecodable, ignored")
		return a, false
	}
	if a.Stream != w.t.Stream || a.Consumer != w.t.Durable || a.StreamSeq == 0 {
		w.log.Warn().Str("stream", a.Stream).Str("consumer", a.Consumer).Uint64("stream_seq", a.StreamSeq).
			Msg("max-deliveries advisory for another stream or consumer, ignored")
		return a, false
	}
	return a, true
}

// copy copies the message named by a to the DLQ. It reports false when it
// must be tried again (the dead letter could not be written: a full store,
// the DLQ stream missing); a message no longer in the input stream is
// given up, logged. retry says whether this is a second try.
func (w *maxDeliveriesWatcher) copy(ctx context.Context, a maxDeliveriesAdvisory, retry bool) bool {
	log := w.log.With().Uint64("stream_seq", a.StreamSeq).Uint64("deliveries", a.Deliveries).Logger()
	// Finish the message in hand during shutdown, within a bound.
	opCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	dup, err := w.deadLetter(opCtx, a)
	switch {
	case err == nil && dup:
		log.Debug().Msg("max-deliveries advisory: already dead-lettered (deduplicated)")
	case err == nil:
		ev := log.Debug()
		if retry {
			ev = log.Info()
		}
		ev.Str("reason", reasonMaxDeliveries).Msg("message abandoned by JetStream dead-lettered")
		if w.onDeadLetter != nil {
			w.onDeadLetter(reasonMaxDeliveries)
		}
	case errors.Is(err, jetstream.ErrMsgNotFound):
		log.Error().Err(err).Str("stream", a.Stream).Str("reason", reasonMaxDeliveries).
			Msg("message abandoned by JetStream is gone from the input stream: NOT dead-lettered")
	default:
		if !retry {
			log.Error().Err(err).Str("stream", a.Stream).Str("reason", reasonMaxDeliveries).
				Msg("message abandoned by JetStream not dead-lettered yet: trying again every 5s")
		}
		return false
	}
	return true
}

// deadLetter fetches the original and publishes its dead-letter copy; dup
// reports that the DLQ stream already had it.
func (w *maxDeliveriesWatcher) deadLetter(ctx context.Context, a maxDeliveriesAdvisory) (dup bool, err error) {
	if w.stream == nil {
		s, err := w.js.Stream(ctx, w.t.Stream)
		if err != nil {
			return false, fmt.Errorf("opening stream %s: %w", w.t.Stream, err)
		}
		w.stream = s
	}
	orig, err := w.stream.GetMsg(ctx, a.StreamSeq)
	if err != nil {
		return false, fmt.Errorf("getting message %d of stream %s: %w", a.StreamSeq, w.t.Stream, err)
	}
	o := origin{stream: a.Stream, subject: orig.Subject, seq: a.StreamSeq, stored: orig.Time.UnixNano()}
	out := buildDeadLetter(w.t.DLQSubject, orig.Data, orig.Header, o, a.Deliveries,
		reasonMaxDeliveries, fmt.Sprintf("JetStream gave up after %d deliveries (AckWait expired)", a.Deliveries), w.now())
	var opts []jetstream.PublishOpt
	if w.t.DLQStream != "" {
		opts = append(opts, jetstream.WithExpectStream(w.t.DLQStream))
	}
	ack, err := w.js.PublishMsg(ctx, out, opts...)
	if err != nil {
		return false, fmt.Errorf("publishing dead letter to %s: %w", out.Subject, err)
	}
	return ack.Duplicate, nil
}
