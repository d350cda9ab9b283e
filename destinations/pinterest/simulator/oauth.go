package simulator

import (
	"crypto/rand"
	"encoding/hex"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Defaults of Options' token lifetimes.
const (
	DefaultAccessTokenTTL  = 30 * 24 * time.Hour
	DefaultRefreshTokenTTL = 60 * 24 * time.Hour
)

// OAuthFaultKey, as SetFault's key, injects a fault into POST
// /v5/oauth/token (the global fault "" does not apply there).
const OAuthFaultKey = "oauth"

// The OAuth scopes the simulator knows, as a bit set.
const (
	scopeRead = 1 << iota
	scopeWrite
)

const scopeAll = scopeRead | scopeWrite

// app is a registered OAuth app.
type app struct {
	secret    string
	accounts  map[string]bool
	refreshes int
}

// grant is what a token stands for.
type grant struct {
	appID   string
	scope   int
	expires time.Time // the token is expired from this instant on
}

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

// AddApp registers an OAuth app (or updates its secret) whose tokens may act
// on the given ad accounts, which are added if new (with no conversion
// token). refreshToken becomes valid for RefreshTokenTTL with the scopes
// ads:read and ads:write.
func (s *Simulator) AddApp(appID, appSecret, refreshToken string, adAccountIDs ...string) {
	for _, id := range adAccountIDs {
		s.ensureAccount(id)
	}
	s.authMu.Lock()
	defer s.authMu.Unlock()
	ap := s.apps[appID]
	if ap == nil {
		ap = &app{accounts: make(map[string]bool)}
		s.apps[appID] = ap
	}
	ap.secret = appSecret
	for _, id := range adAccountIDs {
		ap.accounts[id] = true
	}
	s.refreshTokens[refreshToken] = &grant{appID: appID, scope: scopeAll, expires: s.now().Add(s.refreshTTL)}
}

// Refreshes is the number of successful refreshes of an app.
func (s *Simulator) Refreshes(appID string) int {
	s.authMu.Lock()
	defer s.authMu.Unlock()
	if ap := s.apps[appID]; ap != nil {
		return ap.refreshes
	}
	return 0
}

// ExpireAccessTokens makes every OAuth access token issued so far expired.
func (s *Simulator) ExpireAccessTokens() { s.expireAll(s.accessTokens) }

// ExpireRefreshTokens makes every refresh token valid so far expired.
func (s *Simulator) ExpireRefreshTokens() { s.expireAll(s.refreshTokens) }

func (s *Simulator) expireAll(tokens map[string]*grant) {
	now := s.now()
	s.authMu.Lock()
	defer s.authMu.Unlock()
	for _, g := range tokens {
		if g.expires.After(now) {
			g.expires = now
		}
	}
}

// oauthAllows reports whether tok is an unexpired access token with scope
// whose app may act on the ad account.
func (s *Simulator) oauthAllows(tok, adAccountID string, scope int) bool {
	now := s.now()
	s.authMu.Lock()
	defer s.authMu.Unlock()
	g := s.accessTokens[tok]
	if g == nil || !now.Before(g.expires) || g.scope&scope == 0 {
		return false
	}
	ap := s.apps[g.appID]
	return ap != nil && ap.accounts[adAccountID]
}

// serveOAuth answers POST /v5/oauth/token, grant_type=refresh_token only.
func (s *Simulator) serveOAuth(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, http.MethodPost)
		return
	}
	if _, answered := s.applyFault(w, r, OAuthFaultKey, false); answered {
		return
	}
	appID, secret, ok := r.BasicAuth()
	if !ok || !s.appSecretMatches(appID, secret) {
		writeError(w, http.StatusUnauthorized, CodeAuthFailed, "Authentication failed.")
		return
	}
	form, msg := readTokenForm(r)
	if msg != "" {
		writeError(w, http.StatusBadRequest, CodeInvalidRequest, "The request was invalid. "+msg)
		return
	}
	switch gt := form.Get("grant_type"); gt {
	case "refresh_token":
	case "":
		writeError(w, http.StatusBadRequest, CodeInvalidRequest, "The request was invalid. grant_type is required.")
		return
	default:
		writeError(w, http.StatusBadRequest, CodeInvalidRequest, "The request was invalid. Unsupported grant_type "+strconv.Quote(gt)+".")
		return
	}
	ans, status, msg := s.refresh(appID, form.Get("refresh_token"), form.Get("scope"), form.Has("scope"))
	if status != http.StatusOK {
		writeError(w, status, CodeInvalidParameter, msg)
		return
	}
	writeJSON(w, http.StatusOK, ans)
}

