package connector

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRepeatsLogsAnEpisodesFirstFailureEachNewCauseAndOneEndLine(t *testing.T) {
	r := repeats{what: "dead-letter publishes"}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var logged []bool
	for i, kind := range []string{"full", "full", "full", "gone", "gone"} {
		logged = append(logged, r.failed(kind, kind+" error", t0.Add(time.Duration(i)*time.Second)))
	}
	assert.Equal(t, []bool{true, false, false, true, false}, logged)

	var buf bytes.Buffer
	log := zerolog.New(&buf)
	r.succeeded(log, func() time.Time { return t0.Add(90 * time.Second) })
	r.succeeded(log, func() time.Time { t.Fatal("no episode: the clock is not read"); return time.Time{} })
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 1, "one end line")
	var end map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &end))
	assert.Equal(t, "dead-letter publishes work again", end["message"])
	assert.Equal(t, 5.0, end["failures"])
	assert.Equal(t, "1m30s", end["lasted"])
	assert.Equal(t, "gone error", end["last_cause"])

	assert.True(t, r.failed("full", "full error", t0), "a new episode's first failure is logged")
}
