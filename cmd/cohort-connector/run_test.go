package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// clearEnv removes every CONNECTOR_* variable for the duration of the test.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(strings.ToUpper(k), "CONNECTOR_") {
			t.Setenv(k, "")
			require.NoError(t, os.Unsetenv(k))
		}
	}
}

func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), append([]string{"cohort-connector"}, args...), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestHelpListsEveryVariableWithItsDefault(t *testing.T) {
	code, out, _ := runCmd(t, "--help")
	require.Equal(t, 0, code)
	for _, want := range []string{
		"CONNECTOR_NATS_URL", "CONNECTOR_DATA_DIR", "./data", "CONNECTOR_STREAM", "COHORTS",
		"CONNECTOR_SUBJECTS", "cohorts.membership.>", "CONNECTOR_DURABLE", "CONNECTOR_ACTIVATIONS_BUCKET",
		"COHORT_ACTIVATIONS", "CONNECTOR_DEFAULT_TAG_ID", "CONNECTOR_ACCOUNTS",
		"CONNECTOR_ACCOUNT_<NAME>_AD_ACCOUNT_ID", "CONNECTOR_ACCOUNT_<NAME>_TOKEN", "CONNECTOR_ACCOUNT_<NAME>_TAG_IDS",
		"CONNECTOR_ACCOUNT_<NAME>_APP_ID", "CONNECTOR_ACCOUNT_<NAME>_APP_SECRET", "CONNECTOR_ACCOUNT_<NAME>_REFRESH_TOKEN",
		"CONNECTOR_SECRETS_KEY", "CONNECTOR_AUDIENCE_POLL_INTERVAL", "CONNECTOR_STATE_BUCKET", "COHORT_CONNECTOR_STATE",
		"CONNECTOR_PINTEREST_BASE_URL", "https://api.pinterest.com/v5", "CONNECTOR_BATCH_SIZE", "1000",
		"CONNECTOR_BATCH_PERIOD", "100ms", "CONNECTOR_LOG_LEVEL", "CONNECTOR_LOG_FORMAT",
		"CONNECTOR_LISTEN_ADDR", "127.0.0.1:9464", "CONNECTOR_SHUTDOWN_TIMEOUT",
		"demo", "activations",
	} {
		assert.Contains(t, out, want)
	}
}

func TestDaemonRefusesToStartOnBadConfiguration(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{
			name: "without a default Tag ID or accounts it names both variables",
			env:  map[string]string{},
			want: []string{"CONNECTOR_DEFAULT_TAG_ID", "CONNECTOR_ACCOUNTS"},
		},
		{
			name: "when no account owns the default Tag ID it names the variable",
			env: map[string]string{
				"CONNECTOR_DEFAULT_TAG_ID": "999", "CONNECTOR_ACCOUNTS": "a",
				"CONNECTOR_ACCOUNT_A_AD_ACCOUNT_ID": "1", "CONNECTOR_ACCOUNT_A_TOKEN": "tok-secret-1", "CONNECTOR_ACCOUNT_A_TAG_IDS": "5",
			},
			want: []string{"CONNECTOR_DEFAULT_TAG_ID"},
		},
		{
			name: "with a misspelt variable it names the typo and the right name",
			env: map[string]string{
				"CONNECTOR_DEFAULT_TAG_ID": "5", "CONNECTOR_ACCOUNTS": "a",
				"CONNECTOR_ACCOUNT_A_AD_ACCOUNT_ID": "1", "CONNECTOR_ACCOUNT_A_TOKEN": "tok-secret-1", "CONNECTOR_ACCOUNT_A_TAG_IDS": "5",
				"CONNECTOR_BATCH_SIZ": "10",
			},
			want: []string{"CONNECTOR_BATCH_SIZ", "CONNECTOR_BATCH_SIZE"},
		},
		{
			name: "with plain http to a remote Pinterest it names the base URL",
			env: map[string]string{
				"CONNECTOR_DEFAULT_TAG_ID": "5", "CONNECTOR_ACCOUNTS": "a",
				"CONNECTOR_ACCOUNT_A_AD_ACCOUNT_ID": "1", "CONNECTOR_ACCOUNT_A_TOKEN": "tok-secret-1", "CONNECTOR_ACCOUNT_A_TAG_IDS": "5",
				"CONNECTOR_PINTEREST_BASE_URL": "http://api.pinterest.com/v5",
			},
			want: []string{"CONNECTOR_PINTEREST_BASE_URL"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			code, _, errOut := runCmd(t)
			assert.Equal(t, 1, code)
			for _, w := range tc.want {
				assert.Contains(t, errOut, w)
			}
			assert.NotContains(t, errOut, "tok-secret-1", "a token must never be printed")
		})
	}
}

func TestActivationsCLIRefusesBadInputBeforeWriting(t *testing.T) {
	clearEnv(t)
	for k, v := range map[string]string{
		"CONNECTOR_DEFAULT_TAG_ID": "5", "CONNECTOR_ACCOUNTS": "a",
		"CONNECTOR_ACCOUNT_A_AD_ACCOUNT_ID": "1", "CONNECTOR_ACCOUNT_A_TOKEN": "tok", "CONNECTOR_ACCOUNT_A_TAG_IDS": "5",
		// Nothing listens here: a write that got past validation would fail
		// with a connection error instead of the validation error.
		"CONNECTOR_NATS_URL": "nats://127.0.0.1:1",
	} {
		t.Setenv(k, v)
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"an unknown Tag ID is refused", []string{"activations", "put", "-id", "x", "-cohort", "c1", "-tag", "777"}, "tag_id is owned by no configured ad account"},
		{"malformed JSON is refused", []string{"activations", "put", `{"id":"x",`}, "nothing written"},
		{"an unknown field is refused", []string{"activations", "put", `{"id":"x","cohort_id":"c","destination":"pinterest","enabled":true,"tagid":"5","mode":"events"}`}, "tagid"},
		{"a bad key is refused", []string{"activations", "put", "-id", "a b", "-cohort", "c1"}, "id"},
		{"a retention with customer_list is refused", []string{"activations", "put", "-id", "x", "-cohort", "c1", "-mode", "customer_list", "-retention-days", "7"}, `retention_days: only for mode "events"`},
		{"a customer list on an account without OAuth is refused", []string{"activations", "put", "-id", "x", "-cohort", "c1", "-mode", "customer_list"},
			"mode customer_list needs an OAuth app on ad account 1 (account a): set CONNECTOR_ACCOUNT_A_APP_ID, _APP_SECRET and _REFRESH_TOKEN"},
		{"an actalike in another country is refused", []string{"activations", "put", "-id", "x", "-cohort", "c1", "-actalike-country", "DE", "-actalike-percentage", "3"}, `actalike.country "DE"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runCmd(t, tc.args...)
			assert.Equal(t, 1, code)
			assert.Contains(t, errOut, tc.want)
			assert.NotContains(t, errOut, "connecting to NATS")
		})
	}
}
