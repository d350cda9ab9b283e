package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cohort-connector/cohort-connector/cohorts"
)

// deployDefs are the JetStream objects as deploy/nats/*.json defines them.
// The bench creates the stream, the DLQ stream, the consumer and the
// activations bucket; the daemon creates the parking stream and the order
// and state buckets (their names are read to check and clean up).
type deployDefs struct {
	stream, dlq, parking       jetstream.StreamConfig
	consumer                   jetstream.ConsumerConfig
	activations, order, states jetstream.KeyValueConfig
}

func readDeployDefs(root string) (deployDefs, error) {
	var d deployDefs
	for name, v := range map[string]any{
		"stream.json":         &d.stream,
		"dlq-stream.json":     &d.dlq,
		"parking-stream.json": &d.parking,
		"consumer.json":       &d.consumer,
		"kv.json":             &d.activations,
		"order-kv.json":       &d.order,
		"state-kv.json":       &d.states,
	} {
		path := filepath.Join(root, "deploy", "nats", name)
		data, err := os.ReadFile(path)
		if err != nil {
			return d, err
		}
		if err := json.Unmarshal(data, v); err != nil {
			return d, fmt.Errorf("%s: %w", path, err)
		}
	}
	if len(d.stream.Subjects) != 1 || !strings.HasSuffix(d.stream.Subjects[0], ".>") {
		return d, fmt.Errorf("deploy/nats/stream.json: want one subject ending in .>, got %q", d.stream.Subjects)
	}
	return d, nil
}

// subjectPrefix is what a cohort id is appended to: "cohorts.membership.".
func (d deployDefs) subjectPrefix() string { return strings.TrimSuffix(d.stream.Subjects[0], ">") }

// streamNames are every stream the run creates or makes the daemon create
// (a KV bucket is the stream KV_<bucket>).
func (d deployDefs) streamNames() []string {
	return []string{d.stream.Name, d.dlq.Name, d.parking.Name,
		"KV_" + d.activations.Bucket, "KV_" + d.order.Bucket, "KV_" + d.states.Bucket}
}

// createObjects creates the stream, DLQ stream, consumer and activations
// bucket from their definitions (the consumer's MaxAckPending as deployed)
// and puts one enabled activation in -mode per cohort (activationID):
// cohort c's goes to
// account c mod -accounts, with a blank tag_id (the default Tag ID) for
// account 0 and the account's Tag ID for the others. With -nats-url none
// of the run's streams may exist yet: leftovers would be measured too.
func (b *bench) createObjects(ctx context.Context) error {
	for _, name := range b.defs.streamNames() {
		_, err := b.js.Stream(ctx, name)
		if err == nil {
			return fmt.Errorf("stream %s already exists on %s: the benchmark needs a server without its streams and buckets", name, b.url)
		}
		if !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("looking up stream %s: %w", name, err)
		}
	}
	b.owned = true
	stream, err := b.js.CreateStream(ctx, b.defs.stream)
	if err != nil {
		return err
	}
	if _, err := b.js.CreateStream(ctx, b.defs.dlq); err != nil {
		return err
	}
	if _, err := stream.CreateConsumer(ctx, b.defs.consumer); err != nil {
		return err
	}
	kv, err := b.js.CreateKeyValue(ctx, b.defs.activations)
	if err != nil {
		return err
	}
	for c := range b.o.cohorts {
		a := cohorts.Activation{ID: activationID(c), CohortID: cohortID(c),
			Destination: cohorts.DestinationPinterest, Enabled: true, Mode: b.o.mode}
		if i := c % len(b.accounts); i != 0 {
			a.TagID = b.accounts[i].tagID
		}
		data, err := json.Marshal(a)
		if err != nil {
			return err
		}
		if _, err := kv.Put(ctx, a.ID, data); err != nil {
			return err
		}
	}
	return nil
}

// deleteObjects removes from an external server the streams and buckets
// this run created (its own and the daemon's).
func (b *bench) deleteObjects() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var errs []error
	for _, name := range b.defs.streamNames() {
		if err := b.js.DeleteStream(ctx, name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			errs = append(errs, fmt.Errorf("deleting stream %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// consumerInfo reads a consumer of the input stream.
func (b *bench) consumerInfo(ctx context.Context, durable string) (*jetstream.ConsumerInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := b.js.Consumer(ctx, b.defs.stream.Name, durable)
	if err != nil {
		return nil, err
	}
	return c.Info(ctx)
}

// cohortID is the id of cohort c: cohort-000, cohort-001, …
func cohortID(c int) string { return fmt.Sprintf("cohort-%03d", c) }

// activationID is the id of cohort c's activation: bench-cohort-000, …
func activationID(c int) string { return "bench-" + cohortID(c) }
