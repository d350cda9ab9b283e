package main

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/config"
	"github.com/cohort-connector/cohort-connector/connector"
)

// dlqEnv is an embedded JetStream server with the daemon's streams, and the
// CONNECTOR_* environment that points the CLI at it.
type dlqEnv struct {
	t     *testing.T
	js    jetstream.JetStream
	input jetstream.Stream
	dlq   jetstream.Stream
}

func newDLQEnv(t *testing.T) *dlqEnv {
	t.Helper()
	clearEnv(t)
	srv, err := connector.StartEmbedded("127.0.0.1:0", t.TempDir())
	require.NoError(t, err)
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	for k, v := range map[string]string{
		"CONNECTOR_DEFAULT_TAG_ID": "5", "CONNECTOR_ACCOUNTS": "a",
		"CONNECTOR_ACCOUNT_A_AD_ACCOUNT_ID": "1", "CONNECTOR_ACCOUNT_A_TOKEN": "tok", "CONNECTOR_ACCOUNT_A_TAG_IDS": "5",
		// CONNECTOR_NATS_URL unset: the CLI goes to the embedded server's address.
		"CONNECTOR_EMBEDDED_NATS_LISTEN": srv.Addr().String(),
	} {
		t.Setenv(k, v)
	}
	cfg, err := config.Load()
	require.NoError(t, err)

	nc, err := nats.Connect(srv.ClientURL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	e := &dlqEnv{t: t}
	e.js, err = jetstream.New(nc)
	require.NoError(t, err)
	objs, err := connector.Ensure(t.Context(), e.js, topology(cfg))
	require.NoError(t, err)
	e.input, e.dlq = objs.Stream, objs.DLQ
	return e
}

// seed publishes a dead letter as the connector would and returns its DLQ
// sequence.
func (e *dlqEnv) seed(reason, origSubject string, origSeq, deliveries int, detail, body string, extra nats.Header) uint64 {
	e.t.Helper()
	m := nats.NewMsg("cohorts.dlq." + reason)
	m.Data = []byte(body)
	for k, vs := range extra {
		m.Header[k] = vs
	}
	m.Header.Set(connector.HeaderDLQReason, reason)
	m.Header.Set(connector.HeaderDLQDetail, detail)
	m.Header.Set(connector.HeaderDLQSubject, origSubject)
	m.Header.Set(connector.HeaderDLQStream, "COHORTS")
	m.Header.Set(connector.HeaderDLQSequence, strconv.Itoa(origSeq))
	m.Header.Set(connector.HeaderDLQDeliveries, strconv.Itoa(deliveries))
	m.Header.Set(connector.HeaderDLQTime, time.Now().UTC().Format(time.RFC3339Nano))
	ack, err := e.js.PublishMsg(e.t.Context(), m, jetstream.WithMsgID("dlq:COHORTS:"+strconv.Itoa(origSeq)))
	require.NoError(e.t, err)
	return ack.Sequence
}

// inputMessages reads every message of the input stream.
func (e *dlqEnv) inputMessages() []*jetstream.RawStreamMsg {
	e.t.Helper()
	info, err := e.input.Info(e.t.Context())
	require.NoError(e.t, err)
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := e.input.GetMsg(e.t.Context(), seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		require.NoError(e.t, err)
		out = append(out, m)
	}
	return out
}

// dlqRun runs "cohort-connector dlq args..." and requires it to succeed.
func dlqRun(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := runCmd(t, append([]string{"dlq"}, args...)...)
	require.Equal(t, 0, code, "dlq %v: %s", args, errOut)
	return out
}

// listedSeqs are the DLQ sequences of "dlq list" output lines.
func listedSeqs(t *testing.T, out string) []uint64 {
	t.Helper()
	var seqs []uint64
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if n, err := strconv.ParseUint(f[0], 10, 64); err == nil {
			seqs = append(seqs, n)
		}
	}
	return seqs
}

