package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/config"
	"github.com/cohort-connector/cohort-connector/connector"
	"github.com/cohort-connector/cohort-connector/destinations"
	"github.com/cohort-connector/cohort-connector/destinations/pinterest"
)

// pinterestView is what doctor asks Pinterest, with the daemon's
// credentials and client, and what it learnt for the later checks.
type pinterestView struct {
	cfg    config.Config
	client *pinterest.Client
	creds  credentials
	// tags are each OAuth account's conversion tags (id → status), nil
	// for an account whose tags could not be read.
	tags map[string]map[string]string
}

// checkAccounts checks each ad account's tokens, then each configured Tag
// ID against the conversion tags Pinterest lists.
func (p *pinterestView) checkAccounts(ctx context.Context) []finding {
	var found []finding
	for _, a := range p.cfg.AccountList {
		found = append(found, p.checkEvents(ctx, a))
		if a.HasOAuth() {
			found = append(found, p.checkOAuth(ctx, a))
		}
	}
	for _, a := range p.cfg.AccountList {
		for _, tag := range a.TagIDs {
			found = append(found, p.checkTag(a, tag))
		}
	}
	return found
}

// accountName is how findings name an account: its name and ad account id.
func accountName(a config.Account) string { return a.Name + " (" + a.AdAccountID + ")" }

// accountVar is the name of one of the account's variables.
func accountVar(a config.Account, suffix string) string {
	return config.Prefix + "ACCOUNT_" + strings.ToUpper(a.Name) + "_" + suffix
}

// doctorMembership is the test event's membership: a synthetic user
// Pinterest is told not to record (?test=true).
var doctorMembership = cohorts.Membership{
	UserID: "cohort-connector-doctor", CohortID: "cohort-connector-doctor", Action: cohorts.ActionEnter,
	Identifiers: cohorts.Identifiers{Email: "doctor@cohort-connector.invalid"},
}

// checkEvents sends the account one test event with the token its events
// are sent with.
func (p *pinterestView) checkEvents(ctx context.Context, a config.Account) finding {
	name := "events token " + accountName(a)
	if a.Token.Reveal() == "" && p.creds.keepers[a.AdAccountID] == nil {
		return failFinding(name, "fix the nats or state bucket line above, then run doctor again",
			"not checked: its events are sent with its OAuth token, kept in the state bucket (CONNECTOR_STATE_BUCKET), which doctor could not open")
	}
	m := doctorMembership
	m.TS = time.Now().UTC()
	id, h := m.Prepare()
	res, err := p.client.TestEvent(ctx, a.AdAccountID, destinations.Item{EventID: id, Membership: m, Hashed: h})
	tokenFix := "set " + accountVar(a, "TOKEN") + " to a current conversion access token of ad account " + a.AdAccountID + " (Ads Manager: Conversions)"
	if a.Token.Reveal() == "" {
		tokenFix = reauthorise(a)
	}
	var de *destinations.Error
	switch {
	case errors.As(err, &de) && de.Reason == destinations.ReasonAuth:
		return failFinding(name, tokenFix, "Pinterest refused it: %v", err)
	case err != nil:
		return failFinding(name, "check CONNECTOR_PINTEREST_BASE_URL and the network; run doctor again", "no answer from Pinterest: %v", err)
	case !res.Processed:
		return failFinding(name, "report it with this line: the event format is the daemon's", "token accepted, but Pinterest refused the test event: %s", res.Error)
	}
	return okFinding(name, "accepted: a test event (?test=true, not recorded) was processed")
}

func reauthorise(a config.Account) string {
	return fmt.Sprintf("re-authorise the app for ad account %s and set %s to the new refresh token; then delete the stored one: nats kv del -f <CONNECTOR_STATE_BUCKET> token.%s",
		a.AdAccountID, accountVar(a, "REFRESH_TOKEN"), a.AdAccountID)
}

