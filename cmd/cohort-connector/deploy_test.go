package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/config"
)

var update = flag.Bool("update", false, "rewrite deploy/nats/*.json from the code")

// The definitions operators use to create the JetStream objects themselves
// must be exactly what the daemon would create: this test fails when one
// side changes without the other (go test ./cmd/cohort-connector -update).
func TestDeployDefinitionsMatchWhatTheDaemonCreates(t *testing.T) {
	topo := topology(config.Default())
	files := map[string]any{
		"stream.json":         topo.StreamConfig(),
		"dlq-stream.json":     topo.DLQStreamConfig(),
		"consumer.json":       topo.ConsumerConfig(),
		"kv.json":             topo.KeyValueConfig(),
		"order-kv.json":       topo.OrderBucketConfig(),
		"state-kv.json":       topo.StateBucketConfig(),
		"parking-stream.json": topo.ParkingStreamConfig(),
	}
	for name, v := range files {
		t.Run(name+" matches the code", func(t *testing.T) {
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false) // subjects keep their literal '>'
			enc.SetIndent("", "  ")
			require.NoError(t, enc.Encode(v))
			want := buf.Bytes()
			path := filepath.Join("..", "..", "deploy", "nats", name)
			if *update {
				require.NoError(t, os.WriteFile(path, want, 0o644))
			}
			got, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.JSONEq(t, string(want), string(got))
		})
	}
}
