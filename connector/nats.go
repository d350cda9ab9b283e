package connector

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// Topology names the JetStream objects the connector uses and the consumer
// settings it creates them with. The same definitions are in deploy/nats/
// for operators who create them themselves.
type Topology struct {
	Stream            string   // input stream, e.g. COHORTS
	Subjects          []string // its subjects, e.g. cohorts.membership.>
	Durable           string   // durable pull consumer
	ActivationsBucket string   // KV bucket of activations
	DLQStream         string   // dead-letter stream
	DLQSubject        string   // dead letters are published on <DLQSubject>.<reason>
	OrderBucket       string   // KV bucket keeping per-user order across restarts; "" for none
	// StateBucket keeps what the connector learns and must not forget:
	// audience and customer list ids, encrypted OAuth refresh tokens, the
	// last change applied per customer list and user, match-rate sketches,
	// backfill progress. "" for none (audiences are then not managed).
	StateBucket string
	// ParkingStream stores, per ad account, the messages of an account
	// that is failing (subject <ParkingSubject>.<ad_account_id>), so that
	// they wait outside the main consumer; "" disables parking.
	ParkingStream  string
	ParkingSubject string

	// AckWait is how long JetStream waits for a settlement before
	// redelivering; MaxDeliver bounds deliveries (the connector dead-letters
	// a message itself at its last delivery); MaxAckPending bounds messages
	// delivered but not yet settled, and so the connector's memory.
	AckWait       time.Duration
	MaxDeliver    int
	MaxAckPending int
}

// StreamConfig is the input stream as the connector creates it: file
// storage, limits retention (history stays for replay and backfill), and a
// two-minute duplicate window for producers that set Nats-Msg-Id.
func (t Topology) StreamConfig() jetstream.StreamConfig {
	return fileStream(t.Stream, t.Subjects, 7*24*time.Hour)
}

// fileStream is the shape of every stream the connector creates: file
// storage, limits retention, MaxAge, and a two-minute duplicate window.
func fileStream(name string, subjects []string, maxAge time.Duration) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:       name,
		Subjects:   subjects,
		Storage:    jetstream.FileStorage,
		Retention:  jetstream.LimitsPolicy,
		MaxAge:     maxAge,
		Duplicates: 2 * time.Minute,
	}
}

// DLQStreamConfig is the dead-letter stream: kept 30 days.
func (t Topology) DLQStreamConfig() jetstream.StreamConfig {
	return fileStream(t.DLQStream, []string{t.DLQSubject + ".>"}, 30*24*time.Hour)
}

// ConsumerConfig is the durable pull consumer with every knob explicit.
func (t Topology) ConsumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       t.Durable,
		Description:   "cohort-connector: memberships to Pinterest",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       t.AckWait,
		MaxDeliver:    t.MaxDeliver,
		MaxAckPending: t.MaxAckPending,
		ReplayPolicy:  jetstream.ReplayInstantPolicy,
		MaxWaiting:    512,
	}
}

// KeyValueConfig is the activations bucket: a little history so that an
// operator can see what a toggle replaced.
func (t Topology) KeyValueConfig() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      t.ActivationsBucket,
		Description: "cohort-connector activations: one key per activation id",
		History:     5,
		Storage:     jetstream.FileStorage,
	}
}

// ParkingStreamConfig is the parking stream: parked messages are kept
// 7 days, like the input stream.
func (t Topology) ParkingStreamConfig() jetstream.StreamConfig {
	return fileStream(t.ParkingStream, []string{t.ParkingSubject + ".>"}, 7*24*time.Hour)
}

// ParkingConsumerConfig is the durable consumer of one ad account's parked
// messages: its own AckWait and MaxAckPending, so that a failing account's
// backlog is held against its own limits only. It has no MaxDeliver: the
// connector dead-letters a parked copy itself at MaxDeliver deliveries, and
// JetStream never drops one whose last delivery was cut short (a crash) or
// whose dead letter could not be written (see parking.go).
func (t Topology) ParkingConsumerConfig(adAccountID string) jetstream.ConsumerConfig {
	c := t.ConsumerConfig()
	c.Durable = t.Durable + "-parked-" + adAccountID
	c.Description = "cohort-connector: parked messages of ad account " + adAccountID
	c.FilterSubject = t.ParkingSubject + "." + adAccountID
	c.MaxDeliver = -1
	return c
}

// OrderBucketConfig is the order bucket: one record per user whose change
// waits for redelivery; records expire after 24 hours, longer than the
// whole redelivery schedule.
func (t Topology) OrderBucketConfig() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      t.OrderBucket,
		Description: "cohort-connector: changes waiting for redelivery, for per-user order across restarts",
		History:     1,
		TTL:         24 * time.Hour,
		Storage:     jetstream.FileStorage,
	}
}

