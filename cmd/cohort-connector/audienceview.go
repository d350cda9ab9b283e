package main

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/connector"
)

// audienceView is what people are shown of an activation's audience: the
// record the daemon keeps, and the match rate, the size Pinterest reports
// over the distinct users the daemon put into it.
type audienceView struct {
	rec   connector.Record
	found bool
	users uint64 // events: distinct users sent in the retention window; customer_list: current members
	known bool   // users could be read
}

// readAudienceViews reads the audience record of every activation from the
// state bucket kv and its users; sketches may be nil (then read from kv).
func readAudienceViews(ctx context.Context, kv jetstream.KeyValue, sketches *connector.Sketches, list []cohorts.Activation) (map[string]audienceView, error) {
	out := map[string]audienceView{}
	if kv == nil {
		return out, nil
	}
	recs, err := connector.ReadAudienceRecords(ctx, kv)
	if err != nil {
		return nil, err
	}
	if sketches == nil {
		sketches = connector.NewSketches(kv, nil)
	}
	byID := map[string]cohorts.Activation{}
	for _, a := range list {
		byID[a.ID] = a
	}
	for _, r := range recs {
		v := audienceView{rec: r, found: true}
		a, ok := byID[r.ActivationID]
		switch {
		case r.CustomerListID != "":
			n, err := connector.ReadListMembers(ctx, kv, r.CustomerListID)
			v.users, v.known = uint64(max(n, 0)), err == nil
		case ok:
			n, err := sketches.Distinct(ctx, r.ActivationID, a.Retention())
			v.users, v.known = n, err == nil
		}
		out[r.ActivationID] = v
	}
	return out, nil
}

// status is the audience's state for a table: its Pinterest status, or
// why there is none.
func (v audienceView) status() string {
	switch {
	case !v.found:
		return "-"
	case v.rec.State == "left":
		return "left in Pinterest"
	case v.rec.State != "ready":
		return v.rec.State
	case v.rec.Status == "":
		return "not polled yet"
	}
	return v.rec.Status
}

// size is the audience size for a table, "-" when Pinterest gave none.
func (v audienceView) size() string {
	if !v.found || !v.rec.SizeKnown {
		return "-"
	}
	return fmt.Sprint(v.rec.Size)
}

// matchRate is size ÷ users for a table, "-" when either is unknown.
func (v audienceView) matchRate() string {
	if !v.found || !v.rec.SizeKnown || !v.known || v.users == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(v.rec.Size)/float64(v.users))
}

// id is the audience id for a table, with its type.
func (v audienceView) id() string {
	if !v.found || v.rec.AudienceID == "" {
		return "-"
	}
	return v.rec.AudienceID + " " + v.rec.AudienceType
}
