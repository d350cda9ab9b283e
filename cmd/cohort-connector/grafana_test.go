package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// grafanaDashboards are the dashboards of deploy/grafana.
func grafanaDashboards(t *testing.T) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("..", "..", "deploy", "grafana", "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, paths)
	return paths
}

// The dashboard is one Grafana can import: a title and uid, a Prometheus
// datasource input, and panels each with a query (rows aside). That the
// queries name metrics the daemon exports is checked against a running
// daemon (TestMatchRateIsTheAudienceSizeOverTheDistinctUsersSent).
func TestGrafanaDashboardIsImportable(t *testing.T) {
	type target struct {
		Expr string `json:"expr"`
	}
	type panel struct {
		ID      int      `json:"id"`
		Type    string   `json:"type"`
		Title   string   `json:"title"`
		Targets []target `json:"targets"`
	}
	var dash struct {
		Title  string  `json:"title"`
		UID    string  `json:"uid"`
		Panels []panel `json:"panels"`
		Inputs []struct {
			Name, Type, PluginID string
		} `json:"__inputs"`
	}
	for _, path := range grafanaDashboards(t) {
		data, err := os.ReadFile(path)
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(data, &dash), path)
		assert.NotEmpty(t, dash.Title)
		assert.NotEmpty(t, dash.UID)
		require.Len(t, dash.Inputs, 1)
		assert.Equal(t, "datasource", dash.Inputs[0].Type)
		ids := map[int]bool{}
		for _, p := range dash.Panels {
			assert.False(t, ids[p.ID], "panel id %d twice", p.ID)
			ids[p.ID] = true
			if p.Type == "row" {
				continue
			}
			require.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
			for _, tg := range p.Targets {
				assert.Contains(t, tg.Expr, "cohort_connector_", "panel %q", p.Title)
			}
		}
	}
}
