package simulator_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/destinations/pinterest/simulator"
)

const (
	appID          = "1484000"
	appSecret      = "app-secret"
	initialRefresh = "pinr_initial"
)

// tokenAnswer is OauthAccessTokenResponseRefresh.
type tokenAnswer struct {
	AccessToken           string `json:"access_token"`
	TokenType             string `json:"token_type"`
	ExpiresIn             int64  `json:"expires_in"`
	Scope                 string `json:"scope"`
	ResponseType          string `json:"response_type"`
	RefreshToken          string `json:"refresh_token"`
	RefreshTokenExpiresIn int64  `json:"refresh_token_expires_in"`
	RefreshTokenExpiresAt int64  `json:"refresh_token_expires_at"`
}

// postToken posts a url-encoded form to /v5/oauth/token with Basic auth.
func postToken(t testing.TB, s http.Handler, id, secret string, form url.Values) answer {
	req := httptest.NewRequest(http.MethodPost, "/v5/oauth/token", strings.NewReader(form.Encode()))
	req.SetBasicAuth(id, secret)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	return answer{rec.Code, rec.Header(), rec.Body.Bytes()}
}

func refreshWith(rt string) url.Values {
	return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
}

func decodeToken(t *testing.T, a answer) tokenAnswer {
	t.Helper()
	require.Equal(t, http.StatusOK, a.status, string(a.body))
	var ans tokenAnswer
	dec := json.NewDecoder(strings.NewReader(string(a.body)))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&ans))
	return ans
}

// adsSim is a Simulator with the app registered for acct, a clock, and an
// OAuth access token got through the token endpoint.
func adsSim(t *testing.T, opts simulator.Options) (*simulator.Simulator, *clock, string) {
	t.Helper()
	clk := newClock()
	opts.Now = clk.Now
	s := newSim(opts)
	s.AddApp(appID, appSecret, initialRefresh, acct)
	return s, clk, decodeToken(t, postToken(t, s, appID, appSecret, refreshWith(initialRefresh))).AccessToken
}

func TestTokenRefreshRotatesTheRefreshToken(t *testing.T) {
	s, clk, _ := adsSim(t, simulator.Options{AccessTokenTTL: time.Hour})
	assert.Equal(t, 1, s.Refreshes(appID))
	a := postToken(t, s, appID, appSecret, refreshWith(initialRefresh))
	require.Equal(t, 400, a.status, "a used refresh token is refused at once")
	assert.Equal(t, simulator.CodeInvalidParameter, decodeErr(t, a).Code)

	s.AddApp(appID, appSecret, "pinr_second", acct)
	g := decodeToken(t, postToken(t, s, appID, appSecret, refreshWith("pinr_second")))
	assert.True(t, strings.HasPrefix(g.AccessToken, "pina_"), g.AccessToken)
	assert.Equal(t, "bearer", g.TokenType)
	assert.Equal(t, int64(3600), g.ExpiresIn)
	assert.Equal(t, "ads:read,ads:write", g.Scope)
	assert.Equal(t, "refresh_token", g.ResponseType)
	assert.NotEqual(t, "pinr_second", g.RefreshToken)
	assert.Equal(t, int64(60*24*3600), g.RefreshTokenExpiresIn)
	assert.Equal(t, clk.Now().Unix()+g.RefreshTokenExpiresIn, g.RefreshTokenExpiresAt)

	next := decodeToken(t, postToken(t, s, appID, appSecret, refreshWith(g.RefreshToken)))
	assert.NotEqual(t, g.RefreshToken, next.RefreshToken)
	assert.Equal(t, 400, postToken(t, s, appID, appSecret, refreshWith(g.RefreshToken)).status)
	assert.Equal(t, 3, s.Refreshes(appID))

	clk.Advance(60*24*time.Hour + time.Second)
	assert.Equal(t, 400, postToken(t, s, appID, appSecret, refreshWith(next.RefreshToken)).status,
		"an expired refresh token is refused")
	assert.Equal(t, 3, s.Refreshes(appID))
}

