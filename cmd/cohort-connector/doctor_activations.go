package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/config"
	"github.com/cohort-connector/cohort-connector/connector"
	"github.com/cohort-connector/cohort-connector/destinations"
)

// audienceFillTime is how long Pinterest may take to fill an audience
// after its creation (its help pages and the reference products say 24 to
// 48 hours); an audience still INITIALIZING after it fails.
const audienceFillTime = 48 * time.Hour

// checkActivations checks every activation in the bucket: its newest
// value valid, its Tag ID under a configured account that Pinterest agrees
// owns it, and, when enabled, its audience.
func (p *pinterestView) checkActivations(ctx context.Context, objs *connector.Objects, o doctorOptions) []finding {
	if objs.Activations == nil {
		return nil // its bucket's line already failed
	}
	r, err := cohorts.NewResolver(p.cfg.DefaultTagID, p.cfg.TagAccounts())
	if err != nil {
		return []finding{failFinding("activations", "fix CONNECTOR_DEFAULT_TAG_ID and the accounts' _TAG_IDS", "%v", err)}
	}
	keys, err := readKeyStates(ctx, objs.Activations, r)
	if err != nil {
		return []finding{failFinding("activations", "check the NATS account's permissions", "reading bucket %s: %v", p.cfg.ActivationsBucket, err)}
	}
	if len(keys) == 0 {
		return []finding{warnFinding("activations", "add one: cohort-connector activations put -h", "none in bucket %s: nothing is sent", p.cfg.ActivationsBucket)}
	}
	var enabled []cohorts.Activation
	for _, k := range keys {
		if k.err == nil && k.st.InForce != 0 && k.st.Target.Activation.Enabled {
			enabled = append(enabled, k.st.Target.Activation)
		}
	}
	var found []finding
	views, err := readAudienceViews(ctx, objs.State, nil, enabled)
	if err != nil {
		// The audiences are still looked for in Pinterest, by name.
		found = append(found, warnFinding("audience records", "check the NATS account's permissions on the state bucket",
			"reading them from bucket %s: %v", p.cfg.StateBucket, err))
		views = map[string]audienceView{}
	}
	aud := p.audienceLister()
	for _, k := range keys {
		if k.err != nil {
			found = append(found, failFinding("activation "+k.key, "check the NATS account's permissions", "reading it: %v", k.err))
			continue
		}
		st := k.st
		found = append(found, p.checkActivation(st))
		if st.InForce != 0 && st.Target.Activation.Enabled && st.Target.Err == nil {
			found = append(found, p.checkAudience(ctx, aud, st.Target, views[st.Key], o))
		}
	}
	return found
}

// checkActivation checks one key: its value in force, and where its
// changes go.
func (p *pinterestView) checkActivation(st cohorts.KeyState) finding {
	name := "activation " + st.Key
	put := "write a valid value: cohort-connector activations put -h"
	if prob := st.Problem(); prob != "" {
		return failFinding(name, put, "%s", prob)
	}
	t := st.Target
	a := t.Activation
	if !a.Enabled {
		return okFinding(name, "disabled: nothing is sent and no audience is made (enable it: cohort-connector activations enable %s)", a.ID)
	}
	where := fmt.Sprintf("cohort %s, mode %s, Tag ID %s (%s)", a.CohortID, a.Mode, t.TagID, t.TagSource)
	setTag := "set its tag_id (cohort-connector activations put -h), blank for the default, CONNECTOR_DEFAULT_TAG_ID"
	if t.Err != nil {
		return failFinding(name, setTag+", to one of "+strings.Join(p.allTags(), ", ")+", or add the Tag ID to its account's _TAG_IDS",
			"%s: no configured account has this Tag ID, so its changes are held back", where)
	}
	seen, read := p.tags[t.AdAccountID]
	if _, mine := seen[t.TagID]; read && !mine {
		owner := p.tagOwner(t.TagID)
		if owner == "" {
			owner = "no ad account doctor could read"
		} else {
			owner = "ad account " + owner
		}
		return failFinding(name, setTag+", to a Tag ID of the ad account the cohort is meant for",
			"%s: sent to ad account %s, but Pinterest lists this Tag ID under %s", where, t.AdAccountID, owner)
	}
	return okFinding(name, "%s → ad account %s", where, t.AdAccountID)
}

// allTags are the configured Tag IDs, sorted.
func (p *pinterestView) allTags() []string {
	var out []string
	for tag := range p.cfg.TagAccounts() {
		out = append(out, tag)
	}
	slices.Sort(out)
	return out
}

// audienceLister lists each ad account's audiences once.
func (p *pinterestView) audienceLister() func(context.Context, string) ([]destinations.Audience, error) {
	type listed struct {
		auds []destinations.Audience
		err  error
	}
	cache := map[string]listed{}
	return func(ctx context.Context, acct string) ([]destinations.Audience, error) {
		l, done := cache[acct]
		if !done {
			l.auds, l.err = p.client.ListAudiences(ctx, acct)
			cache[acct] = l
		}
		return l.auds, l.err
	}
}

// account is the configured account of an ad account id.
func (p *pinterestView) account(adAccountID string) config.Account {
	for _, a := range p.cfg.AccountList {
		if a.AdAccountID == adAccountID {
			return a
		}
	}
	return config.Account{AdAccountID: adAccountID}
}
