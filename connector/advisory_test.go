package connector_test

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/connector"
)

// deadLetterCounts records the onDeadLetter callbacks of a watcher.
type deadLetterCounts struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *deadLetterCounts) add(reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n[reason]++
}

func (c *deadLetterCounts) get(reason string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[reason]
}

func advisorySubject(topo connector.Topology) string {
	return connector.MaxDeliveriesAdvisoryPrefix + "." + topo.Stream + "." + topo.Durable
}

// startMaxDeliveriesWatcher runs WatchMaxDeliveries for topo on the
// harness's connection until the test ends (then requires it to return
// nil), and returns once the server has its subscription.
func startMaxDeliveriesWatcher(t *testing.T, h *harness, topo connector.Topology) *deadLetterCounts {
	t.Helper()
	counts := &deadLetterCounts{n: map[string]int{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- connector.WatchMaxDeliveries(ctx, h.nc, h.js, topo, h.log, counts.add) }()
	// Registered after the harness's cleanups: runs before NATS is closed.
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err, "WatchMaxDeliveries")
		case <-time.After(waitFor):
			t.Error("WatchMaxDeliveries did not return after cancel")
		}
	})
	subject := advisorySubject(topo)
	require.Eventually(t, func() bool { return h.srv.GlobalAccount().SubscriptionInterest(subject) },
		waitFor, tick, "no subscription on %s", subject)
	return counts
}

// fetchOne fetches the next message of cons, waiting for its redelivery if
// need be, and does not settle it.
func fetchOne(t *testing.T, cons jetstream.Consumer) jetstream.Msg {
	t.Helper()
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(waitFor))
	require.NoError(t, err)
	var got []jetstream.Msg
	for m := range batch.Messages() {
		got = append(got, m)
	}
	require.NoError(t, batch.Error())
	require.Len(t, got, 1, "no message delivered within %s", waitFor)
	return got[0]
}

func TestWatchMaxDeliveriesDeadLettersAMessageWhoseLastDeliveryExpired(t *testing.T) {
	h := newHarness(t, harnessConfig{})
	h.stopRun(waitFor) // only the test's consumer reads the stream
	ctx := t.Context()

	// A consumer that gives up after two deliveries of 300ms each.
	topo := h.topo
	topo.Durable = "abandoning"
	subject := subjectPrefix + "c-abandoned"
	cons, err := h.objs.Stream.CreateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: topo.Durable, AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: 300 * time.Millisecond, MaxDeliver: 2, FilterSubject: subject,
	})
	require.NoError(t, err)
	counts := startMaxDeliveriesWatcher(t, h, topo)

	body := []byte(`{"user_id":"u1","cohort_id":"c-abandoned","action":"enter","ts":"2026-01-02T03:04:05Z","identifiers":{"email":"a@example.com"}}`)
	msg := nats.NewMsg(subject)
	msg.Data = body
	msg.Header.Set("X-Trace", "trace-1")
	msg.Header.Set(jetstream.MsgIDHeader, "producer-id-1")
	pub, err := h.js.PublishMsg(ctx, msg)
	require.NoError(t, err)

	// Delivered twice, never settled: like a process that crashed or hung.
	for i := uint64(1); i <= 2; i++ {
		m := fetchOne(t, cons)
		meta, err := m.Metadata()
		require.NoError(t, err)
		require.Equal(t, pub.Sequence, meta.Sequence.Stream)
		require.Equal(t, i, meta.NumDelivered)
	}

	// nats-server (2.15) publishes the advisory when the consumer is pulled
	// after the last AckWait expired, as the running daemon does all the time.
	var beyond atomic.Int64
	require.Eventually(t, func() bool {
		if batch, err := cons.FetchNoWait(1); err == nil {
			for range batch.Messages() {
				beyond.Add(1)
			}
		}
		return len(h.dlqMessages()) > 0
	}, waitFor, tick, "the abandoned message never reached the DLQ")
	require.Zero(t, beyond.Load(), "delivered beyond MaxDeliver")
	dl := h.dlqMessages()
	require.Len(t, dl, 1)
	got := dl[0]
	assert.Equal(t, dlqSubject+".max_deliveries", got.Subject)
	assert.Equal(t, body, got.Data, "body byte for byte")
	assert.Equal(t, "max_deliveries", got.Header.Get(connector.HeaderDLQReason))
	assert.Equal(t, "JetStream gave up after 2 deliveries (AckWait expired)", got.Header.Get(connector.HeaderDLQDetail))
	assert.Equal(t, subject, got.Header.Get(connector.HeaderDLQSubject))
	assert.Equal(t, "COHORTS", got.Header.Get(connector.HeaderDLQStream))
	assert.Equal(t, strconv.FormatUint(pub.Sequence, 10), got.Header.Get(connector.HeaderDLQSequence))
	assert.Equal(t, "2", got.Header.Get(connector.HeaderDLQDeliveries))
	ts, err := time.Parse(time.RFC3339Nano, got.Header.Get(connector.HeaderDLQTime))
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now(), ts, time.Minute)
	assert.Equal(t, "trace-1", got.Header.Get("X-Trace"), "application headers are kept")
	stored, err := h.objs.Stream.GetMsg(t.Context(), pub.Sequence)
	require.NoError(t, err)
	assert.Equal(t, "dlq:COHORTS:"+strconv.FormatUint(pub.Sequence, 10)+":"+strconv.FormatInt(stored.Time.UnixNano(), 10),
		got.Header.Get(jetstream.MsgIDHeader),
		"the producer's Nats-Msg-Id is replaced by the dead-letter id: stream, sequence and stored time")
	assert.Equal(t, 1, counts.get("max_deliveries"))
}