func TestTokenEndpointErrors(t *testing.T) {
	s, _, _ := adsSim(t, simulator.Options{})
	s.AddApp(appID, appSecret, "pinr_x", acct)
	for _, tc := range []struct {
		name, id, secret string
		form             url.Values
		status           int
	}{
		{"a wrong secret is 401", appID, "nope", refreshWith("pinr_x"), 401},
		{"an unknown app is 401", "999", appSecret, refreshWith("pinr_x"), 401},
		{"another grant type is 400", appID, appSecret, url.Values{"grant_type": {"client_credentials"}}, 400},
		{"a missing grant type is 400", appID, appSecret, url.Values{"refresh_token": {"pinr_x"}}, 400},
		{"an unknown refresh token is 400", appID, appSecret, refreshWith("pinr_unknown"), 400},
		{"an unknown field is 400", appID, appSecret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"pinr_x"}, "x": {"1"}}, 400},
		{"a wider scope is 400", appID, appSecret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"pinr_x"}, "scope": {"boards:read"}}, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := postToken(t, s, tc.id, tc.secret, tc.form)
			require.Equal(t, tc.status, a.status, string(a.body))
			decodeErr(t, a)
		})
	}
	decodeToken(t, postToken(t, s, appID, appSecret, refreshWith("pinr_x")))
	assert.Equal(t, 2, s.Refreshes(appID), "failed requests are no refreshes and use up no token")
}

func TestAccessTokensAndTheEndpointsThatTakeThem(t *testing.T) {
	s, clk, tok := adsSim(t, simulator.Options{AccessTokenTTL: time.Hour})
	lists := "/v5/ad_accounts/" + acct + "/customer_lists"
	assert.Equal(t, 200, do(t, s, "GET", lists, tok, "", nil).status)
	assert.Equal(t, 401, do(t, s, "GET", lists, token, "", nil).status, "a conversion token is not OAuth")
	decodeOK(t, do(t, s, "POST", "/v5/ad_accounts/"+acct+"/events", tok, "application/json", body(t, events(1))))

	s.SetToken("42", "t42")
	assert.Equal(t, 401, do(t, s, "GET", "/v5/ad_accounts/42/customer_lists", tok, "", nil).status,
		"the app may not act on another ad account")

	clk.Advance(time.Hour)
	assert.Equal(t, 401, do(t, s, "GET", lists, tok, "", nil).status, "an expired access token")
	assert.Equal(t, 401, do(t, s, "POST", "/v5/ad_accounts/"+acct+"/events", tok, "application/json", body(t, events(1))).status)

	s.AddApp(appID, appSecret, "pinr_y", acct)
	tok = decodeToken(t, postToken(t, s, appID, appSecret, refreshWith("pinr_y"))).AccessToken
	assert.Equal(t, 200, do(t, s, "GET", lists, tok, "", nil).status)
	s.ExpireAccessTokens()
	assert.Equal(t, 401, do(t, s, "GET", lists, tok, "", nil).status)

	s.AddApp(appID, appSecret, "pinr_z", acct)
	s.ExpireRefreshTokens()
	assert.Equal(t, 400, postToken(t, s, appID, appSecret, refreshWith("pinr_z")).status)
}

func TestAReadOnlyTokenCannotWrite(t *testing.T) {
	s, _, _ := adsSim(t, simulator.Options{})
	s.AddApp(appID, appSecret, "pinr_r", acct)
	form := refreshWith("pinr_r")
	form.Set("scope", "ads:read")
	g := decodeToken(t, postToken(t, s, appID, appSecret, form))
	assert.Equal(t, "ads:read", g.Scope)
	lists := "/v5/ad_accounts/" + acct + "/customer_lists"
	assert.Equal(t, 200, do(t, s, "GET", lists, g.AccessToken, "", nil).status)
	assert.Equal(t, 401, do(t, s, "POST", lists, g.AccessToken, "application/json", []byte(`{"name":"x","records":""}`)).status)
}

func TestAnOAuthFaultAppliesToTheTokenEndpointOnly(t *testing.T) {
	s, _, _ := adsSim(t, simulator.Options{})
	s.AddApp(appID, appSecret, "pinr_f", acct)
	s.SetFault(simulator.OAuthFaultKey, simulator.Fault{Status: 503, Times: 1})
	assert.Equal(t, 503, postToken(t, s, appID, appSecret, refreshWith("pinr_f")).status)
	decodeOK(t, postEvents(t, s, body(t, events(1))))
	decodeToken(t, postToken(t, s, appID, appSecret, refreshWith("pinr_f")))
}
