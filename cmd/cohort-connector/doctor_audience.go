package main

import (
	"context"
	"fmt"
	"time"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/connector"
	"github.com/cohort-connector/cohort-connector/destinations"
)

// checkAudience checks an enabled activation's audience: in Pinterest,
// filled, and not much smaller than the users sent to it. aud lists an ad
// account's audiences; v is the daemon's record of the audience and the
// users it sent.
func (p *pinterestView) checkAudience(ctx context.Context, aud func(context.Context, string) ([]destinations.Audience, error),
	t cohorts.Target, v audienceView, o doctorOptions) finding {
	a := t.Activation
	name := "audience " + a.ID
	acct := p.account(t.AdAccountID)
	switch {
	case p.cfg.StateBucket == "":
		return failFinding(name, "set CONNECTOR_STATE_BUCKET (the daemon keeps audience ids there)", "not managed: CONNECTOR_STATE_BUCKET is empty")
	case !acct.HasOAuth():
		return failFinding(name, "give the account an OAuth app: "+accountVar(acct, "APP_ID")+", _APP_SECRET and _REFRESH_TOKEN",
			"none: ad account %s has no OAuth app, and Pinterest creates audiences only for an OAuth token", t.AdAccountID)
	}
	list, err := aud(ctx, t.AdAccountID)
	if err != nil {
		return failFinding(name, "fix the oauth line of the account", "listing ad account %s's audiences: %v", t.AdAccountID, err)
	}
	// A record of another ad account is of an audience the activation
	// left behind when its Tag ID moved: the daemon makes a new one.
	recorded := v.found && v.rec.AudienceID != "" && v.rec.AdAccountID == t.AdAccountID
	au, found := findAudience(list, recorded, v.rec.AudienceID, connector.AudienceName(a.ID, a.CohortID))
	if !found {
		return p.missingAudience(name, a, t, v, recorded)
	}
	return judgeAudience(name, au, v, o)
}

// findAudience finds the activation's audience: the one the daemon
// recorded (id), else the one with the name the daemon gives it.
func findAudience(list []destinations.Audience, recorded bool, id, name string) (destinations.Audience, bool) {
	for _, au := range list {
		if recorded && au.ID == id || !recorded && au.Name == name {
			return au, true
		}
	}
	return destinations.Audience{}, false
}

// missingAudience says why an enabled activation has no audience in
// Pinterest.
func (p *pinterestView) missingAudience(name string, a cohorts.Activation, t cohorts.Target, v audienceView, recorded bool) finding {
	switch {
	case recorded:
		return failFinding(name, fmt.Sprintf("delete the record and the daemon creates a new audience: nats kv del -f %s audience.%s", p.cfg.StateBucket, a.ID),
			"the daemon recorded audience %s, which Pinterest no longer lists under ad account %s (deleted in Pinterest?)", v.rec.AudienceID, t.AdAccountID)
	case v.found && v.rec.State == "creating":
		return warnFinding(name, "run doctor again in a minute; if it stays, see the daemon's log for 'audience'",
			"being created by %s since %s", v.rec.Owner, v.rec.Since.UTC().Format(time.RFC3339))
	}
	return failFinding(name, "the daemon creates it once the activation is enabled: is the daemon running? Its log and cohort-connector status (LAST ERROR) say why it could not",
		"not in Pinterest: ad account %s has no audience %q", t.AdAccountID, connector.AudienceName(a.ID, a.CohortID))
}

// judgeAudience judges an audience Pinterest lists, by its status and its
// size against the users the daemon sent to it.
func judgeAudience(name string, au destinations.Audience, v audienceView, o doctorOptions) finding {
	size, users, rate := "unknown", "unknown", ""
	if au.SizeKnown {
		size = fmt.Sprint(au.Size)
	}
	if v.known {
		users = fmt.Sprint(v.users)
	}
	if au.SizeKnown && v.known && v.users > 0 {
		rate = fmt.Sprintf(" (%.1f%%)", 100*float64(au.Size)/float64(v.users))
	}
	what := fmt.Sprintf("%s %s %s: size %s of %s users sent%s", au.ID, au.Type, au.Status, size, users, rate)
	small := "Pinterest matches only users it can identify: send emails or mobile ad ids (hashed) for more users (COVERAGE in cohort-connector status); an audience fills over 24-48 hours after the first activation"
	switch au.Status {
	case destinations.AudienceTooSmall:
		return failFinding(name, small, "%s: Pinterest needs at least 100 matched users to target it", what)
	case destinations.AudienceInitializing:
		if v.found && !v.rec.CreatedAt.IsZero() && time.Since(v.rec.CreatedAt) > audienceFillTime {
			return failFinding(name, "check the Tag ID and the token lines above; contact Pinterest if they are OK",
				"%s, created %s: still not filled after %s", what, v.rec.CreatedAt.UTC().Format(time.RFC3339), audienceFillTime)
		}
		return okFinding(name, "%s: Pinterest is filling it (up to 24-48 hours)", what)
	}
	if au.SizeKnown && v.known && v.users >= o.minUsers && float64(au.Size) < o.minMatchRate*float64(v.users) {
		return failFinding(name, small, "%s: much smaller than the cohort, below --min-match-rate %.0f%%", what, 100*o.minMatchRate)
	}
	return okFinding(name, "%s", what)
}