func (s *Simulator) appSecretMatches(appID, secret string) bool {
	s.authMu.Lock()
	defer s.authMu.Unlock()
	ap := s.apps[appID]
	return ap != nil && ap.secret == secret
}

// tokenFormFields are the form fields the spec knows for the token request
// (continuous_refresh is named in the operation's description).
var tokenFormFields = map[string]bool{
	"grant_type": true, "refresh_token": true, "scope": true, "continuous_refresh": true,
}

// readTokenForm reads the url-encoded body strictly: only known fields, each
// at most once; msg says what is wrong.
func readTokenForm(r *http.Request) (url.Values, string) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, "Content-Type must be application/x-www-form-urlencoded."
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes))
	if err != nil {
		return nil, err.Error()
	}
	form, err := url.ParseQuery(string(b))
	if err != nil {
		return nil, err.Error()
	}
	for k, v := range form {
		if !tokenFormFields[k] {
			return nil, "Unknown field " + strconv.Quote(k) + "."
		}
		if len(v) != 1 {
			return nil, "Field " + strconv.Quote(k) + " is repeated."
		}
	}
	if cr, ok := form["continuous_refresh"]; ok && cr[0] != "true" && cr[0] != "false" {
		return nil, "continuous_refresh must be true or false."
	}
	return form, ""
}

// refresh rotates refreshToken of appID: the old one stops working at once.
// A requested scope must be a subset of the grant's.
func (s *Simulator) refresh(appID, refreshToken, scope string, hasScope bool) (tokenAnswer, int, string) {
	now := s.now()
	s.authMu.Lock()
	defer s.authMu.Unlock()
	g := s.refreshTokens[refreshToken]
	if refreshToken == "" || g == nil || g.appID != appID || !now.Before(g.expires) {
		return tokenAnswer{}, http.StatusBadRequest, "Invalid refresh token."
	}
	want := g.scope
	if hasScope {
		var ok bool
		if want, ok = parseScope(scope); !ok || want&^g.scope != 0 {
			return tokenAnswer{}, http.StatusBadRequest, "Invalid scope " + strconv.Quote(scope) + "."
		}
	}
	delete(s.refreshTokens, refreshToken)
	access, next := "pina_"+randomToken(), "pinr_"+randomToken()
	s.accessTokens[access] = &grant{appID: appID, scope: want, expires: now.Add(s.accessTTL)}
	s.refreshTokens[next] = &grant{appID: appID, scope: g.scope, expires: now.Add(s.refreshTTL)}
	s.apps[appID].refreshes++
	return tokenAnswer{
		AccessToken: access, TokenType: "bearer", ExpiresIn: int64(s.accessTTL / time.Second),
		Scope: formatScope(want), ResponseType: "refresh_token", RefreshToken: next,
		RefreshTokenExpiresIn: int64(s.refreshTTL / time.Second),
		RefreshTokenExpiresAt: now.Add(s.refreshTTL).Unix(),
	}, http.StatusOK, ""
}

// parseScope reads a comma- or space-separated list of ads:read/ads:write.
func parseScope(v string) (int, bool) {
	scope := 0
	for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' }) {
		switch f {
		case "ads:read":
			scope |= scopeRead
		case "ads:write":
			scope |= scopeWrite
		default:
			return 0, false
		}
	}
	return scope, scope != 0
}

func formatScope(scope int) string {
	var out []string
	if scope&scopeRead != 0 {
		out = append(out, "ads:read")
	}
	if scope&scopeWrite != 0 {
		out = append(out, "ads:write")
	}
	return strings.Join(out, ",")
}

func randomToken() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
