package connector_test

import (
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/connector"
)

// Every reason label is pre-initialised (dashboards see zeros, not absent
// series), but only in the combinations that can happen: no series of an
// acked dead letter or of a nak'd success.
func TestSettlementSeriesArePreInitialisedOnlyAsTheyCanHappen(t *testing.T) {
	reg := prometheus.NewRegistry()
	connector.NewMetrics(reg, connector.NewStats(), []string{"549755885175"})
	families, err := reg.Gather()
	require.NoError(t, err)
	series := map[string][]string{} // metric → "result/reason" or "reason"
	for _, f := range families {
		for _, m := range f.GetMetric() {
			var result, reason string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "result":
					result = l.GetValue()
				case "reason":
					reason = l.GetValue()
				}
			}
			if result != "" {
				reason = result + "/" + reason
			}
			series[f.GetName()] = append(series[f.GetName()], reason)
		}
	}
	settled := series["cohort_connector_messages_settled_total"]
	for _, want := range []string{"ack/ok", "ack/not_activated", "ack/parked", "nak/server_error", "nak/waiting_for_earlier", "nak/shutdown",
		"term/malformed_json", "term/rejected_by_pinterest", "term/bad_input", "term/max_deliveries"} {
		assert.Contains(t, settled, want)
	}
	for _, never := range []string{"ack/malformed_json", "ack/server_error", "nak/ok", "nak/malformed_json", "nak/bad_input", "term/ok", "term/server_error", "term/parked"} {
		assert.NotContains(t, settled, never)
	}
	dead := series["cohort_connector_dead_letters_total"]
	slices.Sort(dead)
	want := connector.DeadLetterReasons()
	slices.Sort(want)
	assert.Equal(t, want, dead, "a dead-letter series per reason a dead letter can have, no other")
}
