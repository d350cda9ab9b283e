package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/schollz/progressbar/v3"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/config"
	"github.com/cohort-connector/cohort-connector/connector"
)

const backfillUsage = `Usage: cohort-connector backfill --activation ID [--status | --cancel]

Rebuilds the current members of the activation's cohort from the input
stream's history (CONNECTOR_STREAM, subject <prefix><cohort_id> of
CONNECTOR_SUBJECTS: the latest change of each user) and sends them to the
activation's ad account, in this process, showing read / sent, rate and ETA
(a plain line every 5 seconds when stderr is not a terminal). Loads the
daemon's CONNECTOR_* configuration; the activation must be enabled, and in
customer_list mode its list created (the daemon does that). The daemon
backfills an activation by itself when it is enabled.

One backfill per activation runs at a time, here or in a daemon; its
progress is kept in the state bucket (CONNECTOR_STATE_BUCKET, key
backfill.<activation_id>). A backfill stopped by --cancel, Ctrl-C or a
failure resumes where it stopped when run again; one that finished starts
over.

  --status   print the activation's backfill progress and exit
  --cancel   stop the activation's running backfill (it keeps its progress)

The stream must still hold the latest change of every member: limits
retention, and a MaxAge (7 days as the daemon creates it) longer than
memberships last; see the README.
`

func runBackfill(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	ba, help, err := parseBackfillArgs(args)
	if help {
		fmt.Fprint(stdout, backfillUsage)
		return nil
	}
	if err != nil {
		return err
	}
	cfg, err := config.Load()
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	nc, js, err := connectJetStream(cfg, "cohort-connector backfill")
	if err != nil {
		return err
	}
	defer nc.Close()
	lookupCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()

	kv, err := js.KeyValue(lookupCtx, cfg.StateBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) && (ba.status || ba.cancel) {
		fmt.Fprintf(stdout, "no backfill of activation %s has run\n", ba.id)
		return nil
	}
	if err != nil {
		return fmt.Errorf("opening KV bucket %s (CONNECTOR_STATE_BUCKET; the daemon creates it): %w", cfg.StateBucket, err)
	}
	switch {
	case ba.status:
		return showBackfillStatus(lookupCtx, kv, ba.id, stdout)
	case ba.cancel:
		return cancelBackfill(lookupCtx, kv, ba.id, stdout)
	}
	c := &backfillCmd{cfg: cfg, js: js, kv: kv, stdout: stdout, stderr: stderr}
	target, subject, err := c.lookup(lookupCtx, ba.id)
	if err != nil {
		return err
	}
	return c.run(ctx, lookupCtx, target, subject)
}

// backfillArgs are the backfill command's arguments.
type backfillArgs struct {
	id     string // --activation
	status bool   // --status
	cancel bool   // --cancel
}

// parseBackfillArgs parses the backfill command's arguments. It decides
// whether they ask for the usage (help) and whether they are wrong (err):
// an argument that is not a flag, no --activation, or both --status and
// --cancel.
func parseBackfillArgs(args []string) (ba backfillArgs, help bool, err error) {
	if asksForHelp(args) {
		return ba, true, nil
	}
	fs := flag.NewFlagSet("backfill", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&ba.id, "activation", "", "")
	fs.BoolVar(&ba.status, "status", false, "")
	fs.BoolVar(&ba.cancel, "cancel", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ba, true, nil
		}
		return ba, false, fmt.Errorf("backfill: %w", err)
	}
	switch {
	case fs.NArg() != 0:
		return ba, false, fmt.Errorf("backfill: unexpected argument %q", fs.Arg(0))
	case ba.id == "":
		return ba, false, errors.New("backfill: --activation ID is required")
	case ba.status && ba.cancel:
		return ba, false, errors.New("backfill: --status and --cancel exclude each other")
	}
	return ba, false, nil
}

// showBackfillStatus prints activation id's stored backfill progress (for
// --status), or that none has run.
func showBackfillStatus(ctx context.Context, kv jetstream.KeyValue, id string, stdout io.Writer) error {
	p, _, err := connector.ReadBackfill(ctx, kv, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		fmt.Fprintf(stdout, "no backfill of activation %s has run\n", id)
		return nil
	}
	if err != nil {
		return err
	}
	printBackfillStatus(stdout, p, time.Now())
	return nil
}

// cancelBackfill cancels activation id's running backfill (for --cancel)
// and prints what it did: cancelled it, or found none running.
func cancelBackfill(ctx context.Context, kv jetstream.KeyValue, id string, stdout io.Writer) error {
	p, running, err := connector.CancelBackfill(ctx, kv, id)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		fmt.Fprintf(stdout, "no backfill of activation %s has run\n", id)
		return nil
	case err != nil:
		return err
	case !running:
		fmt.Fprintf(stdout, "no backfill of activation %s is running (state %s)\n", id, p.State)
		return nil
	}
	fmt.Fprintf(stdout, "backfill of activation %s cancelled (owner %s, %d of %d members done): it stops within a few seconds\nresume with: cohort-connector backfill --activation %s\n",
		id, p.Owner, p.Done(), p.Members, id)
	return nil
}