// checkOAuth gets the account's OAuth access token as the daemon's keeper
// does (refreshing an expired one) and proves it by listing the
// account's conversion tags; a token Pinterest refuses is refreshed once.
func (p *pinterestView) checkOAuth(ctx context.Context, a config.Account) finding {
	name := "oauth " + accountName(a)
	k := p.creds.keepers[a.AdAccountID]
	if k == nil {
		return failFinding(name, "fix the nats or state bucket line above, then run doctor again",
			"not checked: its refresh token is kept in the state bucket (CONNECTOR_STATE_BUCKET), which doctor could not open")
	}
	tags, err := p.client.ConversionTags(ctx, a.AdAccountID)
	var de *destinations.Error
	if errors.As(err, &de) && de.StatusCode == http.StatusUnauthorized {
		tags, err = p.client.ConversionTags(ctx, a.AdAccountID) // the keeper was told; it refreshes
	}
	check := k.Check()
	// A refused grant needs a person; a Pinterest that did not answer
	// (5xx, timeouts) is retried by the daemon on its own.
	fix := reauthorise(a)
	if !k.Expiring() && (err == nil || destinations.ReasonOf(err) != destinations.ReasonAuth) {
		fix = "Pinterest did not answer (5xx, timeout) or the state bucket failed: run doctor again; the daemon retries on its own"
	}
	switch {
	case check.State != connector.CheckOK:
		return failFinding(name, fix, "%s", check.Detail)
	case err != nil:
		return failFinding(name, fix, "listing conversion tags: %v", err)
	}
	p.tags[a.AdAccountID] = map[string]string{}
	for _, t := range tags {
		p.tags[a.AdAccountID][t.ID] = t.Status
	}
	at, by := k.Refreshed()
	return okFinding(name, "%s; last refreshed at %s by %s; conversion tags read", check.Detail, at.UTC().Format(time.RFC3339), by)
}

// checkTag checks that Pinterest lists the Tag ID under the ad account the
// configuration puts it under, and that it is active.
func (p *pinterestView) checkTag(a config.Account, tag string) finding {
	name := "tag " + tag
	v := accountVar(a, "TAG_IDS")
	seen, read := p.tags[a.AdAccountID]
	if !read {
		if !a.HasOAuth() {
			return warnFinding(name, "give the account an OAuth app ("+accountVar(a, "APP_ID")+", _APP_SECRET, _REFRESH_TOKEN) so that doctor can read its tags",
				"not checked: listing ad account %s's conversion tags needs an OAuth token", a.AdAccountID)
		}
		return warnFinding(name, "fix the oauth line above", "not checked: ad account %s's conversion tags could not be read", a.AdAccountID)
	}
	status, mine := seen[tag]
	switch {
	case mine && status != "ACTIVE":
		return failFinding(name, "activate the tag in Pinterest (Ads > Conversions) or remove it from "+v, "ad account %s's tag, but %s", a.AdAccountID, status)
	case mine:
		return okFinding(name, "ad account %s's, active (%s)", a.AdAccountID, v)
	}
	if owner := p.tagOwner(tag); owner != "" {
		return failFinding(name, fmt.Sprintf("move Tag ID %s from %s to the variable of the account with ad account %s", tag, v, owner),
			"wrong account: %s puts it under ad account %s, but Pinterest lists it under ad account %s: its cohorts are sent to the wrong account", v, a.AdAccountID, owner)
	}
	return failFinding(name, fmt.Sprintf("correct %s: ad account %s's tags are %s (Ads > Conversions in Pinterest)", v, a.AdAccountID, tagList(seen)),
		"wrong Tag ID: Pinterest lists no such conversion tag under ad account %s (%s)", a.AdAccountID, v)
}

// tagOwner is the other ad account whose conversion tags include tag, ""
// when none of those read does.
func (p *pinterestView) tagOwner(tag string) string {
	for acct, seen := range p.tags {
		if _, ok := seen[tag]; ok {
			return acct
		}
	}
	return ""
}

func tagList(seen map[string]string) string {
	if len(seen) == 0 {
		return "none"
	}
	ids := make([]string, 0, len(seen))
	for id := range seen {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return strings.Join(ids, ", ")
}
