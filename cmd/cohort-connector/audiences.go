package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/connector"
)

// sketchFlushEvery is how often the match-rate sketches are merged into
// the state bucket.
const sketchFlushEvery = 10 * time.Second

// audiences is the daemon's audience side: the manager that keeps one
// Pinterest audience per enabled activation, and the sketches that count
// the users put into each (the match rate's denominator). Nil fields when
// no account has OAuth (audiences are then not managed; events flow).
type audiences struct {
	manager  *connector.AudienceManager
	sketches *connector.Sketches
}

// newAudiences builds the audience side when the state bucket exists and
// some account has an OAuth app.
func newAudiences(d *daemon) (audiences, error) {
	if d.objs.State == nil || len(d.creds.keepers) == 0 {
		return audiences{}, nil
	}
	oauth := map[string]bool{}
	for _, a := range d.cfg.AccountList {
		oauth[a.AdAccountID] = a.HasOAuth()
	}
	host, _ := os.Hostname()
	s := connector.NewSketches(d.objs.State, nil)
	m, err := connector.NewAudienceManager(connector.AudienceOptions{
		KV: d.objs.State, API: d.client, Accounts: oauth, Logger: d.log, Registerer: d.reg,
		Sketches: s, PollInterval: d.cfg.AudiencePollInterval,
		Owner: fmt.Sprintf("%s/%d/%d", host, os.Getpid(), time.Now().UnixNano()),
	})
	if err != nil {
		return audiences{}, err
	}
	return audiences{manager: m, sketches: s}, nil
}

// customerList is the connector's CustomerLists option: nil without an
// audience side (no list can exist then).
func (a audiences) customerList() func(string) string {
	if a.manager == nil {
		return nil
	}
	return a.manager.CustomerListID
}

// accepted is the connector's OnAccepted option: every user Pinterest took
// for an activation is counted in its sketch.
func (a audiences) accepted() func(activationID, userID string) {
	if a.sketches == nil {
		return nil
	}
	return a.sketches.Add
}

// changed is the activations watcher's OnChange: a change makes the
// manager look at the audiences now rather than at the next poll.
func (a audiences) changed(cohorts.Activation, bool) {
	if a.manager != nil {
		a.manager.Wake()
	}
}

// run keeps the audiences until ctx ends, then flushes the sketches once
// more. Start it once the activations are loaded.
func (a audiences) run(ctx context.Context, d *daemon) {
	if a.manager == nil {
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = a.manager.Run(ctx, func() []connector.ActiveAudience { return d.activeAudiences(ctx) })
	}()
	t := time.NewTicker(sketchFlushEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if err := a.sketches.Flush(ctx); err != nil {
				d.log.Warn().Err(err).Msg("match-rate sketches not stored yet; retrying")
			}
		case <-ctx.Done():
			<-done
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := a.sketches.Flush(fctx); err != nil {
				d.log.Warn().Err(err).Msg("match-rate sketches not stored at shutdown")
			}
			return
		}
	}
}

// checks are the audience side's readiness checks (warnings only).
func (a audiences) checks() []connector.Check {
	if a.manager == nil {
		return nil
	}
	return a.manager.Checks()
}

// activeAudiences are the enabled activations whose Tag ID resolves, with
// the current members of each customer list.
func (d *daemon) activeAudiences(ctx context.Context) []connector.ActiveAudience {
	var out []connector.ActiveAudience
	for _, a := range d.resolver.List() {
		t := d.resolver.Target(a)
		if !a.Enabled || t.Err != nil {
			continue
		}
		aa := connector.ActiveAudience{Activation: a, AdAccountID: t.AdAccountID, TagID: t.TagID}
		if list := d.audiences.manager.CustomerListID(a.ID); list != "" {
			if n, err := d.conn.ListMembers(ctx, list); err == nil && n > 0 {
				aa.Members = uint64(n)
			}
		}
		out = append(out, aa)
	}
	return out
}
