package config

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kelseyhightower/envconfig"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	tokenA     = "pina_tokenAAAAsecret"
	tokenB     = "pina_tokenBBBBsecret"
	appIDA     = "1484362"
	appSecretA = "appsecretAAAAvalue"
	refreshA   = "pinr_refreshAAAAvalue"
)

// secretsKey is CONNECTOR_SECRETS_KEY for the tests: bytes 100..131 in
// standard base64.
var (
	secretsKeyBytes = func() []byte {
		b := make([]byte, 32)
		for i := range b {
			b[i] = byte(100 + i)
		}
		return b
	}()
	secretsKey = base64.StdEncoding.EncodeToString(secretsKeyBytes)
)

// oauthEnv is minimalEnv with OAuth for brand_a (besides its token) and
// the secrets key.
func oauthEnv() map[string]string {
	env := minimalEnv()
	env["CONNECTOR_ACCOUNT_BRAND_A_APP_ID"] = appIDA
	env["CONNECTOR_ACCOUNT_BRAND_A_APP_SECRET"] = appSecretA
	env["CONNECTOR_ACCOUNT_BRAND_A_REFRESH_TOKEN"] = refreshA
	env["CONNECTOR_SECRETS_KEY"] = secretsKey
	return env
}

// secretValues are the values of the test secrets, none of which may be
// printed anywhere.
var secretValues = []string{tokenA, tokenB, appSecretA, refreshA, secretsKey}

// minimalEnv is the smallest valid configuration: two accounts.
func minimalEnv() map[string]string {
	return map[string]string{
		"CONNECTOR_DEFAULT_TAG_ID":                "2612345678901",
		"CONNECTOR_ACCOUNTS":                      "brand_a,brand_b",
		"CONNECTOR_ACCOUNT_BRAND_A_AD_ACCOUNT_ID": "549755885175",
		"CONNECTOR_ACCOUNT_BRAND_A_TOKEN":         tokenA,
		"CONNECTOR_ACCOUNT_BRAND_A_TAG_IDS":       "2612345678901,2612345678902",
		"CONNECTOR_ACCOUNT_BRAND_B_AD_ACCOUNT_ID": "549755885176",
		"CONNECTOR_ACCOUNT_BRAND_B_TOKEN":         tokenB,
		"CONNECTOR_ACCOUNT_BRAND_B_TAG_IDS":       "2619999999999",
	}
}

// setEnv replaces every CONNECTOR_* variable of the process with env, for
// the duration of the test.
func setEnv(t *testing.T, env map[string]string) {
	t.Helper()
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if hasPrefixFold(k, Prefix) {
			t.Setenv(k, "") // restores the old value after the test
			require.NoError(t, os.Unsetenv(k))
		}
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
}

func TestLoadMinimalConfigurationUsesDefaults(t *testing.T) {
	setEnv(t, minimalEnv())

	got, err := Load()
	require.NoError(t, err)

	want := Default()
	want.DefaultTagID = "2612345678901"
	want.Accounts = []string{"brand_a", "brand_b"}
	want.AccountList = []Account{
		{Name: "brand_a", AdAccountID: "549755885175", Token: tokenA, TagIDs: []string{"2612345678901", "2612345678902"}},
		{Name: "brand_b", AdAccountID: "549755885176", Token: tokenB, TagIDs: []string{"2619999999999"}},
	}
	assert.Equal(t, want, got)
	assert.Equal(t, map[string]string{
		"2612345678901": "549755885175",
		"2612345678902": "549755885175",
		"2619999999999": "549755885176",
	}, got.TagAccounts())
	assert.Equal(t, map[string]Secret{"549755885175": tokenA, "549755885176": tokenB}, got.Tokens())

	// Spot checks that the tags say what the contract says.
	assert.Equal(t, 60*time.Second, got.AckWait)
	assert.Equal(t, []string{"cohorts.membership.>"}, got.Subjects)
	assert.Equal(t, "https://api.pinterest.com/v5", got.PinterestBaseURL)
	assert.Equal(t, 100*time.Millisecond, got.BatchPeriod)
	assert.Equal(t, 15*time.Minute, got.RetryDelayMax)
	assert.Equal(t, "COHORT_CONNECTOR_STATE", got.StateBucket)
	assert.Equal(t, time.Hour, got.AudiencePollInterval)
	assert.False(t, got.AccountList[0].HasOAuth())
	key, err := got.SecretsKey()
	require.NoError(t, err)
	assert.Nil(t, key, "no key when CONNECTOR_SECRETS_KEY is unset")
}

func TestDefaultIsDerivedFromTheTags(t *testing.T) {
	typ := reflect.TypeFor[Config]()
	var tagged int
	for i := range typ.NumField() {
		f := typ.Field(i)
		if f.Name == "AccountList" {
			assert.Equal(t, "true", f.Tag.Get("ignored"))
			continue
		}
		tagged++
		assert.NotEmpty(t, f.Tag.Get("envconfig"), "field %s has no envconfig tag", f.Name)
		assert.NotEmpty(t, f.Tag.Get("desc"), "field %s has no desc tag", f.Name)
	}
	assert.Len(t, staticVars, tagged)

	var c Config
	v := reflect.ValueOf(&c).Elem()
	for _, sv := range staticVars {
		assert.NoError(t, decode(v.Field(sv.index), sv.def), sv.name)
	}
	assert.Equal(t, Default(), c)

	// Default is valid except for what has no default.
	err := Default().Validate()
	require.Error(t, err)
	assert.ElementsMatch(t, []string{
		"CONNECTOR_ACCOUNTS: required: at least one account name, comma separated",
		"CONNECTOR_DEFAULT_TAG_ID: required: the Tag ID used by activations that name none",
	}, strings.Split(err.Error(), "\n"))
}

