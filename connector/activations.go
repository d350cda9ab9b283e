package connector

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/cohort-connector/cohort-connector/cohorts"
)

// WatchActivations keeps r in step with the activations bucket: every put
// and delete is applied as it arrives (JetStream pushes it, well under a
// second), without restart. ready is closed once the bucket's current
// contents are loaded, so the caller can hold back consumption until then:
// a membership consumed before its activation is known would be acked as
// not activated.
//
// A value that does not decode, or whose key differs from its id, is
// rejected and logged at error level; an activation whose Tag ID has no
// account is kept (its messages are held back, not dropped) and logged at
// error level. WatchActivations returns nil when ctx is cancelled.
func WatchActivations(ctx context.Context, kv jetstream.KeyValue, r *cohorts.Resolver, log zerolog.Logger, ready chan<- struct{}) error {
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watching activations bucket: %w", err)
	}
	defer func() { _ = w.Stop() }()
	initial := true
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return errors.New("activations watcher closed")
			}
			if e == nil { // end of the bucket's current contents
				if initial {
					initial = false
					log.Info().Int("activations", len(r.List())).Msg("activations loaded")
					close(ready)
				}
				continue
			}
			applyActivation(r, e, log, initial)
		}
	}
}

func applyActivation(r *cohorts.Resolver, e jetstream.KeyValueEntry, log zerolog.Logger, initial bool) {
	key := e.Key()
	if e.Operation() != jetstream.KeyValuePut {
		if old, ok := r.Delete(key); ok {
			log.Info().Str("activation_id", key).Str("cohort_id", old.CohortID).Msg("activation deleted")
		}
		return
	}
	a, err := cohorts.DecodeActivation(e.Value())
	if err == nil && a.ID != key {
		err = fmt.Errorf("key %q holds activation id %q", key, a.ID)
	}
	if err != nil {
		// Keep whatever was there before: a bad write must not switch an
		// activation off (or on).
		log.Error().Str("activation_id", key).Uint64("revision", e.Revision()).Err(err).Str("reason", "invalid_activation").
			Msg("activation rejected: value ignored, previous state kept")
		return
	}
	putErr := r.Put(a)
	t := r.Target(a)
	ev := log.Info()
	if putErr != nil {
		ev = log.Error().Err(putErr).Str("reason", "unknown_tag")
	}
	msg := "activation changed"
	if initial {
		msg = "activation loaded"
		if putErr == nil {
			ev = log.Debug()
		}
	}
	ev.Str("activation_id", a.ID).Str("cohort_id", a.CohortID).Bool("enabled", a.Enabled).
		Str("tag_id", t.TagID).Str("tag_source", string(t.TagSource)).Str("ad_account_id", t.AdAccountID).
		Uint64("revision", e.Revision()).Msg(msg)
}
