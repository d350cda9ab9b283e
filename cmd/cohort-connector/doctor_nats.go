package main

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cohort-connector/cohort-connector/config"
	"github.com/cohort-connector/cohort-connector/connector"
)

// createIt is the fix for a missing JetStream object.
const createIt = "start the daemon once (it creates what is missing), or create it as deploy/nats/README.md shows"

// checkObjects checks the JetStream objects the daemon uses, without
// creating any (an operator may own them). The Objects hold the ones
// found, for the later checks.
func checkObjects(ctx context.Context, js jetstream.JetStream, cfg config.Config, o doctorOptions) (*connector.Objects, []finding) {
	t := topology(cfg)
	objs := &connector.Objects{}
	var found []finding
	stream, f := checkInputStream(ctx, js, t, o)
	found = append(found, f)
	if stream != nil {
		objs.Stream = stream
		var c finding
		objs.Consumer, c = checkConsumer(ctx, stream, cfg)
		found = append(found, c)
	}
	found = append(found, checkStreamExists(ctx, js, "dead-letter stream", t.DLQStream))
	if t.ParkingStream != "" {
		found = append(found, checkStreamExists(ctx, js, "parking stream", t.ParkingStream))
	}
	var b finding
	objs.Activations, b = checkBucket(ctx, js, "activations bucket", t.ActivationsBucket, false)
	found = append(found, b)
	if t.OrderBucket != "" {
		_, b = checkBucket(ctx, js, "order bucket", t.OrderBucket, false)
		found = append(found, b)
	}
	if t.StateBucket != "" {
		objs.State, b = checkBucket(ctx, js, "state bucket", t.StateBucket, true)
		found = append(found, b)
	}
	return objs, found
}

// checkInputStream checks the input stream: present, and keeping the
// history a backfill rebuilds cohorts from (see connector/backfill.go).
func checkInputStream(ctx context.Context, js jetstream.JetStream, t connector.Topology, o doctorOptions) (jetstream.Stream, finding) {
	name := "stream " + t.Stream
	s, err := js.Stream(ctx, t.Stream)
	if err != nil {
		if errNotFound(err) {
			return nil, failFinding(name, createIt+" (CONNECTOR_STREAM names it)", "absent")
		}
		return nil, failFinding(name, "check the NATS account's permissions", "reading its info: %v", err)
	}
	c := s.CachedInfo().Config
	recreate := "the retention policy cannot be edited: create a stream with limits retention (deploy/nats/README.md) and move the producers to it, or set CONNECTOR_STREAM to one"
	switch {
	case c.Retention != jetstream.LimitsPolicy:
		return s, failFinding(name, recreate, "%s retention deletes a message once it is consumed: a backfill finds no history", c.Retention)
	case c.MaxMsgsPerSubject > 0:
		return s, failFinding(name, fmt.Sprintf("nats stream edit %s --max-msgs-per-subject=-1", t.Stream),
			"MaxMsgsPerSubject %d applies to a whole cohort's subject: it discards members' latest changes, which a backfill needs", c.MaxMsgsPerSubject)
	case c.MaxAge > 0 && c.MaxAge < o.history:
		return s, failFinding(name, fmt.Sprintf("nats stream edit %s --max-age=%s (or run doctor with a shorter --history)", t.Stream, o.history),
			"MaxAge %s is below the %s of history a backfill must find (--history)", c.MaxAge, o.history)
	}
	age := "no MaxAge"
	if c.MaxAge > 0 {
		age = "MaxAge " + c.MaxAge.String()
	}
	st := s.CachedInfo().State
	return s, okFinding(name, "subjects %v, limits retention, %s, %d messages (first sequence %d)", c.Subjects, age, st.Msgs, st.FirstSeq)
}