func TestLoadAgreesWithEnvconfig(t *testing.T) {
	t.Run("when every variable is set", func(t *testing.T) {
		env := minimalEnv()
		for k, v := range map[string]string{
			"NATS_URL": "nats://n1:4222,nats://n2:4222", "EMBEDDED_NATS_LISTEN": "127.0.0.1:0",
			"DATA_DIR": "/var/lib/c", "STREAM": "S", "SUBJECTS": "a.>,b.*", "DURABLE": "d",
			"ACTIVATIONS_BUCKET": "B", "ORDER_BUCKET": "O", "DLQ_STREAM": "S_DLQ", "DLQ_SUBJECT": "dlq.x", "PARKING_STREAM": "S_PARKED", "PARKING_SUBJECT": "parked.x",
			"ACK_WAIT": "2m", "MAX_DELIVER": "7", "MAX_ACK_PENDING": "500",
			"PINTEREST_BASE_URL": "https://example.com/v5", "BATCH_SIZE": "500",
			"BATCH_PERIOD": "1s", "MAX_INFLIGHT": "4", "PINTEREST_CALLS_PER_MINUTE": "3000", "HTTP_TIMEOUT": "5s", "HTTP_RETRY_MAX": "0",
			"HTTP_RETRY_WAIT_MIN": "1s", "HTTP_RETRY_WAIT_MAX": "2s", "HTTP_CALL_TIMEOUT": "20s",
			"RETRY_DELAY_MIN": "1s", "RETRY_DELAY_MAX": "1h", "AUTH_RETRY_DELAY": "10m",
			"LOG_LEVEL": "debug", "LOG_FORMAT": "console", "LISTEN_ADDR": ":9000",
			"SHUTDOWN_TIMEOUT": "1m", "ADMIN_TOKEN": "admin-token-0123456789", "STATE_BUCKET": "ST", "AUDIENCE_POLL_INTERVAL": "90s", "SECRETS_KEY": secretsKey,
		} {
			env[Prefix+k] = v
		}
		// NATS authentication: user/password and TLS here; token, creds
		// and nkey exclude user/password and are compared in
		// TestNATSClientVariablesLoadAsEnvconfigReadsThem.
		ca, cert, key := writeTLSFiles(t)
		for k, v := range map[string]string{
			"NATS_USER": "connector", "NATS_PASSWORD": "hunter2",
			"NATS_TLS_CA_FILE": ca, "NATS_TLS_CERT_FILE": cert, "NATS_TLS_KEY_FILE": key,
		} {
			env[Prefix+k] = v
		}
		require.Len(t, env, len(staticVars)+6-3, "every static variable is set but three exclusive NATS ones")
		setEnv(t, env)

		got, err := Load()
		require.NoError(t, err)
		var want Config
		require.NoError(t, envconfig.Process("CONNECTOR", &want))
		got.AccountList = nil
		assert.Equal(t, want, got)
	})

	t.Run("when only the required variables are set", func(t *testing.T) {
		// envconfig falls back to the unprefixed names; make sure there
		// are none, so that it reads defaults.
		for _, sv := range staticVars {
			k := strings.TrimPrefix(sv.name, Prefix)
			t.Setenv(k, "")
			require.NoError(t, os.Unsetenv(k))
		}
		setEnv(t, minimalEnv())

		var want Config
		require.NoError(t, envconfig.Process("CONNECTOR", &want))
		got, err := Load()
		require.NoError(t, err)
		got.AccountList = nil
		assert.Equal(t, want, got)
	})
}

func TestLoadIgnoresUnprefixedVariables(t *testing.T) {
	setEnv(t, minimalEnv())
	t.Setenv("LOG_LEVEL", "trace") // envconfig.Process would take this
	got, err := Load()
	require.NoError(t, err)
	assert.Equal(t, "info", got.LogLevel)
}

