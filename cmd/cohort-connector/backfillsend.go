package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/config"
	"github.com/cohort-connector/cohort-connector/connector"
	"github.com/cohort-connector/cohort-connector/destinations"
)

// backfillSend is a backfill's Send for activation a at its ad account,
// used by the daemon and by the backfill command:
//   - events mode: each member's enter is sent as an event at the time of
//     the backfill (a visitor audience keeps a user for retention_days from
//     the event's time, and Pinterest refuses events too old), with the
//     original event_id, so an enter already sent live is deduplicated;
//   - customer_list mode: the member is ADDed to the list under the
//     last-change-wins rule, with the member's own ts, so a newer live
//     change (an exit) is never undone.
//
// An item Pinterest refuses (invalid) is counted in the log and not
// retried: retrying the batch cannot make it valid. Every member Pinterest
// took is passed to accepted (the match-rate sketches), if set.
func backfillSend(dest destinations.Destination, applier *connector.ListApplier, account string, a cohorts.Activation, listID string,
	accepted func(activationID, userID string), log zerolog.Logger) func(context.Context, []destinations.Item) error {
	return func(ctx context.Context, items []destinations.Item) error {
		now := time.Now().UTC()
		for i := range items {
			if a.Mode == cohorts.ModeCustomerList {
				items[i].CustomerLists, items[i].ListsOnly = []string{listID}, true
			} else {
				items[i].Membership.TS = now
			}
		}
		res, err := applier.Send(ctx, dest, account, items)
		if err != nil {
			return err
		}
		refused, first := 0, ""
		for i, r := range res.Items {
			if r.Processed && accepted != nil {
				accepted(a.ID, items[i].Membership.UserID)
			}
			if !r.Processed {
				if refused == 0 {
					first = fmt.Sprintf("user %s: %s", items[i].Membership.UserID, r.Error)
				}
				refused++
			}
		}
		if refused > 0 {
			log.Warn().Str("activation_id", a.ID).Int("refused", refused).Int("batch", len(items)).Str("first", first).
				Msg("backfill: Pinterest refused members as invalid; they are not retried")
		}
		return nil
	}
}

// recordedList is the customer list of activation a as the daemon recorded
// it ("" in events mode); an error when a is in customer_list mode and its
// list is not created yet.
func recordedList(ctx context.Context, kv jetstream.KeyValue, a cohorts.Activation) (string, error) {
	if a.Mode != cohorts.ModeCustomerList {
		return "", nil
	}
	recs, err := connector.ReadAudienceRecords(ctx, kv)
	if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
		return "", err
	}
	for _, r := range recs {
		if r.ActivationID == a.ID && r.State == "ready" && r.CustomerListID != "" {
			return r.CustomerListID, nil
		}
	}
	return "", fmt.Errorf("activation %s: its customer list is not created yet: the daemon creates it when the activation is enabled and its ad account has an OAuth app", a.ID)
}

// cohortSubject is the subject of a cohort's changes, for its backfill.
func cohortSubject(cfg config.Config, cohortID string) (string, error) {
	for _, s := range cfg.Subjects {
		if subject := connector.BackfillSubject(s, cohortID); subject != "" {
			return subject, nil
		}
	}
	return "", fmt.Errorf("backfill needs a CONNECTOR_SUBJECTS entry <prefix>> (messages on <prefix><cohort_id>), got %s", strings.Join(cfg.Subjects, ","))
}

// backfills are the daemon's running backfills: one starts when an
// activation becomes enabled, and at startup those a shutdown or a crash
// interrupted resume.
type backfills struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// start backfills a in its own goroutine.
func (d *daemon) startBackfill(a cohorts.Activation) {
	if d.objs.State == nil {
		return
	}
	d.backfills.wg.Add(1)
	go func() {
		defer d.backfills.wg.Done()
		if err := d.backfill(d.backfills.ctx, a); err != nil && d.backfills.ctx.Err() == nil {
			d.log.Error().Err(err).Str("activation_id", a.ID).Msg("backfill stopped; resume with: cohort-connector backfill --activation " + a.ID)
		}
	}()
}

// backfill rebuilds a's members from history and sends them (in
// customer_list mode once its list exists).
func (d *daemon) backfill(ctx context.Context, a cohorts.Activation) error {
	t := d.resolver.Target(a)
	if t.Err != nil {
		return t.Err
	}
	listID := ""
	if a.Mode == cohorts.ModeCustomerList {
		if d.audiences.manager == nil {
			return fmt.Errorf("activation %s: customer_list mode needs an OAuth app on ad account %s", a.ID, t.AdAccountID)
		}
		rec, err := d.audiences.manager.Ensure(ctx, a, t.AdAccountID, t.TagID)
		if err != nil {
			return err
		}
		listID = rec.CustomerListID
	}
	subject, err := cohortSubject(d.cfg, a.CohortID)
	if err != nil {
		return err
	}
	res := <-connector.StartBackfill(ctx, connector.BackfillOptions{
		JS: d.js, Stream: d.cfg.Stream, Subject: subject, KV: d.objs.State, Activation: a,
		Send:      backfillSend(d.client, d.conn.Applier(), t.AdAccountID, a, listID, d.audiences.accepted(), d.log),
		BatchSize: d.cfg.BatchSize, Logger: d.log,
	})
	if res.Err != nil {
		if errors.Is(res.Err, connector.ErrBackfillRunning) {
			return nil // logged by StartBackfill
		}
		return res.Err
	}
	p := res.Progress
	d.log.Info().Str("activation_id", a.ID).Int("members", p.Members).Int("sent", p.Sent).Int("skipped", p.Skipped).
		Uint64("read", p.Read).Bool("history_trimmed", p.HistoryTrimmed).Msg("backfill done")
	return nil
}

// resumeBackfills restarts the backfills of enabled activations that a
// shutdown or a crash stopped (not those cancelled on request or failed).
func (d *daemon) resumeBackfills(ctx context.Context) {
	if d.objs.State == nil {
		return
	}
	for _, a := range d.resolver.List() {
		if !a.Enabled {
			continue
		}
		p, _, err := connector.ReadBackfill(ctx, d.objs.State, a.ID)
		if err != nil {
			continue // none, or unreadable: nothing to resume
		}
		if p.State == connector.BackfillRunning || (p.State == connector.BackfillCancelled && p.Error == context.Canceled.Error()) {
			d.log.Info().Str("activation_id", a.ID).Int("done", p.Done()).Int("members", p.Members).Msg("resuming backfill")
			d.startBackfill(a)
		}
	}
}

// activationChanged is the activations watcher's OnChange: audiences are
// looked at now, and an activation just enabled is backfilled.
func (d *daemon) activationChanged(a cohorts.Activation, becameEnabled bool) {
	d.audiences.changed(a, becameEnabled)
	if becameEnabled {
		d.startBackfill(a)
	}
}
