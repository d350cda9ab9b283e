package connector

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cohort-connector/cohort-connector/cohorts"
)

// The order bucket keeps per-user order across restarts. When the oldest
// outstanding change of a (cohort, user) is nak'd — its call failed and it
// waits for redelivery — a record of it is written; when it is finally acked
// or terminated, the record is deleted. At startup the records are loaded,
// so that a later change of that user published after the restart waits for
// the earlier one instead of overtaking it. Only failures write: the happy
// path costs nothing. Records expire with the bucket's TTL (24 h, longer
// than the whole redelivery schedule).

// holdRecord is the value of one record.
type holdRecord struct {
	CohortID string    `json:"cohort_id"`
	UserID   string    `json:"user_id"`
	Seq      uint64    `json:"seq"`
	Due      time.Time `json:"due"` // when its first redelivery is due
}

// holdKey is the KV key of a (cohort, user): a hash, since ids may hold
// characters KV keys may not.
func holdKey(orderKey string) string {
	sum := sha256.Sum256([]byte(orderKey))
	return "h" + hex.EncodeToString(sum[:20])
}

// persistHold writes the record of t asynchronously; the nak that follows
// travels on the same connection, after it.
func (c *Connector) persistHold(t *tracked, due time.Time) {
	data, _ := json.Marshal(holdRecord{CohortID: t.cohortID, UserID: t.userID, Seq: t.meta.Sequence.Stream, Due: due})
	subj := "$KV." + c.o.Topology.OrderBucket + "." + holdKey(t.orderKey)
	if _, err := c.o.JS.PublishAsync(subj, data); err != nil {
		c.o.Logger.Warn().Err(err).Str("cohort_id", t.cohortID).Msg("writing order record failed: order across a restart not kept for this user")
	}
}

// unpersistHold deletes the record of t (a KV delete marker).
func (c *Connector) unpersistHold(t *tracked) {
	m := nats.NewMsg("$KV." + c.o.Topology.OrderBucket + "." + holdKey(t.orderKey))
	m.Header.Set("KV-Operation", "DEL")
	if _, err := c.o.JS.PublishMsgAsync(m); err != nil {
		c.o.Logger.Warn().Err(err).Msg("deleting order record failed: it expires with the bucket's TTL")
	}
}

// loadHolds reads every record into the order state. The record is written
// at the message's first nak only (failures must stay cheap): if that
// redelivery is still to come, it is when the message is due; if it has
// passed, the message may have been nak'd again since, and is due back at
// the latest after the longest redelivery delay. Either way it holds its
// user's later changes at most that long if it never comes back.
func (c *Connector) loadHolds(ctx context.Context) (int, error) {
	w, err := c.o.Holds.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return 0, fmt.Errorf("reading order bucket: %w", err)
	}
	defer func() { _ = w.Stop() }()
	now := c.o.Now()
	latest := now.Add(max(c.o.RetryDelayMax, c.o.AuthRetryDelay) + c.o.Topology.AckWait)
	n := 0
	for {
		select {
		case <-ctx.Done():
			return n, ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return n, errors.New("order bucket watcher closed")
			}
			if e == nil {
				return n, nil
			}
			var r holdRecord
			if err := json.Unmarshal(e.Value(), &r); err != nil || r.Seq == 0 {
				c.o.Logger.Warn().Str("key", e.Key()).Msg("ignoring an unreadable order record")
				continue
			}
			due := r.Due
			if !due.After(now) {
				due = latest
			}
			c.order.load(orderKey(r.CohortID, r.UserID), r.Seq, due)
			n++
		}
	}
}

// expectUnsettled covers what the order bucket cannot: a process killed
// while a change's first call was in flight leaves no record, and JetStream
// redelivers that change only when its AckWait expires — after a later
// change of the same user, first delivered to the new process, would have
// overtaken it. So when the consumer still has unacknowledged messages at
// startup, the last MaxAckPending delivered messages (every first delivery
// still unacknowledged is among them) are read back, and their users' later
// changes wait until those messages are seen again or their AckWait is
// over. Most of them were acked already: the cost is that a user with a
// change among them whose next change comes within AckWait of the restart
// waits at most AckWait.
func (c *Connector) expectUnsettled(ctx context.Context) (int, error) {
	ci, err := c.o.Consumer.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading consumer state: %w", err)
	}
	if ci.NumAckPending == 0 || ci.Delivered.Stream == 0 {
		return 0, nil
	}
	last := ci.Delivered.Stream
	first := ci.AckFloor.Stream + 1
	if window := uint64(max(ci.Config.MaxAckPending, 1)); last >= window && last-window+1 > first {
		first = last - window + 1
	}
	filters := ci.Config.FilterSubjects
	if ci.Config.FilterSubject != "" {
		filters = append(filters, ci.Config.FilterSubject)
	}
	oc, err := c.o.JS.OrderedConsumer(ctx, c.o.Topology.Stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: filters,
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    first,
	})
	if err != nil {
		return 0, fmt.Errorf("reading back unacknowledged messages: %w", err)
	}
	now := c.o.Now()
	until := now.Add(c.o.Topology.AckWait)
	n := 0
	for {
		batch, err := oc.FetchNoWait(1000)
		if err != nil {
			return n, fmt.Errorf("reading back unacknowledged messages: %w", err)
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			meta, err := msg.Metadata()
			if err != nil || meta.Sequence.Stream > last {
				return n, nil
			}
			if m, err := cohorts.Decode(msg.Data(), now); err == nil {
				c.order.expect(orderKey(m.CohortID, m.UserID), meta.Sequence.Stream, until)
				n++
			}
			if meta.Sequence.Stream == last {
				return n, nil
			}
		}
		if err := batch.Error(); err != nil {
			return n, fmt.Errorf("reading back unacknowledged messages: %w", err)
		}
		if got == 0 {
			return n, nil // the rest was deleted from the stream
		}
	}
}

// holdsLoadTimeout bounds the startup read of the order bucket.
const holdsLoadTimeout = 30 * time.Second
