package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// alertsDir holds the Prometheus alerting rules and their unit tests.
var alertsDir = filepath.Join("..", "..", "deploy", "alerts")

// The alerting rules pass promtool's check and their unit tests (.ci/run
// installs promtool from Debian's prometheus package).
func TestAlertRulesPassPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("COHORT_CI") != "" {
			t.Fatal("promtool not installed, and CI must check deploy/alerts: .ci/run installs it (apt-get install prometheus)")
		}
		t.Skip("promtool not installed (Debian: apt-get install prometheus; .ci/run installs it): deploy/alerts not checked")
	}
	rules, err := filepath.Glob(filepath.Join(alertsDir, "*.rules.yml"))
	require.NoError(t, err)
	require.NotEmpty(t, rules)
	out, err := exec.Command(promtool, append([]string{"check", "rules"}, rules...)...).CombinedOutput()
	require.NoError(t, err, "promtool check rules:\n%s", out)
	t.Logf("promtool check rules:\n%s", out)
	tests, err := filepath.Glob(filepath.Join(alertsDir, "*.rules.test.yml"))
	require.NoError(t, err)
	require.Len(t, tests, len(rules), "a unit-test file per rules file")
	out, err = exec.Command(promtool, append([]string{"test", "rules"}, tests...)...).CombinedOutput()
	require.NoError(t, err, "promtool test rules:\n%s", out)
	t.Logf("promtool test rules:\n%s", out)
}

// metricNamesIn returns every cohort_connector_* name the files mention.
func metricNamesIn(t *testing.T, paths ...string) []string {
	t.Helper()
	re := regexp.MustCompile(`cohort_connector_[a-z_]*[a-z]`)
	var names []string
	for _, p := range paths {
		data, err := os.ReadFile(p)
		require.NoError(t, err)
		for _, n := range re.FindAllString(string(data), -1) {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	slices.Sort(names)
	return names
}

// assertExported checks that every name is a metric family of a /metrics
// answer (a histogram's _bucket, _sum and _count count as its family).
func assertExported(t *testing.T, metrics string, names []string) {
	t.Helper()
	families := map[string]bool{}
	for _, line := range strings.Split(metrics, "\n") {
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			families[f[2]] = true
		}
	}
	for _, n := range names {
		base := n
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(n, suffix); ok && families[b] {
				base = b
			}
		}
		assert.True(t, families[base], "%s is named in deploy/ but not exported by the daemon", n)
	}
}