func TestLoadRejectsBadConfiguration(t *testing.T) {
	tests := []struct {
		name   string
		change map[string]string // "" deletes the variable
		want   []string          // all must appear in one problem line
		absent []string          // none may appear anywhere
	}{
		{
			name:   "a missing default Tag ID is reported as required",
			change: map[string]string{"CONNECTOR_DEFAULT_TAG_ID": ""},
			want:   []string{"CONNECTOR_DEFAULT_TAG_ID: required: the Tag ID used by activations that name none"},
		},
		{
			name:   "a default Tag ID owned by no account is rejected",
			change: map[string]string{"CONNECTOR_DEFAULT_TAG_ID": "111"},
			want:   []string{"CONNECTOR_DEFAULT_TAG_ID: Tag ID 111 is not listed"},
		},
		{
			name:   "a default Tag ID that is not digits is rejected",
			change: map[string]string{"CONNECTOR_DEFAULT_TAG_ID": "tag-1"},
			want:   []string{"CONNECTOR_DEFAULT_TAG_ID: must be digits only"},
		},
		{
			name:   "a Tag ID listed under two accounts names both variables",
			change: map[string]string{"CONNECTOR_ACCOUNT_BRAND_B_TAG_IDS": "2619999999999,2612345678902"},
			want:   []string{"CONNECTOR_ACCOUNT_BRAND_B_TAG_IDS: Tag ID 2612345678902 is also listed in CONNECTOR_ACCOUNT_BRAND_A_TAG_IDS"},
		},
		{
			name:   "an ad account id used by two accounts names both variables",
			change: map[string]string{"CONNECTOR_ACCOUNT_BRAND_B_AD_ACCOUNT_ID": "549755885175"},
			want:   []string{"CONNECTOR_ACCOUNT_BRAND_B_AD_ACCOUNT_ID: ad account 549755885175 is also used by CONNECTOR_ACCOUNT_BRAND_A_AD_ACCOUNT_ID"},
		},
		{
			name:   "a plain http base URL on a public host is rejected",
			change: map[string]string{"CONNECTOR_PINTEREST_BASE_URL": "http://api.pinterest.com/v5"},
			want:   []string{"CONNECTOR_PINTEREST_BASE_URL: plain http is accepted only on a loopback host"},
		},
		{
			name:   "a base URL without a scheme is rejected",
			change: map[string]string{"CONNECTOR_PINTEREST_BASE_URL": "api.pinterest.com/v5"},
			want:   []string{"CONNECTOR_PINTEREST_BASE_URL: must be an absolute URL"},
		},
		{
			name:   "a batch size of 0 is rejected",
			change: map[string]string{"CONNECTOR_BATCH_SIZE": "0"},
			want:   []string{"CONNECTOR_BATCH_SIZE: must be between 1 and 1000, got 0"},
		},
		{
			name:   "a batch size of 1001 is rejected",
			change: map[string]string{"CONNECTOR_BATCH_SIZE": "1001"},
			want:   []string{"CONNECTOR_BATCH_SIZE: must be between 1 and 1000, got 1001"},
		},
		{
			name:   "a batch size that is not a number is rejected",
			change: map[string]string{"CONNECTOR_BATCH_SIZE": "abc"},
			want:   []string{`CONNECTOR_BATCH_SIZE: not an integer: "abc"`},
		},
		{
			name:   "a duration without a unit is rejected",
			change: map[string]string{"CONNECTOR_ACK_WAIT": "60"},
			want:   []string{`CONNECTOR_ACK_WAIT: not a duration`},
		},
		{
			name:   "the log format xml is rejected",
			change: map[string]string{"CONNECTOR_LOG_FORMAT": "xml"},
			want:   []string{`CONNECTOR_LOG_FORMAT: must be json or console, got "xml"`},
		},
		{
			name:   "the log level fatal is rejected",
			change: map[string]string{"CONNECTOR_LOG_LEVEL": "fatal"},
			want:   []string{`CONNECTOR_LOG_LEVEL: must be one of`},
		},
		{
			name:   "an unknown variable close to a known one gets a suggestion",
			change: map[string]string{"CONNECTOR_BATCH_SIZ": "10"},
			want:   []string{"CONNECTOR_BATCH_SIZ: unknown variable (typo?), did you mean CONNECTOR_BATCH_SIZE?"},
		},
		{
			name:   "an unknown variable in lower case is caught too",
			change: map[string]string{"connector_batch_size": "10"},
			want:   []string{"connector_batch_size: unknown variable", "did you mean CONNECTOR_BATCH_SIZE?"},
		},
		{
			name:   "an unknown variable far from every known one gets no suggestion",
			change: map[string]string{"CONNECTOR_COLOUR": "blue"},
			want:   []string{"CONNECTOR_COLOUR: unknown variable (typo?)"},
		},
		{
			name:   "a variable of an account that is not listed is unknown",
			change: map[string]string{"CONNECTOR_ACCOUNT_BRAND_C_TOKEN": "x"},
			want:   []string{`CONNECTOR_ACCOUNT_BRAND_C_TOKEN: unknown variable (account "brand_c" is not listed in CONNECTOR_ACCOUNTS)`},
		},
		{
			name:   "a misspelt per-account variable gets a suggestion",
			change: map[string]string{"CONNECTOR_ACCOUNT_BRAND_A_TAG_ID": "1"},
			want:   []string{"CONNECTOR_ACCOUNT_BRAND_A_TAG_ID: unknown variable", "did you mean CONNECTOR_ACCOUNT_BRAND_A_TAG_IDS?"},
		},
		{
			name:   "a missing account token is reported as required",
			change: map[string]string{"CONNECTOR_ACCOUNT_BRAND_B_TOKEN": ""},
			want:   []string{"CONNECTOR_ACCOUNT_BRAND_B_TOKEN: required"},
		},
		{
			name:   "an account with neither a token nor OAuth is told both options",
			change: map[string]string{"CONNECTOR_ACCOUNT_BRAND_B_TOKEN": ""},
			want: []string{"CONNECTOR_ACCOUNT_BRAND_B_TOKEN: required: the Pinterest API token of account brand_b, unless the account has OAuth",
				"CONNECTOR_ACCOUNT_BRAND_B_APP_ID, CONNECTOR_ACCOUNT_BRAND_B_APP_SECRET and CONNECTOR_ACCOUNT_BRAND_B_REFRESH_TOKEN"},
		},
		{
			name:   "an app id without the app secret is rejected naming the missing variable",
			change: map[string]string{"CONNECTOR_ACCOUNT_BRAND_B_APP_ID": appIDA, "CONNECTOR_ACCOUNT_BRAND_B_REFRESH_TOKEN": refreshA, "CONNECTOR_SECRETS_KEY": secretsKey},
			want:   []string{"CONNECTOR_ACCOUNT_BRAND_B_APP_SECRET: required when CONNECTOR_ACCOUNT_BRAND_B_APP_ID is set: OAuth needs the app secret of account brand_b"},
		},
		{
			name:   "a refresh token alone is rejected naming the app id",
			change: map[string]string{"CONNECTOR_ACCOUNT_BRAND_B_REFRESH_TOKEN": refreshA, "CONNECTOR_SECRETS_KEY": secretsKey},
			want:   []string{"CONNECTOR_ACCOUNT_BRAND_B_APP_ID: required when CONNECTOR_ACCOUNT_BRAND_B_REFRESH_TOKEN is set"},
		},
		{
			name:   "an app id and secret without a refresh token are rejected naming it",
			change: map[string]string{"CONNECTOR_ACCOUNT_BRAND_B_APP_ID": appIDA, "CONNECTOR_ACCOUNT_BRAND_B_APP_SECRET": appSecretA, "CONNECTOR_SECRETS_KEY": secretsKey},
			want:   []string{"CONNECTOR_ACCOUNT_BRAND_B_REFRESH_TOKEN: required when CONNECTOR_ACCOUNT_BRAND_B_APP_ID is set: OAuth needs the first refresh token"},
		},
		{
			name:   "partial OAuth without a token does not also ask for the token",
			change: map[string]string{"CONNECTOR_ACCOUNT_BRAND_B_TOKEN": "", "CONNECTOR_ACCOUNT_BRAND_B_APP_SECRET": appSecretA, "CONNECTOR_SECRETS_KEY": secretsKey},
			want:   []string{"CONNECTOR_ACCOUNT_BRAND_B_APP_ID: required when CONNECTOR_ACCOUNT_BRAND_B_APP_SECRET is set"},
			absent: []string{"CONNECTOR_ACCOUNT_BRAND_B_TOKEN:"},
		},
		{
			name: "an app id with letters is rejected",
			change: map[string]string{"CONNECTOR_ACCOUNT_BRAND_B_APP_ID": "app-1", "CONNECTOR_ACCOUNT_BRAND_B_APP_SECRET": appSecretA,
				"CONNECTOR_ACCOUNT_BRAND_B_REFRESH_TOKEN": refreshA, "CONNECTOR_SECRETS_KEY": secretsKey},
			want: []string{`CONNECTOR_ACCOUNT_BRAND_B_APP_ID: must be digits only, got "app-1"`},
		},
		{
			name: "an app secret with a newline inside is rejected without printing it",
			change: map[string]string{"CONNECTOR_ACCOUNT_BRAND_B_APP_ID": appIDA, "CONNECTOR_ACCOUNT_BRAND_B_APP_SECRET": appSecretA[:9] + "\n" + appSecretA[9:],
				"CONNECTOR_ACCOUNT_BRAND_B_REFRESH_TOKEN": refreshA, "CONNECTOR_SECRETS_KEY": secretsKey},
			want: []string{"CONNECTOR_ACCOUNT_BRAND_B_APP_SECRET: must be printable ASCII without white space", "U+000A", "(value not shown)"},
		},
		{
			name: "a refresh token with a space inside is rejected without printing it",
			change: map[string]string{"CONNECTOR_ACCOUNT_BRAND_B_APP_ID": appIDA, "CONNECTOR_ACCOUNT_BRAND_B_APP_SECRET": appSecretA,
				"CONNECTOR_ACCOUNT_BRAND_B_REFRESH_TOKEN": "Bearer " + refreshA, "CONNECTOR_SECRETS_KEY": secretsKey},
			want: []string{"CONNECTOR_ACCOUNT_BRAND_B_REFRESH_TOKEN: must be printable ASCII without white space", "U+0020"},
		},
		{
			name: "OAuth without the secrets key is rejected, saying how to make one",
			change: map[string]string{"CONNECTOR_ACCOUNT_BRAND_B_APP_ID": appIDA, "CONNECTOR_ACCOUNT_BRAND_B_APP_SECRET": appSecretA,
				"CONNECTOR_ACCOUNT_BRAND_B_REFRESH_TOKEN": refreshA},
			want: []string{"CONNECTOR_SECRETS_KEY: required when an account has OAuth (brand_b)", "CONNECTOR_STATE_BUCKET",
				"openssl rand -base64 32", "head -c32 /dev/urandom | base64"},
		},
		{
			name:   "a secrets key of 16 bytes is rejected with its length, not its value",
			change: map[string]string{"CONNECTOR_SECRETS_KEY": base64.StdEncoding.EncodeToString(secretsKeyBytes[:16])},
			want:   []string{"CONNECTOR_SECRETS_KEY: must be 32 random bytes in base64, decodes to 16 bytes (value not shown)", "openssl rand -base64 32"},
		},
		{
			name:   "a secrets key of 33 bytes is rejected",
			change: map[string]string{"CONNECTOR_SECRETS_KEY": base64.StdEncoding.EncodeToString(append(secretsKeyBytes, 1))},
			want:   []string{"CONNECTOR_SECRETS_KEY: must be 32 random bytes in base64, decodes to 33 bytes"},
		},
		{
			name:   "a secrets key that is not base64 is rejected without printing it",
			change: map[string]string{"CONNECTOR_SECRETS_KEY": "not*base64*" + secretsKey},
			want:   []string{"CONNECTOR_SECRETS_KEY: not valid base64 (value not shown)", "openssl rand -base64 32"},
		},
		{
			name:   "an audience poll interval below 1s is rejected",
			change: map[string]string{"CONNECTOR_AUDIENCE_POLL_INTERVAL": "500ms"},
			want:   []string{"CONNECTOR_AUDIENCE_POLL_INTERVAL: must be at least 1s, got 500ms"},
		},
		{
			name:   "a negative audience poll interval is rejected",
			change: map[string]string{"CONNECTOR_AUDIENCE_POLL_INTERVAL": "-1h"},
			want:   []string{"CONNECTOR_AUDIENCE_POLL_INTERVAL: must be at least 1s, got -1h0m0s"},
		},
		{
			name:   "an audience poll interval without a unit is rejected",
			change: map[string]string{"CONNECTOR_AUDIENCE_POLL_INTERVAL": "3600"},
			want:   []string{`CONNECTOR_AUDIENCE_POLL_INTERVAL: not a duration such as 500ms, 30s or 15m: "3600"`},
		},
		{
			name:   "a state bucket name with a dot is rejected",
			change: map[string]string{"CONNECTOR_STATE_BUCKET": "state.v1"},
			want:   []string{`CONNECTOR_STATE_BUCKET: must match`, `got "state.v1"`},
		},
		{
			name:   "an empty state bucket name is rejected",
			change: map[string]string{"CONNECTOR_STATE_BUCKET": " "},
			want:   []string{`CONNECTOR_STATE_BUCKET: must match`},
		},
		{
			name:   "a state bucket equal to the order bucket is rejected",
			change: map[string]string{"CONNECTOR_STATE_BUCKET": "COHORT_CONNECTOR_ORDER"},
			want:   []string{`CONNECTOR_STATE_BUCKET: must differ from CONNECTOR_ORDER_BUCKET, both are "COHORT_CONNECTOR_ORDER"`},
		},
		{
			name:   "a state bucket equal to the activations bucket is rejected",
			change: map[string]string{"CONNECTOR_STATE_BUCKET": "COHORT_ACTIVATIONS"},
			want:   []string{`CONNECTOR_STATE_BUCKET: must differ from CONNECTOR_ACTIVATIONS_BUCKET`},
		},
		{
			name:   "input subjects overlapping the state bucket are rejected",
			change: map[string]string{"CONNECTOR_SUBJECTS": "$KV.COHORT_CONNECTOR_STATE.*"},
			want:   []string{`CONNECTOR_SUBJECTS: "$KV.COHORT_CONNECTOR_STATE.*" overlaps the subjects of CONNECTOR_STATE_BUCKET`},
		},
		{
			name:   "account names whose variables clash are rejected",
			change: map[string]string{"CONNECTOR_ACCOUNTS": "brand_a,brand_b,brand_a_refresh"},
			want:   []string{`CONNECTOR_ACCOUNTS: accounts "brand_a" and "brand_a_refresh" clash: CONNECTOR_ACCOUNT_BRAND_A_REFRESH_TOKEN would belong to both`},
		},
		{
			name:   "a refresh token of an account that is not listed is unknown under the right account name",
			change: map[string]string{"CONNECTOR_ACCOUNT_BRAND_C_REFRESH_TOKEN": "x"},
			want:   []string{`CONNECTOR_ACCOUNT_BRAND_C_REFRESH_TOKEN: unknown variable (account "brand_c" is not listed in CONNECTOR_ACCOUNTS)`},
		},
		{
			name:   "a misspelt app secret variable gets a suggestion",
			change: map[string]string{"CONNECTOR_ACCOUNT_BRAND_A_APP_SECRT": "x"},
			want:   []string{"CONNECTOR_ACCOUNT_BRAND_A_APP_SECRT: unknown variable", "did you mean CONNECTOR_ACCOUNT_BRAND_A_APP_SECRET?"},
		},
		{
			name:   "a misspelt secrets key variable gets a suggestion",
			change: map[string]string{"CONNECTOR_SECRET_KEY": "x"},
			want:   []string{"CONNECTOR_SECRET_KEY: unknown variable (typo?), did you mean CONNECTOR_SECRETS_KEY?"},
		},
		{
			name:   "an account token with a newline inside is rejected without printing it",
			change: map[string]string{"CONNECTOR_ACCOUNT_BRAND_A_TOKEN": tokenA[:10] + "\n" + tokenA[10:]},
			want:   []string{"CONNECTOR_ACCOUNT_BRAND_A_TOKEN: must be printable ASCII without white space", "U+000A"},
		},
		{
			name:   "an account token with a tab inside is rejected without printing it",
			change: map[string]string{"CONNECTOR_ACCOUNT_BRAND_B_TOKEN": tokenB[:6] + "\t" + tokenB[6:]},
			want:   []string{"CONNECTOR_ACCOUNT_BRAND_B_TOKEN: must be printable ASCII without white space", "U+0009"},
		},
		{
			name:   "an account token with an escape character is rejected without printing it",
			change: map[string]string{"CONNECTOR_ACCOUNT_BRAND_A_TOKEN": tokenA + "\x1b[0m"},
			want:   []string{"CONNECTOR_ACCOUNT_BRAND_A_TOKEN: must be printable ASCII without white space", "U+001B"},
		},
		{
			name:   "an account token with a space inside is rejected without printing it",
			change: map[string]string{"CONNECTOR_ACCOUNT_BRAND_A_TOKEN": "Bearer " + tokenA},
			want:   []string{"CONNECTOR_ACCOUNT_BRAND_A_TOKEN: must be printable ASCII without white space", "U+0020"},
		},
		{
			name:   "an account token ending in a zero-width space is rejected without printing it",
			change: map[string]string{"CONNECTOR_ACCOUNT_BRAND_A_TOKEN": tokenA + "\u200b"},
			want:   []string{"CONNECTOR_ACCOUNT_BRAND_A_TOKEN: must be printable ASCII without white space", "U+200B"},
		},
		{
			name:   "missing Tag IDs of an account are reported as required",
			change: map[string]string{"CONNECTOR_ACCOUNT_BRAND_B_TAG_IDS": " , "},
			want:   []string{"CONNECTOR_ACCOUNT_BRAND_B_TAG_IDS: required"},
		},
		{
			name:   "an ad account id with letters is rejected",
			change: map[string]string{"CONNECTOR_ACCOUNT_BRAND_A_AD_ACCOUNT_ID": "12ab"},
			want:   []string{`CONNECTOR_ACCOUNT_BRAND_A_AD_ACCOUNT_ID: must be digits only, at most 18, got "12ab"`},
		},
		{
			name:   "an ad account id of 19 digits is rejected",
			change: map[string]string{"CONNECTOR_ACCOUNT_BRAND_A_AD_ACCOUNT_ID": "1234567890123456789"},
			want:   []string{"CONNECTOR_ACCOUNT_BRAND_A_AD_ACCOUNT_ID: must be digits only, at most 18"},
		},
		{
			name:   "an account name with a dash is rejected",
			change: map[string]string{"CONNECTOR_ACCOUNTS": "brand_a,brand_b,brand-c"},
			want:   []string{`CONNECTOR_ACCOUNTS: account name "brand-c"`},
		},
		{
			name:   "an account listed twice is rejected",
			change: map[string]string{"CONNECTOR_ACCOUNTS": "brand_a,brand_b,BRAND_A"},
			want:   []string{`CONNECTOR_ACCOUNTS: account "brand_a" is listed twice`},
		},
		{
			name:   "no accounts at all is reported as required",
			change: map[string]string{"CONNECTOR_ACCOUNTS": ","},
			want:   []string{"CONNECTOR_ACCOUNTS: required"},
		},
		{
			name:   "a call timeout that reaches the ack wait is rejected",
			change: map[string]string{"CONNECTOR_ACK_WAIT": "30s"},
			want:   []string{"CONNECTOR_HTTP_CALL_TIMEOUT: plus CONNECTOR_BATCH_PERIOD must be less than CONNECTOR_ACK_WAIT, got 30s + 100ms >= 30s"},
		},
		{
			name:   "a call timeout just below the ack wait minus the batch period is still too long",
			change: map[string]string{"CONNECTOR_HTTP_CALL_TIMEOUT": "59.9s"},
			want:   []string{"CONNECTOR_HTTP_CALL_TIMEOUT: plus CONNECTOR_BATCH_PERIOD"},
		},
		{
			name:   "an admin token too short to guard the status page is rejected, not shown",
			change: map[string]string{"CONNECTOR_ADMIN_TOKEN": "hunter22"},
			want:   []string{"CONNECTOR_ADMIN_TOKEN: must be at least 16 characters (make one: openssl rand -base64 24), got 8"},
		},
		{
			name:   "a zero duration is rejected",
			change: map[string]string{"CONNECTOR_SHUTDOWN_TIMEOUT": "0s"},
			want:   []string{"CONNECTOR_SHUTDOWN_TIMEOUT: must be greater than 0, got 0s"},
		},
		{
			name:   "a batch period over 10s is rejected",
			change: map[string]string{"CONNECTOR_BATCH_PERIOD": "11s"},
			want:   []string{"CONNECTOR_BATCH_PERIOD: must be at most 10s, got 11s"},
		},
		{
			name:   "a retry wait maximum below the minimum is rejected",
			change: map[string]string{"CONNECTOR_HTTP_RETRY_WAIT_MAX": "100ms"},
			want:   []string{"CONNECTOR_HTTP_RETRY_WAIT_MAX: must be at least CONNECTOR_HTTP_RETRY_WAIT_MIN"},
		},
		{
			name:   "a redelivery maximum below the minimum is rejected",
			change: map[string]string{"CONNECTOR_RETRY_DELAY_MAX": "1s"},
			want:   []string{"CONNECTOR_RETRY_DELAY_MAX: must be at least CONNECTOR_RETRY_DELAY_MIN"},
		},
		{
			name:   "eleven HTTP retries are rejected",
			change: map[string]string{"CONNECTOR_HTTP_RETRY_MAX": "11"},
			want:   []string{"CONNECTOR_HTTP_RETRY_MAX: must be between 0 and 10, got 11"},
		},
		{
			name:   "a single delivery is rejected",
			change: map[string]string{"CONNECTOR_MAX_DELIVER": "1"},
			want:   []string{"CONNECTOR_MAX_DELIVER: must be at least 2, got 1"},
		},
		{
			name:   "fewer pending acks than a batch are rejected",
			change: map[string]string{"CONNECTOR_MAX_ACK_PENDING": "999"},
			want:   []string{"CONNECTOR_MAX_ACK_PENDING: must be at least CONNECTOR_BATCH_SIZE (1000), got 999"},
		},
		{
			name:   "a dead-letter subject matched by the input subjects is rejected",
			change: map[string]string{"CONNECTOR_SUBJECTS": "cohorts.>"},
			want:   []string{`CONNECTOR_DLQ_SUBJECT: "cohorts.dlq" and cohorts.dlq.> must not be matched by CONNECTOR_SUBJECTS entry "cohorts.>"`},
		},
		{
			name:   "dead letters under the DLQ subject matched by a wildcard are rejected",
			change: map[string]string{"CONNECTOR_SUBJECTS": "cohorts.*.x"},
			want:   []string{`CONNECTOR_DLQ_SUBJECT:`, `"cohorts.*.x"`},
		},
		{
			name:   "a wildcard dead-letter subject is rejected",
			change: map[string]string{"CONNECTOR_DLQ_SUBJECT": "dlq.*"},
			want:   []string{`CONNECTOR_DLQ_SUBJECT: subject "dlq.*" must not contain wildcards`},
		},
		{
			name:   "a subject with '>' in the middle is rejected",
			change: map[string]string{"CONNECTOR_SUBJECTS": "a.>.b"},
			want:   []string{`CONNECTOR_SUBJECTS: subject "a.>.b": '>' must be the last token`},
		},
		{
			name:   "a subject with an empty token is rejected",
			change: map[string]string{"CONNECTOR_SUBJECTS": "a..b"},
			want:   []string{`CONNECTOR_SUBJECTS: subject "a..b" has an empty token`},
		},
		{
			name:   "input subjects overlapping the activations bucket are rejected",
			change: map[string]string{"CONNECTOR_SUBJECTS": ">"},
			want:   []string{`CONNECTOR_SUBJECTS: ">" overlaps the subjects of CONNECTOR_ACTIVATIONS_BUCKET`},
		},
		{
			name:   "a dead-letter stream equal to the input stream is rejected",
			change: map[string]string{"CONNECTOR_DLQ_STREAM": "COHORTS"},
			want:   []string{`CONNECTOR_DLQ_STREAM: must differ from CONNECTOR_STREAM`},
		},
		{
			name:   "a stream name with a dot is rejected",
			change: map[string]string{"CONNECTOR_STREAM": "cohorts.v1"},
			want:   []string{`CONNECTOR_STREAM: must not contain white space or any of`},
		},
		{
			name:   "a bucket name with a dot is rejected",
			change: map[string]string{"CONNECTOR_ACTIVATIONS_BUCKET": "a.b"},
			want:   []string{`CONNECTOR_ACTIVATIONS_BUCKET: must match`},
		},
		{
			name:   "an empty durable name is rejected",
			change: map[string]string{"CONNECTOR_DURABLE": " "},
			want:   []string{`CONNECTOR_DURABLE: required`},
		},
		{
			name:   "an http NATS URL is rejected",
			change: map[string]string{"CONNECTOR_NATS_URL": "nats://ok:4222,http://nats:4222"},
			want:   []string{`CONNECTOR_NATS_URL: entry 2: scheme must be nats, tls, ws or wss, got "http"`},
		},
		{
			name:   "a NATS URL with an impossible port is rejected",
			change: map[string]string{"CONNECTOR_NATS_URL": "nats:70000"},
			want:   []string{`CONNECTOR_NATS_URL: entry 1: without a scheme: port must be a number 0..65535, got "70000"`},
		},
		{
			name:   "an embedded server listening on every interface is rejected",
			change: map[string]string{"CONNECTOR_EMBEDDED_NATS_LISTEN": "0.0.0.0:4222"},
			want:   []string{`CONNECTOR_EMBEDDED_NATS_LISTEN: host must be loopback`},
		},
		{
			name:   "an embedded server without a data directory is rejected",
			change: map[string]string{"CONNECTOR_DATA_DIR": ""},
			want:   []string{`CONNECTOR_DATA_DIR: must not be empty`},
		},
		{
			name:   "a listen address without a port is rejected",
			change: map[string]string{"CONNECTOR_LISTEN_ADDR": "localhost"},
			want:   []string{`CONNECTOR_LISTEN_ADDR: must be host:port, got "localhost"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := minimalEnv()
			for k, v := range tt.change {
				env[k] = v
				if v == "" && k != "CONNECTOR_DATA_DIR" {
					delete(env, k)
				}
			}
			setEnv(t, env)

			got, err := Load()
			require.Error(t, err)
			assert.Equal(t, Config{}, got)
			assertProblem(t, err, tt.want...)
			for _, a := range tt.absent {
				assert.NotContains(t, err.Error(), a)
			}
			for _, secret := range secretValues {
				assert.NotContains(t, err.Error(), secret)
			}
			for k, v := range tt.change {
				if !isSecretVar(k) {
					continue
				}
				// No piece of a rejected token is printed either.
				for _, piece := range strings.FieldsFunc(v, func(r rune) bool { return r <= ' ' || r > '~' }) {
					if len(piece) >= 4 {
						assert.NotContains(t, err.Error(), piece)
					}
				}
			}
		})
	}
}

// isSecretVar reports whether k holds a secret.
func isSecretVar(k string) bool {
	for _, suffix := range []string{"_TOKEN", "_APP_SECRET", "_SECRETS_KEY", "_PASSWORD"} {
		if strings.HasSuffix(k, suffix) {
			return true
		}
	}
	return false
}

func TestSecretsKeyOfAConfigBuiltInCodeNamesTheVariableNotTheValue(t *testing.T) {
	c := Config{SecretsKeyBase64: Secret(base64.StdEncoding.EncodeToString(secretsKeyBytes[:31]))}
	key, err := c.SecretsKey()
	assert.Nil(t, key)
	require.EqualError(t, err, "CONNECTOR_SECRETS_KEY: must be 32 random bytes in base64, decodes to 31 bytes (value not shown); "+
		"make one with `openssl rand -base64 32` or `head -c32 /dev/urandom | base64`")
	assert.NotContains(t, err.Error(), c.SecretsKeyBase64.Reveal())
}

func TestValidateRejectsATokenWithSurroundingWhiteSpace(t *testing.T) {
	// Load trims every value, so only a Config built in code can get here.
	for _, tc := range []struct{ name, token, want string }{
		{"a leading space is rejected", " " + tokenA, "U+0020"},
		{"a trailing newline is rejected", tokenA + "\n", "U+000A"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := requireLoads(t, minimalEnv(), nil)
			c.AccountList[0].Token = Secret(tc.token)
			err := c.Validate()
			require.Error(t, err)
			assertProblem(t, err, "CONNECTOR_ACCOUNT_BRAND_A_TOKEN: must be printable ASCII without white space", tc.want)
			assert.NotContains(t, err.Error(), tokenA)
		})
	}
}

// assertProblem asserts that one line of err contains every string of want.
func assertProblem(t *testing.T, err error, want ...string) {
	t.Helper()
	for line := range strings.SplitSeq(err.Error(), "\n") {
		found := true
		for _, w := range want {
			found = found && strings.Contains(line, w)
		}
		if found {
			return
		}
	}
	t.Errorf("no problem contains all of %q in:\n%v", want, err)
}

func TestLoadAcceptsGoodVariations(t *testing.T) {
	tests := []struct {
		name   string
		change map[string]string
		check  func(t *testing.T, c Config)
	}{
		{
			name:   "plain http on 127.0.0.1 is accepted for the simulator",
			change: map[string]string{"CONNECTOR_PINTEREST_BASE_URL": "http://127.0.0.1:8080/v5"},
			check: func(t *testing.T, c Config) {
				assert.Equal(t, "http://127.0.0.1:8080/v5", c.PinterestBaseURL)
			},
		},
		{
			name:   "a trailing slash of the base URL is dropped",
			change: map[string]string{"CONNECTOR_PINTEREST_BASE_URL": "http://localhost:8080/v5/"},
			check: func(t *testing.T, c Config) {
				assert.Equal(t, "http://localhost:8080/v5", c.PinterestBaseURL)
			},
		},
		{
			name:   "plain http on ::1 is accepted",
			change: map[string]string{"CONNECTOR_PINTEREST_BASE_URL": "http://[::1]:8080/v5"},
		},
		{
			name:   "several NATS URLs of every scheme are accepted",
			change: map[string]string{"CONNECTOR_NATS_URL": "nats://a:4222, tls://b, ws://c:80, wss://u:p@d:443, e:4222"},
		},
		{
			name:   "an empty listen address disables the listener",
			change: map[string]string{"CONNECTOR_LISTEN_ADDR": ""},
			check:  func(t *testing.T, c Config) { assert.Empty(t, c.ListenAddr) },
		},
		{
			name: "account names and lists tolerate case, spaces and a trailing comma",
			change: map[string]string{
				"CONNECTOR_ACCOUNTS":                "Brand_A, brand_b,",
				"CONNECTOR_ACCOUNT_BRAND_A_TAG_IDS": " 2612345678901 , 2612345678902 ,",
				"CONNECTOR_ACCOUNT_BRAND_A_TOKEN":   tokenA + "\n",
			},
			check: func(t *testing.T, c Config) {
				assert.Equal(t, "brand_a", c.AccountList[0].Name)
				assert.Equal(t, []string{"2612345678901", "2612345678902"}, c.AccountList[0].TagIDs)
				assert.Equal(t, tokenA, c.AccountList[0].Token.Reveal())
			},
		},
		{
			name:   "input subjects that avoid the dead-letter subject are accepted",
			change: map[string]string{"CONNECTOR_SUBJECTS": "cohorts.membership.>,cohorts.other.*"},
		},
		{
			name:   "an embedded server on a random loopback port is accepted",
			change: map[string]string{"CONNECTOR_EMBEDDED_NATS_LISTEN": "localhost:0"},
		},
		{
			name:   "an account with a token and OAuth is accepted",
			change: oauthEnv(),
			check: func(t *testing.T, c Config) {
				a := c.AccountList[0]
				assert.True(t, a.HasOAuth())
				assert.Equal(t, appIDA, a.AppID)
				assert.Equal(t, appSecretA, a.AppSecret.Reveal())
				assert.Equal(t, refreshA, a.RefreshToken.Reveal())
				assert.Equal(t, tokenA, a.Token.Reveal())
				assert.False(t, c.AccountList[1].HasOAuth())
				key, err := c.SecretsKey()
				require.NoError(t, err)
				assert.Equal(t, secretsKeyBytes, key)
			},
		},
		{
			name: "an account with OAuth and no token is accepted",
			change: map[string]string{
				"CONNECTOR_ACCOUNT_BRAND_B_TOKEN":         "",
				"CONNECTOR_ACCOUNT_BRAND_B_APP_ID":        " " + appIDA + " ",
				"CONNECTOR_ACCOUNT_BRAND_B_APP_SECRET":    appSecretA + "\n",
				"CONNECTOR_ACCOUNT_BRAND_B_REFRESH_TOKEN": refreshA + "\n",
				"CONNECTOR_SECRETS_KEY":                   secretsKey + "\n",
			},
			check: func(t *testing.T, c Config) {
				b := c.AccountList[1]
				assert.True(t, b.HasOAuth())
				assert.Empty(t, b.Token)
				assert.Equal(t, appIDA, b.AppID)
				assert.Equal(t, appSecretA, b.AppSecret.Reveal())
				assert.Equal(t, refreshA, b.RefreshToken.Reveal())
				assert.Empty(t, c.Tokens()["549755885176"])
			},
		},
		{
			name:   "a secrets key in URL-safe base64 without padding is accepted",
			change: map[string]string{"CONNECTOR_SECRETS_KEY": base64.RawURLEncoding.EncodeToString(secretsKeyBytes)},
			check: func(t *testing.T, c Config) {
				key, err := c.SecretsKey()
				require.NoError(t, err)
				assert.Equal(t, secretsKeyBytes, key)
			},
		},
		{
			name:   "a secrets key without OAuth is accepted",
			change: map[string]string{"CONNECTOR_SECRETS_KEY": secretsKey},
		},
		{
			name:   "an audience poll interval of 1s and another state bucket are accepted",
			change: map[string]string{"CONNECTOR_AUDIENCE_POLL_INTERVAL": "1s", "CONNECTOR_STATE_BUCKET": "my-state_1"},
			check: func(t *testing.T, c Config) {
				assert.Equal(t, time.Second, c.AudiencePollInterval)
				assert.Equal(t, "my-state_1", c.StateBucket)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := minimalEnv()
			for k, v := range tt.change {
				if v == "" && k != "CONNECTOR_LISTEN_ADDR" {
					delete(env, k)
					delete(tt.change, k)
				}
			}
			c := requireLoads(t, env, tt.change)
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

// requireLoads sets env with change applied as the process environment and
// requires Load to accept it.
func requireLoads(t *testing.T, env, change map[string]string) Config {
	t.Helper()
	for k, v := range change {
		env[k] = v
	}
	setEnv(t, env)
	c, err := Load()
	require.NoError(t, err)
	return c
}

func TestLoadReportsEveryProblemAtOnce(t *testing.T) {
	env := minimalEnv()
	delete(env, "CONNECTOR_DEFAULT_TAG_ID")
	delete(env, "CONNECTOR_ACCOUNT_BRAND_B_TOKEN")
	env["CONNECTOR_BATCH_SIZE"] = "abc"
	env["CONNECTOR_LOG_FORMAT"] = "xml"
	env["CONNECTOR_BATCH_SIZ"] = "1"
	env["CONNECTOR_ACCOUNT_BRAND_A_AD_ACCOUNT_ID"] = "12ab"
	setEnv(t, env)

	_, err := Load()
	require.Error(t, err)
	var joined interface{ Unwrap() []error }
	require.True(t, errors.As(err, &joined))
	assert.Len(t, joined.Unwrap(), 6, "%v", err)
	for _, v := range []string{
		"CONNECTOR_DEFAULT_TAG_ID:", "CONNECTOR_ACCOUNT_BRAND_B_TOKEN:", "CONNECTOR_BATCH_SIZE:",
		"CONNECTOR_LOG_FORMAT:", "CONNECTOR_BATCH_SIZ:", "CONNECTOR_ACCOUNT_BRAND_A_AD_ACCOUNT_ID:",
	} {
		assertProblem(t, err, v)
	}
}

func TestSecretNeverPrints(t *testing.T) {
	setEnv(t, oauthEnv())
	c, err := Load()
	require.NoError(t, err)
	s := c.AccountList[0].Token

	t.Run("fmt shows the mask for every verb", func(t *testing.T) {
		for _, format := range []string{"%v", "%s", "%+v", "%#v", "%q", "%x", "%X", "%d", "%10s", "%-12v|"} {
			for _, v := range []any{s, c, &c, c.AccountList, c.AccountList[0], c.AccountList[0].AppSecret, c.AccountList[0].RefreshToken, c.SecretsKeyBase64} {
				out := fmt.Sprintf(format, v)
				for _, secret := range secretValues {
					assert.NotContains(t, out, secret, format)
					assert.NotContains(t, out, fmt.Sprintf("%x", secret), format)
				}
			}
		}
		assert.Equal(t, "[REDACTED]", fmt.Sprintf("%v", s))
		assert.Equal(t, `"[REDACTED]"`, fmt.Sprintf("%q", s))
		assert.Equal(t, "[REDACTED]", s.String())
		assert.Equal(t, "[REDACTED]", s.GoString())
		assert.Equal(t, "  [REDACTED]", fmt.Sprintf("%12s", s))
		assert.Contains(t, fmt.Sprintf("%+v", c.AccountList[0]), "Token:[REDACTED]")
	})

	t.Run("an empty secret prints as empty", func(t *testing.T) {
		var empty Secret
		assert.Empty(t, fmt.Sprint(empty))
		b, err := json.Marshal(empty)
		require.NoError(t, err)
		assert.JSONEq(t, `""`, string(b))
	})

	t.Run("JSON and text marshalling show the mask", func(t *testing.T) {
		b, err := json.Marshal(c)
		require.NoError(t, err)
		assert.NotContains(t, string(b), tokenA)
		assert.NotContains(t, string(b), tokenB)
		for _, secret := range secretValues {
			assert.NotContains(t, string(b), secret)
		}
		assert.Contains(t, string(b), `"Token":"[REDACTED]"`)
		assert.Contains(t, string(b), `"AppSecret":"[REDACTED]"`)
		assert.Contains(t, string(b), `"RefreshToken":"[REDACTED]"`)
		assert.Contains(t, string(b), `"SecretsKeyBase64":"[REDACTED]"`)
		txt, err := s.MarshalText()
		require.NoError(t, err)
		assert.Equal(t, "[REDACTED]", string(txt))
	})

	t.Run("the zerolog object shows the mask", func(t *testing.T) {
		var buf bytes.Buffer
		log := zerolog.New(&buf)
		log.Info().Object("config", c).Msg("starting")
		log.Info().Interface("any", c).Stringer("s", s).Interface("i", s).Msg("again")
		out := buf.String()
		for _, secret := range secretValues {
			assert.NotContains(t, out, secret)
		}

		var line struct{ Config map[string]any }
		require.NoError(t, json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &line))
		assert.Equal(t, "[REDACTED]", line.Config["CONNECTOR_ACCOUNT_BRAND_A_TOKEN"])
		assert.Equal(t, "[REDACTED]", line.Config["CONNECTOR_ACCOUNT_BRAND_A_APP_SECRET"])
		assert.Equal(t, "[REDACTED]", line.Config["CONNECTOR_ACCOUNT_BRAND_A_REFRESH_TOKEN"])
		assert.Equal(t, appIDA, line.Config["CONNECTOR_ACCOUNT_BRAND_A_APP_ID"])
		assert.Equal(t, "", line.Config["CONNECTOR_ACCOUNT_BRAND_B_APP_SECRET"], "an unset secret shows as empty")
		assert.Equal(t, "[REDACTED]", line.Config["CONNECTOR_SECRETS_KEY"])
		assert.Equal(t, "COHORT_CONNECTOR_STATE", line.Config["CONNECTOR_STATE_BUCKET"])
		assert.Equal(t, "1h0m0s", line.Config["CONNECTOR_AUDIENCE_POLL_INTERVAL"])
		assert.Equal(t, "549755885175", line.Config["CONNECTOR_ACCOUNT_BRAND_A_AD_ACCOUNT_ID"])
		assert.Equal(t, "2612345678901,2612345678902", line.Config["CONNECTOR_ACCOUNT_BRAND_A_TAG_IDS"])
		assert.Equal(t, "1m0s", line.Config["CONNECTOR_ACK_WAIT"])
		assert.InDelta(t, 1000, line.Config["CONNECTOR_BATCH_SIZE"], 0)
		for _, sv := range staticVars {
			assert.Contains(t, line.Config, sv.name)
		}
	})

	t.Run("Reveal returns the value", func(t *testing.T) {
		assert.Equal(t, tokenA, s.Reveal())
		assert.Equal(t, tokenB, c.Tokens()["549755885176"].Reveal())
	})
}

func TestNATSCredentialsNeverPrint(t *testing.T) {
	env := minimalEnv()
	env["CONNECTOR_NATS_URL"] = "nats://user:hunter2@n1:4222,nats://s3cr3tt0ken@n2:4222,hunter3@n3:4222"
	setEnv(t, env)
	c, err := Load()
	require.NoError(t, err)

	var buf bytes.Buffer
	log := zerolog.New(&buf)
	log.Info().Object("config", c).Send()
	for _, secret := range []string{"hunter2", "s3cr3tt0ken", "hunter3"} {
		assert.NotContains(t, buf.String(), secret)
	}
	assert.Contains(t, buf.String(), "nats://[REDACTED]@n1:4222")

	env["CONNECTOR_NATS_URL"] = "http://user:hunter2@n1:4222,nats://user:hunter2@n1:x"
	setEnv(t, env)
	_, err = Load()
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "hunter2")
}

func TestUsageListsEveryVariable(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, Usage(&buf))
	out := buf.String()
	for _, sv := range staticVars {
		var line string
		for l := range strings.SplitSeq(out, "\n") {
			if strings.HasPrefix(l, sv.name+" ") {
				line = l
			}
		}
		require.NotEmpty(t, line, "no line for %s in:\n%s", sv.name, out)
		if sv.def != "" {
			assert.Contains(t, line, " "+sv.def+" ", sv.name)
		}
		assert.Contains(t, line, sv.desc)
	}
	for _, v := range []string{"CONNECTOR_ACCOUNT_<NAME>_AD_ACCOUNT_ID", "CONNECTOR_ACCOUNT_<NAME>_TOKEN", "CONNECTOR_ACCOUNT_<NAME>_TAG_IDS",
		"CONNECTOR_ACCOUNT_<NAME>_APP_ID", "CONNECTOR_ACCOUNT_<NAME>_APP_SECRET", "CONNECTOR_ACCOUNT_<NAME>_REFRESH_TOKEN"} {
		assert.Regexp(t, "(?m)^"+regexp.QuoteMeta(v)+" ", out)
	}
	assert.Regexp(t, `(?m)^CONNECTOR_STATE_BUCKET +COHORT_CONNECTOR_STATE +no `, out)
	assert.Regexp(t, `(?m)^CONNECTOR_AUDIENCE_POLL_INTERVAL +1h +no `, out)
	assert.Regexp(t, `(?m)^CONNECTOR_SECRETS_KEY +\(empty\) +no .*openssl rand -base64 32`, out)
	assert.Regexp(t, `(?m)^CONNECTOR_DEFAULT_TAG_ID +- +yes `, out)
	assert.Regexp(t, `(?m)^CONNECTOR_NATS_URL +\(empty\) +no `, out)

	assert.Error(t, Usage(failingWriter{}))
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("closed") }

func TestSubjectsIntersect(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"a.b", "a.b", true},
		{"a.b", "a.c", false},
		{"a.*", "a.b", true},
		{"a.>", "a.b.c", true},
		{"a.>", "a", false},
		{"a.*", "a.b.c", false},
		{"*.b", "a.*", true},
		{">", "x", true},
		{"a.*.c", "a.b.>", true},
		{"a.*.c", "a.b", false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s and %s intersect: %v", tt.a, tt.b, tt.want), func(t *testing.T) {
			a, b := strings.Split(tt.a, "."), strings.Split(tt.b, ".")
			assert.Equal(t, tt.want, subjectsIntersect(a, b))
			assert.Equal(t, tt.want, subjectsIntersect(b, a))
		})
	}
}