func TestWatchMaxDeliveriesDoesNotDoubleADeadLetter(t *testing.T) {
	// The connector is running: it dead-letters the malformed message itself.
	h := newHarness(t, harnessConfig{})
	bad := h.publish("c-bad", []byte(`{"user_id":`))
	require.Eventually(t, func() bool { return len(h.dlqMessages()) == 1 }, waitFor, tick,
		"the connector did not dead-letter the malformed message")
	dl := h.dlqMessages()
	connectorReason := dl[0].Header.Get(connector.HeaderDLQReason)
	require.NotEqual(t, "max_deliveries", connectorReason)

	counts := startMaxDeliveriesWatcher(t, h, h.topo)
	// Not activated: the connector acks it; it stays in the stream.
	good := h.publishMembership(membership("c-good", 0))

	// JetStream's advisory for the message already dead-lettered, twice,
	// then one for a message not dead-lettered yet.
	advise := func(seq uint64) {
		b, err := json.Marshal(server.JSConsumerDeliveryExceededAdvisory{
			TypedEvent: server.TypedEvent{Type: server.JSConsumerDeliveryExceededAdvisoryType, ID: "test", Time: time.Now().UTC()},
			Stream:     h.topo.Stream, Consumer: h.topo.Durable, StreamSeq: seq, Deliveries: 5,
		})
		require.NoError(t, err)
		require.NoError(t, h.nc.Publish(advisorySubject(h.topo), b))
	}
	advise(bad)
	advise(bad)
	advise(good)

	// Advisories are handled in order: once the last one is in the DLQ,
	// the first two have been handled.
	require.Eventually(t, func() bool { return len(h.dlqMessages()) >= 2 }, waitFor, tick,
		"the advisory for seq %d was not dead-lettered", good)
	dl = h.dlqMessages()
	require.Len(t, dl, 2, "the message already dead-lettered must not be doubled")
	bySeq := map[string]dlqMessage{}
	for _, m := range dl {
		bySeq[m.Header.Get(connector.HeaderDLQSequence)] = m
	}
	assert.Equal(t, connectorReason, bySeq[strconv.FormatUint(bad, 10)].Header.Get(connector.HeaderDLQReason),
		"the connector's dead letter is the one kept")
	assert.Equal(t, "max_deliveries", bySeq[strconv.FormatUint(good, 10)].Header.Get(connector.HeaderDLQReason))
	assert.Equal(t, "5", bySeq[strconv.FormatUint(good, 10)].Header.Get(connector.HeaderDLQDeliveries))
	assert.Equal(t, 1, counts.get("max_deliveries"), "a deduplicated dead letter is not counted")
}