// StateBucketConfig is the state bucket: one value per key, kept until
// replaced (nothing in it may expire: an audience id or a rotated refresh
// token lost is an audience created twice or an account locked out).
func (t Topology) StateBucketConfig() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      t.StateBucket,
		Description: "cohort-connector: audience ids, encrypted refresh tokens, applied list changes, match-rate sketches, backfill progress",
		History:     1,
		Storage:     jetstream.FileStorage,
	}
}

// Objects are the JetStream handles Ensure returns.
type Objects struct {
	Stream      jetstream.Stream
	DLQ         jetstream.Stream
	Consumer    jetstream.Consumer
	Activations jetstream.KeyValue
	Order       jetstream.KeyValue // nil when Topology.OrderBucket is ""
	State       jetstream.KeyValue // nil when Topology.StateBucket is ""
	// Created lists what Ensure had to create (for the startup log).
	Created []string
}

// Ensure looks up the stream, dead-letter stream, durable consumer and KV
// bucket, creating each one that is missing from t. Objects that exist are
// used as they are, never updated: an operator who created them owns their
// settings.
func Ensure(ctx context.Context, js jetstream.JetStream, t Topology) (*Objects, error) {
	o := &Objects{}
	var err error
	if o.Stream, err = ensureStream(ctx, js, t.StreamConfig(), &o.Created); err != nil {
		return nil, err
	}
	if o.DLQ, err = ensureStream(ctx, js, t.DLQStreamConfig(), &o.Created); err != nil {
		return nil, err
	}
	o.Consumer, err = o.Stream.Consumer(ctx, t.Durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		o.Consumer, err = o.Stream.CreateConsumer(ctx, t.ConsumerConfig())
		o.Created = append(o.Created, "consumer "+t.Stream+"/"+t.Durable)
	}
	if err != nil {
		return nil, fmt.Errorf("opening consumer %s on stream %s: %w", t.Durable, t.Stream, err)
	}
	if ci := o.Consumer.CachedInfo(); ci.Config.AckPolicy != jetstream.AckExplicitPolicy {
		return nil, fmt.Errorf("consumer %s: ack policy is %s, the connector needs explicit acks", t.Durable, ci.Config.AckPolicy)
	}
	if o.Activations, err = ensureBucket(ctx, js, t.KeyValueConfig(), &o.Created); err != nil {
		return nil, err
	}
	if t.ParkingStream != "" {
		// Its per-account consumers are created by Connector.Run, which
		// knows the ad accounts.
		if _, err = ensureStream(ctx, js, t.ParkingStreamConfig(), &o.Created); err != nil {
			return nil, err
		}
	}
	if t.OrderBucket != "" {
		if o.Order, err = ensureBucket(ctx, js, t.OrderBucketConfig(), &o.Created); err != nil {
			return nil, err
		}
	}
	if t.StateBucket != "" {
		if o.State, err = ensureBucket(ctx, js, t.StateBucketConfig(), &o.Created); err != nil {
			return nil, err
		}
	}
	return o, nil
}

func ensureBucket(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig, created *[]string) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, cfg)
		*created = append(*created, "kv "+cfg.Bucket)
	}
	if err != nil {
		return nil, fmt.Errorf("opening KV bucket %s: %w", cfg.Bucket, err)
	}
	return kv, nil
}

func ensureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig, created *[]string) (jetstream.Stream, error) {
	s, err := js.Stream(ctx, cfg.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = js.CreateStream(ctx, cfg)
		*created = append(*created, "stream "+cfg.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("opening stream %s: %w", cfg.Name, err)
	}
	return s, nil
}

// StartEmbedded starts a JetStream-enabled nats-server in this process,
// listening on listen (a loopback host:port; port 0 picks a free one) and
// storing under dir. It returns once the server accepts connections.
// Shutdown: call srv.Shutdown() and srv.WaitForShutdown() after every client
// connection has drained.
func StartEmbedded(listen, dir string) (*server.Server, error) {
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS listen address %q: %w", listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS listen port %q: %w", portStr, err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	srv, err := server.NewServer(&server.Options{
		ServerName: "cohort-connector-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   dir,
		NoSigs:     true, // signals belong to main
		NoLog:      true,
	})
	if err != nil {
		return nil, fmt.Errorf("configuring embedded NATS server: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("embedded NATS server on %s not ready after 10s (port in use?)", listen)
	}
	return srv, nil
}