// checkConsumer checks the durable consumer's settings against the
// daemon's: explicit acks, an AckWait longer than a call and the batch
// period (else a slow call's messages are redelivered while it runs), a
// MaxDeliver (else a message never reaches the dead-letter stream).
func checkConsumer(ctx context.Context, s jetstream.Stream, cfg config.Config) (jetstream.Consumer, finding) {
	name := "consumer " + cfg.Stream + "/" + cfg.Durable
	c, err := s.Consumer(ctx, cfg.Durable)
	if err != nil {
		if errNotFound(err) {
			return nil, failFinding(name, createIt+" (CONNECTOR_DURABLE names it)", "absent")
		}
		return nil, failFinding(name, "check the NATS account's permissions", "reading its info: %v", err)
	}
	info := c.CachedInfo()
	cc := info.Config
	edit := "nats consumer edit " + cfg.Stream + " " + cfg.Durable
	// config.Validate keeps CONNECTOR_ACK_WAIT above this.
	least := cfg.HTTPCallTimeout + cfg.BatchPeriod
	switch {
	case cc.AckPolicy != jetstream.AckExplicitPolicy:
		return c, failFinding(name, "the ack policy cannot be edited: delete the consumer and let the daemon create it", "ack policy %s: the daemon needs explicit acks and will not start", cc.AckPolicy)
	case cc.AckWait <= least:
		return c, failFinding(name, fmt.Sprintf("%s --wait=%s", edit, cfg.AckWait),
			"AckWait %s is not above CONNECTOR_HTTP_CALL_TIMEOUT + CONNECTOR_BATCH_PERIOD (%s): a slow call's messages are redelivered while it runs", cc.AckWait, least)
	case cc.MaxDeliver < 2:
		return c, failFinding(name, fmt.Sprintf("%s --max-deliver=%d", edit, cfg.MaxDeliver),
			"MaxDeliver %d: a message Pinterest keeps refusing is %s", cc.MaxDeliver, neverDeadLettered(cc.MaxDeliver))
	}
	return c, okFinding(name, "explicit acks, AckWait %s, MaxDeliver %d, MaxAckPending %d; %d waiting, %d unsettled, %d redelivered",
		cc.AckWait, cc.MaxDeliver, cc.MaxAckPending, info.NumPending, info.NumAckPending, info.NumRedelivered)
}

func neverDeadLettered(maxDeliver int) string {
	if maxDeliver < 1 {
		return "redelivered forever and never dead-lettered"
	}
	return "never retried"
}

func checkStreamExists(ctx context.Context, js jetstream.JetStream, what, stream string) finding {
	name := what + " " + stream
	s, err := js.Stream(ctx, stream)
	switch {
	case errNotFound(err):
		return failFinding(name, createIt, "absent")
	case err != nil:
		return failFinding(name, "check the NATS account's permissions", "reading its info: %v", err)
	}
	st := s.CachedInfo().State
	return okFinding(name, "%d messages", st.Msgs)
}

// checkBucket checks a KV bucket is present; keep says nothing in it may
// expire (the state bucket: a lost audience id or refresh token is an
// audience created twice or an account locked out).
func checkBucket(ctx context.Context, js jetstream.JetStream, what, bucket string, keep bool) (jetstream.KeyValue, finding) {
	name := what + " " + bucket
	kv, err := js.KeyValue(ctx, bucket)
	switch {
	case errNotFound(err):
		return nil, failFinding(name, createIt, "absent")
	case err != nil:
		return nil, failFinding(name, "check the NATS account's permissions", "opening it: %v", err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return kv, failFinding(name, "check the NATS account's permissions", "reading its status: %v", err)
	}
	if keep && st.TTL() > 0 {
		return kv, failFinding(name, "a bucket's TTL cannot be removed: create it again without one (deploy/nats/README.md) and copy its keys",
			"TTL %s: its audience ids and refresh tokens expire (an audience created twice, an account locked out)", st.TTL())
	}
	return kv, okFinding(name, "%d values, history %d, TTL %s", st.Values(), st.History(), ttl(st.TTL()))
}

func ttl(d time.Duration) string {
	if d == 0 {
		return "none"
	}
	return d.String()
}
