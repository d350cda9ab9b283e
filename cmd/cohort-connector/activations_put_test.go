package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/cohorts"
)

func TestActivationsPutFlags(t *testing.T) {
	base := []string{"-id", "a", "-cohort", "c1"}
	for _, tc := range []struct {
		name    string
		args    []string
		want    cohorts.Activation
		wantErr []string // substrings; none means success
	}{
		{
			name: "without mode flags it writes an enabled events activation with the default retention",
			args: base,
			want: cohorts.Activation{ID: "a", CohortID: "c1", Destination: "pinterest", Enabled: true, Mode: cohorts.ModeEvents},
		},
		{
			name: "-mode customer_list with an actalike writes both",
			args: append(base[:4:4], "-mode", "customer_list", "-actalike-country", "GB", "-actalike-percentage", "10", "-disabled"),
			want: cohorts.Activation{ID: "a", CohortID: "c1", Destination: "pinterest", Mode: cohorts.ModeCustomerList,
				Actalike: &cohorts.Actalike{Country: "GB", Percentage: 10}},
		},
		{
			name: "-retention-days sets the retention of an events activation",
			args: append(base[:4:4], "-mode", "events", "-retention-days", "540", "-tag", "5"),
			want: cohorts.Activation{ID: "a", CohortID: "c1", Destination: "pinterest", Enabled: true, TagID: "5",
				Mode: cohorts.ModeEvents, RetentionDays: 540},
		},
		{
			name:    "-retention-days with customer_list is refused",
			args:    append(base[:4:4], "-mode", "customer_list", "-retention-days", "30"),
			wantErr: []string{`retention_days: only for mode "events"`},
		},
		{
			name:    "-retention-days 600 is refused",
			args:    append(base[:4:4], "-retention-days", "600"),
			wantErr: []string{"retention_days: 600 is out of range 1–540"},
		},
		{
			name:    "an unknown mode is refused",
			args:    append(base[:4:4], "-mode", "lists"),
			wantErr: []string{`mode "lists": not supported`},
		},
		{
			name:    "an actalike percentage without a country is refused",
			args:    append(base[:4:4], "-actalike-percentage", "5"),
			wantErr: []string{"actalike.country: required, one of US, CA, GB"},
		},
		{
			name:    "an actalike country without a percentage is refused",
			args:    append(base[:4:4], "-actalike-country", "US"),
			wantErr: []string{"actalike.percentage: 0 is out of range 1–10"},
		},
		{
			name:    "an actalike in France at 11% reports both problems",
			args:    append(base[:4:4], "-actalike-country", "FR", "-actalike-percentage", "11"),
			wantErr: []string{`actalike.country "FR": must be one of US, CA, GB`, "actalike.percentage: 11 is out of range 1–10"},
		},
		{
			name:    "a retention that is not a number is refused",
			args:    append(base[:4:4], "-retention-days", "long"),
			wantErr: []string{"activations put:", "retention-days"},
		},
		{
			name:    "a stray argument is refused",
			args:    append(base[:4:4], "customer_list"),
			wantErr: []string{`activations put: unexpected argument "customer_list"`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parsePut(tc.args)
			if len(tc.wantErr) > 0 {
				require.Error(t, err)
				for _, w := range tc.wantErr {
					assert.Contains(t, err.Error(), w)
				}
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestActivationsPutReadsTheNewFieldsFromJSONAndFiles(t *testing.T) {
	const js = `{"id":"a","cohort_id":"c1","destination":"pinterest","enabled":true,"mode":"events","retention_days":30,"actalike":{"country":"CA","percentage":2}}`
	want := cohorts.Activation{ID: "a", CohortID: "c1", Destination: "pinterest", Enabled: true, Mode: cohorts.ModeEvents,
		RetentionDays: 30, Actalike: &cohorts.Actalike{Country: "CA", Percentage: 2}}

	got, err := parsePut([]string{js})
	require.NoError(t, err)
	assert.Equal(t, want, got)

	file := filepath.Join(t.TempDir(), "a.json")
	require.NoError(t, os.WriteFile(file, []byte(js), 0o600))
	got, err = parsePut([]string{"-f", file})
	require.NoError(t, err)
	assert.Equal(t, want, got)

	_, err = parsePut([]string{`{"id":"a","cohort_id":"c1","destination":"pinterest","actalike":{"country":"US","percentage":1,"pct":1}}`})
	assert.ErrorContains(t, err, `unknown field "pct"`)
}