// seedThree dead-letters three messages, with a point in time between the
// first and the second.
func (e *dlqEnv) seedThree() (s1, s2, s3 uint64, between time.Time) {
	s1 = e.seed("malformed_json", "cohorts.membership.c1", 10, 1, "unexpected end of JSON input", `{"user_id":`,
		nats.Header{"X-Trace": {"t-1"}})
	between = time.Now()
	s2 = e.seed("max_deliveries", "cohorts.membership.c2", 11, 50,
		"retryable: pinterest 503 "+strings.Repeat("upstream unavailable ", 10)+"END-OF-DETAIL",
		`{"user_id":"u2","cohort_id":"c2","action":"enter","ts":"2026-11-22T19:05:01Z","identifiers":{"email":"a@example.com"}}`,
		nats.Header{"X-Trace": {"t-2"}})
	s3 = e.seed("rejected_by_pinterest", "cohorts.membership.c3", 12, 1, "event 0: invalid em",
		`{"user_id":"u3","cohort_id":"c3","action":"exit","ts":"2026-11-22T19:05:02Z","identifiers":{"email":"b@example.com"}}`, nil)
	return s1, s2, s3, between
}

func TestDLQList(t *testing.T) {
	e := newDLQEnv(t)
	require.Contains(t, dlqRun(t, "list"), "no dead letters match", "an empty DLQ lists nothing and returns")
	s1, s2, s3, between := e.seedThree()

	out := dlqRun(t, "list")
	assert.Equal(t, []uint64{s1, s2, s3}, listedSeqs(t, out))
	for _, want := range []string{"REASON", "malformed_json", "max_deliveries", "rejected_by_pinterest",
		"cohorts.membership.c1", "cohorts.membership.c2", " 11 ", " 50 ", "unexpected end of JSON input", "retryable: pinterest 503"} {
		assert.Contains(t, out, want)
	}
	assert.NotContains(t, out, "END-OF-DETAIL", "long details are truncated")

	assert.Equal(t, []uint64{s2}, listedSeqs(t, dlqRun(t, "list", "--reason", "max_deliveries")))
	assert.Equal(t, []uint64{s2, s3}, listedSeqs(t, dlqRun(t, "list", "--since", between.Format(time.RFC3339Nano))))
	assert.Equal(t, []uint64{s1, s2, s3}, listedSeqs(t, dlqRun(t, "list", "--since", "2h")))
	assert.Empty(t, listedSeqs(t, dlqRun(t, "list", "--since", time.Now().Add(time.Hour).Format(time.RFC3339))),
		"a start after the last dead letter lists nothing, without waiting")
	out = dlqRun(t, "list", "--limit", "1")
	assert.Equal(t, []uint64{s3}, listedSeqs(t, out), "the most recent")
	assert.Contains(t, out, "1 most recent of 3")
	assert.Equal(t, []uint64{s1}, listedSeqs(t, dlqRun(t, "list", "--reason", "malformed_json", "--since", "1d", "--limit", "5")))

	code, _, errOut := runCmd(t, "dlq", "list", "--since", "yesterday")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "--since")
}

func TestDLQShow(t *testing.T) {
	e := newDLQEnv(t)
	s1, _, _, _ := e.seedThree()
	out := dlqRun(t, "show", strconv.FormatUint(s1, 10))
	for _, want := range []string{
		"sequence: " + strconv.FormatUint(s1, 10), "subject:  cohorts.dlq.malformed_json",
		"Dlq-Reason: malformed_json", "Dlq-Original-Subject: cohorts.membership.c1", "Dlq-Original-Sequence: 10",
		"Dlq-Delivery-Count: 1", "Dlq-Detail: unexpected end of JSON input", "X-Trace: t-1",
		"body (11 bytes):\n{\"user_id\":\n",
	} {
		assert.Contains(t, out, want)
	}
	code, _, errOut := runCmd(t, "dlq", "show", "999")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "dead letter 999")
}