// backfillCmd is what the backfill command runs with once connected.
type backfillCmd struct {
	cfg            config.Config
	js             jetstream.JetStream
	kv             jetstream.KeyValue // the state bucket
	stdout, stderr io.Writer
}

// lookup finds the activation id, its ad account (in target) and its
// cohort's subject. It decides whether the activation can be backfilled:
// it must be stored, valid and enabled, and its Tag ID known.
func (c *backfillCmd) lookup(ctx context.Context, id string) (cohorts.Target, string, error) {
	cfg := c.cfg
	actKV, err := c.js.KeyValue(ctx, cfg.ActivationsBucket)
	if err != nil {
		return cohorts.Target{}, "", fmt.Errorf("opening KV bucket %s (start the daemon once, or create it from deploy/nats): %w", cfg.ActivationsBucket, err)
	}
	e, err := actKV.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return cohorts.Target{}, "", fmt.Errorf("backfill: no activation %q in %s", id, cfg.ActivationsBucket)
	}
	if err != nil {
		return cohorts.Target{}, "", fmt.Errorf("activation %q: %w", id, err)
	}
	a, err := cohorts.DecodeStoredActivation(id, e.Value())
	if err != nil {
		return cohorts.Target{}, "", fmt.Errorf("activation %q is invalid in the bucket, fix it with activations put: %w", id, err)
	}
	if !a.Enabled {
		return cohorts.Target{}, "", fmt.Errorf("activation %q is disabled: enable it first (activations enable %s)", id, id)
	}
	resolver, err := cohorts.NewResolver(cfg.DefaultTagID, cfg.TagAccounts())
	if err != nil {
		return cohorts.Target{}, "", fmt.Errorf("CONNECTOR_DEFAULT_TAG_ID: %w", err)
	}
	target := resolver.Target(a)
	if target.Err != nil {
		return cohorts.Target{}, "", target.Err
	}
	subject, err := cohortSubject(cfg, a.CohortID)
	if err != nil {
		return cohorts.Target{}, "", err
	}
	return target, subject, nil
}

// run backfills target's activation from subject into target's ad
// account, showing the progress on stderr and the outcome on stdout.
// lookupCtx bounds the lookup of the activation's customer list.
func (c *backfillCmd) run(ctx, lookupCtx context.Context, target cohorts.Target, subject string) error {
	cfg, a := c.cfg, target.Activation
	log := zerolog.New(consoleWriter(c.stderr)).Level(zerolog.WarnLevel).With().Timestamp().Logger()
	d := &daemon{cfg: cfg, log: log, reg: prometheus.NewRegistry(), objs: &connector.Objects{State: c.kv}}
	if err := d.connectPinterest(nil); err != nil {
		return err
	}
	defer d.client.CloseIdleConnections()
	listID, err := recordedList(lookupCtx, c.kv, a)
	if err != nil {
		return err
	}
	applier, sketches := connector.NewListApplier(c.js, c.kv), connector.NewSketches(c.kv, nil)
	defer func() { // the member counts and the users sent, for the match rate
		fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = applier.Flush(fctx)
		_ = sketches.Flush(fctx)
	}()
	pr := newBackfillPrinter(c.stderr)
	p, err := connector.Backfill(ctx, connector.BackfillOptions{
		JS: c.js, Stream: cfg.Stream, Subject: subject, KV: c.kv, Activation: a,
		Send:          backfillSend(d.client, applier, target.AdAccountID, a, listID, sketches.Add, log),
		BatchSize:     cfg.BatchSize,
		RetryMin:      cfg.HTTPRetryWaitMin,
		RetryMax:      min(cfg.RetryDelayMax, time.Minute),
		Logger:        log,
		Progress:      pr.update,
		ProgressEvery: pr.every,
	})
	pr.finish()
	return backfillOutcome(c.stdout, a.ID, target.AdAccountID, p, err)
}

