package pinterest_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/destinations"
)

const (
	appID        = "1234567"
	appSecret    = "s3cr3tAPPsecretVALUE"
	refreshToken = "pinr_REFRESHtokenOLD0123456789"
)

func TestRefreshTokenExchangesTheRefreshTokenForAGrant(t *testing.T) {
	expiresAt := time.Now().Add(60 * 24 * time.Hour).Unix()
	srv := newAPIServer(t, func(w http.ResponseWriter, _ seenRequest) {
		writeJSON(w, http.StatusOK, map[string]any{
			"access_token": "pina_NEWaccessTOKEN", "token_type": "bearer", "expires_in": 2592000,
			"scope": "ads:read,ads:write", "response_type": "refresh_token",
			"refresh_token": "pinr_ROTATEDrefresh", "refresh_token_expires_in": 5184000,
			"refresh_token_expires_at": expiresAt,
		})
	})
	before := time.Now()

	g, err := newClient(t, testConfig(srv.URL)).RefreshToken(context.Background(), appID, appSecret, refreshToken)

	require.NoError(t, err)
	assert.Equal(t, "pina_NEWaccessTOKEN", g.AccessToken)
	assert.Equal(t, "pinr_ROTATEDrefresh", g.RefreshToken)
	assert.Equal(t, "ads:read,ads:write", g.Scope)
	assert.WithinDuration(t, before.Add(30*24*time.Hour), g.AccessExpiresAt, 2*time.Second)
	assert.Equal(t, time.Unix(expiresAt, 0), g.RefreshExpiresAt)
	reqs := srv.requests()
	require.Len(t, reqs, 1)
	r := reqs[0]
	assert.Equal(t, http.MethodPost, r.Method)
	assert.Equal(t, "/v5/oauth/token", r.Path)
	assert.Equal(t, "application/x-www-form-urlencoded", r.ContentType)
	assert.Equal(t, "Basic "+base64.StdEncoding.EncodeToString([]byte(appID+":"+appSecret)), r.Auth)
	form, err := url.ParseQuery(string(r.Body))
	require.NoError(t, err)
	assert.Equal(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}}, form)
}

func TestRefreshTokenKeepsTheRefreshTokenWhenTheAnswerHasNone(t *testing.T) {
	srv := newAPIServer(t, func(w http.ResponseWriter, _ seenRequest) {
		writeJSON(w, http.StatusOK, map[string]any{"access_token": "pina_NEW", "expires_in": 60, "scope": "ads:read", "token_type": "bearer"})
	})
	g, err := newClient(t, testConfig(srv.URL)).RefreshToken(context.Background(), appID, appSecret, refreshToken)
	require.NoError(t, err)
	assert.Equal(t, refreshToken, g.RefreshToken)
	assert.True(t, g.RefreshExpiresAt.IsZero())
}

func TestRefreshTokenFailures(t *testing.T) {
	// Every answer echoes the secrets, as a careless server or proxy might.
	basic := base64.StdEncoding.EncodeToString([]byte(appID + ":" + appSecret))
	echo := fmt.Sprintf(`{"code":1,"message":"invalid_grant %s %s %s"}`, refreshToken, appSecret, basic)
	for _, tc := range []struct {
		name     string
		status   int
		want     destinations.Reason
		requests int
	}{
		{"a 400 (invalid grant) is an auth failure, not retried", 400, destinations.ReasonAuth, 1},
		{"a 401 (wrong app secret) is an auth failure, not retried", 401, destinations.ReasonAuth, 1},
		{"a 500 is retried, then a server error", 500, destinations.ReasonServer, retryMax + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newAPIServer(t, func(w http.ResponseWriter, _ seenRequest) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(echo))
			})

			_, err := newClient(t, testConfig(srv.URL)).RefreshToken(context.Background(), appID, appSecret, refreshToken)

			de := destErr(t, err)
			assert.Equal(t, tc.want, de.Reason, "%v", err)
			assert.Len(t, srv.requests(), tc.requests)
			for _, secret := range []string{appSecret, refreshToken, basic, refreshToken[:8], appSecret[:8]} {
				assert.NotContains(t, err.Error(), secret)
			}
		})
	}
}
