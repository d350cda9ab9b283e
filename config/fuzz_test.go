package config

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// FuzzLoad feeds arbitrary values to a few variables, and an arbitrary extra
// CONNECTOR_ variable, and checks that Load never panics, that an error
// always says something, and that a success passes Validate.
func FuzzLoad(f *testing.F) {
	f.Add("brand_a", "2612345678901", "2612345678901", "549755885175", "1000", "60s", "cohorts.>", "https://api.pinterest.com/v5", "BATCH_SIZ", "x")
	f.Add("brand_a,BRAND_A", "1", "1,1", "12ab", "abc", "-1s", "a..b", "http://[::1]:0/", "ACCOUNT_X_TOKEN", "")
	f.Add(",", "", "", "", "0x10", "9223372036854775807ns", ">", "http://%zz", "", "\n")
	f.Fuzz(func(t *testing.T, accounts, defaultTag, tags, adAccount, batchSize, ackWait, subjects, baseURL, extraName, extraValue string) {
		env := map[string]string{
			"CONNECTOR_ACCOUNTS":                      accounts,
			"CONNECTOR_DEFAULT_TAG_ID":                defaultTag,
			"CONNECTOR_ACCOUNT_BRAND_A_TAG_IDS":       tags,
			"CONNECTOR_ACCOUNT_BRAND_A_AD_ACCOUNT_ID": adAccount,
			"CONNECTOR_ACCOUNT_BRAND_A_TOKEN":         "pina_fuzz_token",
			"CONNECTOR_BATCH_SIZE":                    batchSize,
			"CONNECTOR_ACK_WAIT":                      ackWait,
			"CONNECTOR_SUBJECTS":                      subjects,
			"CONNECTOR_PINTEREST_BASE_URL":            baseURL,
		}
		if extraName != "" && !strings.ContainsAny(extraName, "=\x00") {
			env[Prefix+extraName] = extraValue
		}
		for _, v := range env {
			if strings.ContainsRune(v, 0) {
				t.Skip("the environment cannot hold NUL")
			}
		}
		setEnv(t, env)

		c, err := Load()
		if err != nil {
			require.NotEmpty(t, strings.TrimSpace(err.Error()))
			assert.NotContains(t, err.Error(), "pina_fuzz_token")
			return
		}
		require.NoError(t, c.Validate())
	})
}
