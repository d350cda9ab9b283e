package main

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/connector"
)

// L9a: replaying dead letters that fail again, twice, against a running
// daemon: the dead-letter stream never holds more than the letters it
// started with, and the summary counts what was really published.
func TestDLQReplayTwiceNeverMultipliesLetters(t *testing.T) {
	const n = 20
	sim := startSimulator(t)
	d := startRunningDaemon(t, daemonEnv(t, sim))
	// The CLI goes to the daemon's embedded server.
	t.Setenv("CONNECTOR_EMBEDDED_NATS_LISTEN", strings.TrimPrefix(d.natsURL, "nats://"))
	dlq, err := d.js.Stream(t.Context(), "COHORTS_DLQ")
	require.NoError(t, err)
	input, err := d.js.Stream(t.Context(), "COHORTS")
	require.NoError(t, err)

	// Letters as the daemon writes them, of bodies its decoder rejects, so
	// that each replayed message is dead-lettered again.
	for i := range n {
		m := nats.NewMsg("cohorts.dlq.malformed_json")
		m.Data = []byte(fmt.Sprintf(`{"user_id":"u%d",`, i))
		m.Header.Set(connector.HeaderDLQReason, "malformed_json")
		m.Header.Set(connector.HeaderDLQDetail, "unexpected end of JSON input")
		m.Header.Set(connector.HeaderDLQSubject, "cohorts.membership.c1")
		m.Header.Set(connector.HeaderDLQStream, "COHORTS")
		m.Header.Set(connector.HeaderDLQSequence, strconv.Itoa(1000+i))
		m.Header.Set(connector.HeaderDLQDeliveries, "1")
		m.Header.Set(connector.HeaderDLQTime, time.Now().UTC().Format(time.RFC3339Nano))
		_, err := d.js.PublishMsg(t.Context(), m, jetstream.WithMsgID("dlq:COHORTS:"+strconv.Itoa(1000+i)))
		require.NoError(t, err)
	}
	msgs := func(s jetstream.Stream) uint64 {
		info, err := s.Info(t.Context())
		require.NoError(t, err)
		return info.State.Msgs
	}
	require.EqualValues(t, n, msgs(dlq))
	before := msgs(input) // the daemon's warm-up message

	for round := 1; round <= 2; round++ {
		out := dlqRun(t, "replay")
		t.Logf("replay %d: %s", round, out)
		assert.Contains(t, out, fmt.Sprintf("replay: %d dead letters published to stream COHORTS and deleted from COHORTS_DLQ", n),
			"replay %d", round)
		assert.NotContains(t, out, "already", "replay %d: nothing was published before", round)
		assert.EqualValues(t, before+uint64(round*n), msgs(input), "replay %d published exactly what it says", round)
		assert.LessOrEqual(t, msgs(dlq), uint64(n), "replay %d: the dead-letter stream never holds more than %d", round, n)

		// The daemon dead-letters each replayed message again: one new
		// letter each.
		require.Eventually(t, func() bool {
			return strings.Contains(d.metrics(), fmt.Sprintf(`cohort_connector_dead_letters_total{reason="malformed_json"} %d`, round*n))
		}, 15*time.Second, 20*time.Millisecond, "replay %d: the daemon did not dead-letter the replayed messages", round)
		assert.EqualValues(t, n, msgs(dlq), "after replay %d and the daemon's verdict: %d letters, not more", round, n)
	}
}
