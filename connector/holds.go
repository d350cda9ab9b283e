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

// holdsLoadTimeout bounds the startup read of the order bucket.
const holdsLoadTimeout = 30 * time.Second
