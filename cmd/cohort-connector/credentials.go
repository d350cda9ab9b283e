package main

import (
	"context"
	"fmt"

	"github.com/cohort-connector/cohort-connector/config"
	"github.com/cohort-connector/cohort-connector/connector"
	"github.com/cohort-connector/cohort-connector/destinations"
)

// credentials are the daemon's Pinterest credentials per ad account: the
// conversion tokens as configured, and a token keeper per account with an
// OAuth app (its access token refreshed and its rotated refresh token
// stored, encrypted, in the state bucket).
type credentials struct {
	static  map[string]string                 // ad account → conversion token
	keepers map[string]*connector.TokenKeeper // ad account → OAuth token keeper
}

// newCredentials builds the credentials of cfg's accounts. The keepers
// refresh through refresher, which may be set up later (the Pinterest
// client needs the keepers first).
func newCredentials(cfg config.Config, d *daemon) (credentials, error) {
	c := credentials{static: map[string]string{}, keepers: map[string]*connector.TokenKeeper{}}
	var oauth []string
	for _, a := range cfg.AccountList {
		if tok := a.Token.Reveal(); tok != "" {
			c.static[a.AdAccountID] = tok
		}
		if a.HasOAuth() {
			oauth = append(oauth, a.AdAccountID)
		}
	}
	if len(oauth) == 0 {
		return c, nil
	}
	key, err := cfg.SecretsKey()
	if err != nil {
		return c, err
	}
	if d.objs.State == nil {
		return c, fmt.Errorf("CONNECTOR_STATE_BUCKET: required for OAuth accounts (refresh tokens are stored there)")
	}
	metrics := connector.NewTokenMetrics(d.reg, oauth)
	for _, a := range cfg.AccountList {
		if !a.HasOAuth() {
			continue
		}
		c.keepers[a.AdAccountID] = connector.NewTokenKeeper(connector.TokenKeeperOptions{
			KV: d.objs.State, Key: key, Refresher: lateRefresher{d},
			Account: a.AdAccountID, AppID: a.AppID, AppSecret: a.AppSecret.Reveal(),
			InitialRefreshToken: a.RefreshToken.Reveal(),
			Logger:              d.log, Metrics: metrics,
		})
	}
	return c, nil
}

// eventSources are the token sources of accounts that send events with
// their OAuth access token (no conversion token configured).
func (c credentials) eventSources() map[string]destinations.TokenSource {
	out := map[string]destinations.TokenSource{}
	for id, k := range c.keepers {
		if c.static[id] == "" {
			out[id] = k
		}
	}
	return out
}

// adsSources are the OAuth token sources, the only tokens the audiences
// API accepts.
func (c credentials) adsSources() map[string]destinations.TokenSource {
	out := map[string]destinations.TokenSource{}
	for id, k := range c.keepers {
		out[id] = k
	}
	return out
}

// tokenExpiring says whether an account's OAuth token needs a person soon
// (never for an account without OAuth).
func (c credentials) tokenExpiring(adAccountID string) bool {
	k := c.keepers[adAccountID]
	return k != nil && k.Expiring()
}

// checks are the keepers' readiness checks.
func (c credentials) checks() []connector.Check {
	var out []connector.Check
	for _, k := range c.keepers {
		out = append(out, k.Check())
	}
	return out
}

// lateRefresher refreshes through the daemon's Pinterest client, which is
// built after the keepers.
type lateRefresher struct{ d *daemon }

func (r lateRefresher) RefreshToken(ctx context.Context, appID, appSecret, refreshToken string) (destinations.TokenGrant, error) {
	return r.d.client.RefreshToken(ctx, appID, appSecret, refreshToken)
}