// backfillOutcome tells how activation id's backfill into ad account
// account ended, given Backfill's progress and error: what to do next when
// another run holds it, it stopped or it failed (the returned error), or
// the summary and a trimmed history's warning on stdout when it is done.
func backfillOutcome(stdout io.Writer, id, account string, p connector.BackfillProgress, err error) error {
	switch {
	case errors.Is(err, connector.ErrBackfillRunning):
		return fmt.Errorf("%w\nsee: cohort-connector backfill --activation %s --status (or --cancel)", err, id)
	case errors.Is(err, context.Canceled), errors.Is(err, connector.ErrBackfillCancelled):
		return fmt.Errorf("backfill of activation %s stopped (%v): %d of %d members done\nresume with: cohort-connector backfill --activation %s",
			id, err, p.Done(), p.Members, id)
	case err != nil:
		return fmt.Errorf("backfill of activation %s failed: %w\n%d of %d members done; resume with: cohort-connector backfill --activation %s",
			id, err, p.Done(), p.Members, id)
	}
	fmt.Fprintf(stdout, "backfill of activation %s done: %d members, %d sent to ad account %s, %d skipped (no matchable identifiers); %d messages read up to sequence %d, %d undecodable\n",
		id, p.Members, p.Sent, account, p.Skipped, p.Read, p.Upto, p.Undecodable)
	if p.HistoryTrimmed {
		fmt.Fprintf(stdout, "warning: the stream's history starts at sequence %d: members whose latest change is older were not rebuilt\n", p.FirstSeq)
	}
	return nil
}

// backfillPrinter shows the progress: a bar per phase on a terminal, a
// plain line every 5 seconds otherwise.
type backfillPrinter struct {
	w     io.Writer
	tty   bool
	every time.Duration
	bar   *progressbar.ProgressBar
	phase string
}

func newBackfillPrinter(w io.Writer) *backfillPrinter {
	if isTerminal(w) {
		return &backfillPrinter{w: w, tty: true, every: 200 * time.Millisecond}
	}
	return &backfillPrinter{w: w, every: 5 * time.Second}
}

func (b *backfillPrinter) update(p connector.BackfillProgress) {
	if !b.tty {
		switch p.Phase {
		case "read":
			fmt.Fprintf(b.w, "backfill %s: %s: read %d of about %d messages (%.0f msgs/s), %d users\n",
				p.ActivationID, p.State, p.Read, p.ReadTotal, p.Rate, p.Users)
		default:
			eta := ""
			if left := p.Members - p.Done(); p.Rate > 0 && left > 0 {
				eta = ", ETA " + (time.Duration(float64(left)/p.Rate) * time.Second).String()
			}
			fmt.Fprintf(b.w, "backfill %s: %s: sent %d, skipped %d of %d members (%.0f items/s%s)\n",
				p.ActivationID, p.State, p.Sent, p.Skipped, p.Members, p.Rate, eta)
		}
		return
	}
	done, total, unit := int64(p.Read), int64(p.ReadTotal), "msgs"
	if p.Phase == "send" {
		done, total, unit = int64(p.Done()), int64(p.Members), "members"
	}
	if b.bar == nil || b.phase != p.Phase {
		b.finish()
		desc := "reading history"
		if p.Phase == "send" {
			desc = "sending members"
		}
		b.phase = p.Phase
		b.bar = progressbar.NewOptions64(max(total, 1),
			progressbar.OptionSetWriter(b.w),
			progressbar.OptionSetDescription(desc),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString(unit),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionFullWidth(),
			progressbar.OptionThrottle(100*time.Millisecond),
		)
	}
	if total > b.bar.GetMax64() {
		b.bar.ChangeMax64(total)
	}
	_ = b.bar.Set64(done)
}

// finish ends the current bar's line.
func (b *backfillPrinter) finish() {
	if b.bar != nil {
		_ = b.bar.Exit()
		fmt.Fprintln(b.w)
		b.bar = nil
	}
}

func printBackfillStatus(w io.Writer, p connector.BackfillProgress, now time.Time) {
	state := string(p.State)
	if p.State == connector.BackfillRunning {
		state += fmt.Sprintf(" (owner %s, heartbeat %s ago)", p.Owner, now.Sub(p.Heartbeat).Truncate(time.Second))
	}
	fmt.Fprintf(w, "activation:  %s (cohort %s, subject %s)\n", p.ActivationID, p.CohortID, p.Subject)
	fmt.Fprintf(w, "state:       %s, phase %s, run %d\n", state, p.Phase, p.Runs)
	fmt.Fprintf(w, "started:     %s\n", p.Started.Format(time.RFC3339))
	if !p.Finished.IsZero() {
		fmt.Fprintf(w, "finished:    %s\n", p.Finished.Format(time.RFC3339))
	}
	fmt.Fprintf(w, "history:     up to sequence %d, first sequence %d", p.Upto, p.FirstSeq)
	if p.HistoryTrimmed {
		fmt.Fprint(w, " (trimmed: members whose latest change is older are not rebuilt)")
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "read:        %d of about %d messages (this run), %d undecodable, %d ignored, %d users\n",
		p.Read, p.ReadTotal, p.Undecodable, p.Ignored, p.Users)
	fmt.Fprintf(w, "members:     %d: %d sent, %d skipped (no matchable identifiers), last user %q\n", p.Members, p.Sent, p.Skipped, p.LastUser)
	if p.Error != "" {
		fmt.Fprintf(w, "error:       %s\n", p.Error)
	}
}
