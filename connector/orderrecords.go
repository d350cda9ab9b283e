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

// Order records keep per-user order across restarts. When the oldest
// outstanding change of a user in a cohort at an ad account is nak'd (it
// waits for redelivery) or parked, a record of it is written to the order
// bucket; when it is finally acked or dead-lettered, the record is deleted.
// At startup the records are loaded, so that a later change of that user
// published after the restart waits for the earlier one instead of
// overtaking it. Only failures write: the happy path costs nothing. Records
// expire with the bucket's TTL (24 h, longer than the redelivery schedule).
//
// Records are written and deleted with asynchronous publishes on the
// connector's connection, ahead of the settlement that follows them.

// orderRecord is the value of one record.
type orderRecord struct {
	Account  string    `json:"ad_account_id"`
	CohortID string    `json:"cohort_id"`
	UserID   string    `json:"user_id"`
	Seq      uint64    `json:"seq"`              // origin sequence in the input stream
	Due      time.Time `json:"due"`              // when its redelivery is due (zero when parked)
	Parked   bool      `json:"parked,omitempty"` // it waits in the account's parking consumer
}

// recordSubject is the KV subject of k's record: a hash, since ids may hold
// characters KV keys may not.
func (c *Connector) recordSubject(k orderKey) string {
	sum := sha256.Sum256([]byte(k.account + "\x00" + k.cohort + "\x00" + k.user))
	return "$KV." + c.o.Topology.OrderBucket + ".o" + hex.EncodeToString(sum[:20])
}

// writeRecord writes the record of change e of k.
func (c *Connector) writeRecord(k orderKey, e orderEntry) {
	if c.o.OrderRecords == nil {
		return
	}
	data, _ := json.Marshal(orderRecord{Account: k.account, CohortID: k.cohort, UserID: k.user, Seq: e.seq, Due: e.retryAt, Parked: e.parked})
	if _, err := c.o.JS.PublishAsync(c.recordSubject(k), data); err != nil {
		c.o.Logger.Warn().Err(err).Str("cohort_id", k.cohort).Str("ad_account_id", k.account).
			Msg("writing order record failed: order across a restart not kept for this user")
	}
}

// deleteRecord deletes k's record (a KV delete marker).
func (c *Connector) deleteRecord(k orderKey) {
	if c.o.OrderRecords == nil {
		return
	}
	m := nats.NewMsg(c.recordSubject(k))
	m.Header.Set("KV-Operation", "DEL")
	if _, err := c.o.JS.PublishMsgAsync(m); err != nil {
		c.o.Logger.Warn().Err(err).Msg("deleting order record failed: it expires with the bucket's TTL")
	}
}

// loadRecords reads every record into the order book. A record is written
// at a change's first nak: if that redelivery is still to come, it is due
// then; if it has passed, the change may have been nak'd again since and is
// due back at the latest after the longest redelivery delay.
func (c *Connector) loadRecords(ctx context.Context) (int, error) {
	w, err := c.o.OrderRecords.WatchAll(ctx, jetstream.IgnoreDeletes())
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
			var r orderRecord
			if err := json.Unmarshal(e.Value(), &r); err != nil || r.Seq == 0 || r.Account == "" {
				c.o.Logger.Warn().Str("key", e.Key()).Msg("ignoring an unreadable order record")
				continue
			}
			due := r.Due
			if !r.Parked && !due.After(now) {
				due = latest
			}
			c.order.load(orderKey{r.Account, r.CohortID, r.UserID}, r.Seq, due, r.Parked)
			n++
		}
	}
}

// expectUnsettled covers what order records cannot: a process killed while
// a change's first call was in flight leaves no record, and JetStream
// redelivers that change only when its AckWait expires — after a later
// change of the same user, first delivered to the new process, would have
// overtaken it. So when the main consumer still has unacknowledged messages
// at startup, the messages delivered above its ack floor are read back (at
// most the last readBackWindow × MaxAckPending), and their users' later changes, at each
// ad account they go to, wait until those messages are seen again, or until
// a delivery after their AckWait shows they were acked (forgetExpected).
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
	if window := readBackWindow * uint64(max(ci.Config.MaxAckPending, 1)); last >= window && last-window+1 > first {
		// Bounded, for startup time and memory: an older message still
		// unacknowledged (a change nak'd for long keeps the ack floor
		// behind) may then be overtaken by a later change of its user.
		c.o.Logger.Warn().Uint64("ack_floor", first-1).Uint64("from", last-window+1).
			Msg("restart read-back bounded: per-user order is not kept for changes below this sequence that are still unacknowledged")
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
	// Later changes wait until forgetExpected may run (see loadOrder).
	until := now.Add(2 * c.o.Topology.AckWait)
	n, next := 0, first
	for {
		// Not FetchNoWait: it may answer with nothing while the server is
		// still gathering messages, which would end the read-back early.
		// No more than are left up to last, so the fetch need not wait out
		// its MaxWait at the end.
		want := int(min(1000, last-next+1))
		batch, err := oc.Fetch(want, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return n, fmt.Errorf("reading back unacknowledged messages: %w", err)
		}
		got, done := 0, false
		for msg := range batch.Messages() { // read to the end: the fetch ends with it
			got++
			meta, err := msg.Metadata()
			if done || err != nil || meta.Sequence.Stream > last {
				done = true
				continue
			}
			if m, err := cohorts.Decode(msg.Data(), now); err == nil {
				for _, tg := range c.o.Resolver.Resolve(m) {
					if tg.Err == nil {
						c.order.expect(orderKey{tg.AdAccountID, m.CohortID, m.UserID}, meta.Sequence.Stream, until)
					}
				}
				n++
			}
			done = meta.Sequence.Stream == last
			next = meta.Sequence.Stream + 1
		}
		if err := batch.Error(); err != nil && !done {
			return n, fmt.Errorf("reading back unacknowledged messages: %w", err)
		}
		if done || got == 0 { // got 0: nothing for 2s, the rest was deleted from the stream
			return n, nil
		}
	}
}

// readBackWindow bounds the restart read-back to the last readBackWindow ×
// MaxAckPending delivered messages. A crash loop keeps the ack floor far
// behind (changes held for a restart wait two AckWaits, unacknowledged):
// the fault suite's ten SIGKILLs in 35 s needed more than 4.
const readBackWindow = 10

// orderLoadTimeout bounds the startup read of the order bucket and the
// read-back of unacknowledged messages.
const orderLoadTimeout = 30 * time.Second