func TestDLQReplay(t *testing.T) {
	e := newDLQEnv(t)
	s1, s2, s3, _ := e.seedThree()

	out := dlqRun(t, "replay", "--dry-run")
	assert.Contains(t, out, "dry run: 3 dead letters would be published to stream COHORTS and deleted from COHORTS_DLQ, 0 skipped; nothing changed")
	assert.Equal(t, []uint64{s1, s2, s3}, listedSeqs(t, out))
	assert.Empty(t, e.inputMessages(), "a dry run publishes nothing")
	assert.Equal(t, []uint64{s1, s2, s3}, listedSeqs(t, dlqRun(t, "list")), "and deletes nothing")

	out = dlqRun(t, "replay", "--reason", "max_deliveries")
	assert.Equal(t, "replay: 1 dead letters published to stream COHORTS and deleted from COHORTS_DLQ\n", out)
	in := e.inputMessages()
	require.Len(t, in, 1)
	assert.Equal(t, "cohorts.membership.c2", in[0].Subject)
	assert.JSONEq(t, `{"user_id":"u2","cohort_id":"c2","action":"enter","ts":"2026-11-22T19:05:01Z","identifiers":{"email":"a@example.com"}}`,
		string(in[0].Data))
	assert.Equal(t, "t-2", in[0].Header.Get("X-Trace"), "original headers are replayed")
	assert.Equal(t, "replay:"+strconv.FormatUint(s2, 10), in[0].Header.Get(jetstream.MsgIDHeader))
	for k := range in[0].Header {
		assert.False(t, strings.HasPrefix(k, "Dlq-"), "header %s replayed", k)
	}
	_, err := e.dlq.GetMsg(t.Context(), s2)
	assert.ErrorIs(t, err, jetstream.ErrMsgNotFound, "a replay is a move: the letter is deleted after its PubAck")
	assert.Equal(t, []uint64{s1, s3}, listedSeqs(t, dlqRun(t, "list")), "the others stay in the DLQ")

	out = dlqRun(t, "replay", "--reason", "max_deliveries")
	assert.Contains(t, out, "replay: 0 dead letters published", "nothing left to replay")
	assert.Len(t, e.inputMessages(), 1)

	// An earlier replay published s3 but stopped before deleting it.
	m := replayMsg(deadLetterMsg{Seq: s3, Header: nats.Header{connector.HeaderDLQSubject: {"cohorts.membership.c3"}},
		Data: []byte(`{}`)})
	_, err = e.js.PublishMsg(t.Context(), m)
	require.NoError(t, err)
	out = dlqRun(t, "replay", "--seq", strconv.FormatUint(s3, 10))
	assert.Equal(t, "replay: 0 dead letters published to stream COHORTS and deleted from COHORTS_DLQ; "+
		"1 already published by an earlier replay (duplicate window), not published again, deleted now\n", out)
	assert.Len(t, e.inputMessages(), 2, "not published twice")
	_, err = e.dlq.GetMsg(t.Context(), s3)
	assert.ErrorIs(t, err, jetstream.ErrMsgNotFound)

	noSubject := e.seed("malformed_json", "", 13, 1, "x", "{", nil)
	out = dlqRun(t, "replay")
	assert.Equal(t, "skipped "+strconv.FormatUint(noSubject, 10)+": no Dlq-Original-Subject header, kept\n"+
		"replay: 1 dead letters published to stream COHORTS and deleted from COHORTS_DLQ; 1 skipped and kept\n", out)
	assert.Equal(t, []uint64{noSubject}, listedSeqs(t, dlqRun(t, "list")))

	code, _, errOut := runCmd(t, "dlq", "replay", "--seq", strconv.FormatUint(s3, 10))
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "no dead letter "+strconv.FormatUint(s3, 10))
	code, _, errOut = runCmd(t, "dlq", "replay", "--purge-replayed")
	assert.Equal(t, 1, code, "replay always deletes: the old flag is gone")
	assert.Contains(t, errOut, "purge-replayed")
}

func TestDLQHelpAndBadArguments(t *testing.T) {
	clearEnv(t)
	out := dlqRun(t, "--help")
	for _, want := range []string{"list", "show", "replay", "--dry-run", "delete the dead letter", "never multiplies letters"} {
		assert.Contains(t, out, want)
	}
	for k, v := range map[string]string{
		"CONNECTOR_DEFAULT_TAG_ID": "5", "CONNECTOR_ACCOUNTS": "a",
		"CONNECTOR_ACCOUNT_A_AD_ACCOUNT_ID": "1", "CONNECTOR_ACCOUNT_A_TOKEN": "tok", "CONNECTOR_ACCOUNT_A_TAG_IDS": "5",
		// Nothing listens here: bad arguments must fail before connecting.
		"CONNECTOR_NATS_URL": "nats://127.0.0.1:1",
	} {
		t.Setenv(k, v)
	}
	for _, args := range [][]string{
		{"dlq", "purge"}, {"dlq", "show"}, {"dlq", "show", "x"}, {"dlq", "list", "--limit", "-1"},
		{"dlq", "replay", "--since", "soon"}, {"dlq", "list", "extra"},
	} {
		code, _, errOut := runCmd(t, args...)
		assert.Equal(t, 1, code, "%v", args)
		assert.NotContains(t, errOut, "connecting to NATS", "%v", args)
	}
}
