package pinterest

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/cohort-connector/cohort-connector/destinations"
)

// eventsCredential is the bearer token for the account's events: its
// static token, else its TokenSources entry.
func (c *Client) eventsCredential(ctx context.Context, adAccountID string) (credential, error) {
	if tok := c.cfg.Tokens[adAccountID]; tok != "" {
		return c.bearer(tok), nil
	}
	return c.sourceCredential(ctx, c.cfg.TokenSources[adAccountID], adAccountID, "events")
}

// adsCredential is the OAuth access token for the account's audiences and
// customer lists (AdsTokens).
func (c *Client) adsCredential(ctx context.Context, adAccountID string) (credential, error) {
	return c.sourceCredential(ctx, c.cfg.AdsTokens[adAccountID], adAccountID, "ads (OAuth)")
}

// sourceCredential asks ts for a token. A failure is classified:
// ReasonAuth unless ts already returned a *destinations.Error. The error is
// scrubbed, since a TokenSource's message may quote a token.
func (c *Client) sourceCredential(ctx context.Context, ts destinations.TokenSource, adAccountID, what string) (credential, error) {
	if ts == nil {
		return credential{}, &destinations.Error{Reason: destinations.ReasonAuth,
			Message: "no " + what + " token configured for ad account " + adAccountID}
	}
	tok, err := ts.Token(ctx)
	if err == nil && tok == "" {
		err = errors.New("empty token")
	}
	if err != nil {
		var de *destinations.Error
		if errors.As(err, &de) {
			return credential{}, err
		}
		return credential{}, &destinations.Error{Reason: destinations.ReasonAuth,
			Message: "getting the " + what + " token of ad account " + adAccountID + ": " + c.secrets.redact(err.Error())}
	}
	cred := c.bearer(tok)
	if r, ok := ts.(destinations.TokenRejecter); ok {
		cred.rejected = func() { r.Rejected(tok) }
	}
	return cred, nil
}

// bearer is the credential of a call carrying tok: its redactor also
// scrubs tok, which a TokenSource may have rotated since New.
func (c *Client) bearer(tok string) credential {
	return credential{auth: "Bearer " + tok, secrets: c.secrets.with(tok)}
}

// RefreshToken exchanges refreshToken for a new grant: POST
// {BaseURL}/oauth/token, form grant_type=refresh_token, the app id and
// secret as Basic auth (OauthAccessTokenRequestRefresh →
// OauthAccessTokenResponseRefresh). A 400 or 401 (an invalid, expired or
// revoked grant, or a wrong app secret) is ReasonAuth; server errors and
// timeouts are retried and classified as for events. Neither the secret
// nor a token ever appears in the returned error.
//
// The grant's RefreshToken is the rotated one the answer carries; when an
// answer has none (a refresh token that does not rotate) it is
// refreshToken itself, still valid, and RefreshExpiresAt is zero.
func (c *Client) RefreshToken(ctx context.Context, appID, appSecret, refreshToken string) (destinations.TokenGrant, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	basic := base64.StdEncoding.EncodeToString([]byte(appID + ":" + appSecret))
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}}
	call := apiCall{
		method: http.MethodPost,
		url:    c.base.JoinPath("oauth", "token"),
		cred: credential{auth: "Basic " + basic,
			secrets: c.secrets.with(appSecret, refreshToken, basic)},
		contentType: "application/x-www-form-urlencoded",
		body:        []byte(form.Encode()),
	}
	now := time.Now() // expiries count from before the request: on the safe side
	var tr OAuthTokenResponse
	status, err := c.do(ctx, call, &tr)
	if err != nil {
		var de *destinations.Error
		if errors.As(err, &de) && (de.StatusCode == http.StatusBadRequest || de.StatusCode == http.StatusUnauthorized) {
			de.Reason = destinations.ReasonAuth // invalid_grant or invalid_client
		}
		return destinations.TokenGrant{}, err
	}
	if tr.AccessToken == "" {
		return destinations.TokenGrant{}, &destinations.Error{Reason: destinations.ReasonServer, StatusCode: status,
			Message: "token answer without access_token"}
	}
	g := destinations.TokenGrant{
		AccessToken:  tr.AccessToken,
		RefreshToken: cmp.Or(tr.RefreshToken, refreshToken),
		Scope:        tr.Scope,
	}
	if tr.ExpiresIn > 0 {
		g.AccessExpiresAt = now.Add(time.Duration(tr.ExpiresIn) * time.Second)
	}
	switch {
	case tr.RefreshToken == "":
	case tr.RefreshTokenExpiresAt > 0:
		g.RefreshExpiresAt = time.Unix(tr.RefreshTokenExpiresAt, 0)
	case tr.RefreshTokenExpiresIn > 0:
		g.RefreshExpiresAt = now.Add(time.Duration(tr.RefreshTokenExpiresIn) * time.Second)
	}
	return g, nil
}
