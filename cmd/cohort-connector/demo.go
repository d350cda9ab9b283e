package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sort"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/config"
	"github.com/cohort-connector/cohort-connector/destinations/pinterest/simulator"
)

// The demo's two brands: two ad accounts, each with its own token and Tags.
var demoAccounts = []config.Account{
	{Name: "brand_a", AdAccountID: "549755885175", Token: "demo-token-brand-a", TagIDs: []string{"2612345678901", "2612345678902"}},
	{Name: "brand_b", AdAccountID: "549755885176", Token: "demo-token-brand-b", TagIDs: []string{"2619876543210"}},
}

const demoDefaultTag = "2612345678901"

// demoActivations show a default Tag ID, overrides, a fan-out of one cohort
// to two ad accounts and a disabled activation; cohort "cooking" has none.
var demoActivations = []cohorts.Activation{
	{ID: "sports-brand-a", CohortID: "sports", Destination: "pinterest", Enabled: true, TagID: "", Mode: cohorts.ModeEvents},
	{ID: "sports-brand-b", CohortID: "sports", Destination: "pinterest", Enabled: true, TagID: "2619876543210", Mode: cohorts.ModeEvents},
	{ID: "travel-brand-a", CohortID: "travel", Destination: "pinterest", Enabled: true, TagID: "2612345678902", Mode: cohorts.ModeEvents},
	{ID: "travel-brand-b", CohortID: "travel", Destination: "pinterest", Enabled: false, TagID: "2619876543210", Mode: cohorts.ModeEvents},
}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	duration := fs.Duration("duration", 0, "stop after this long (0: run until Ctrl-C)")
	rate := fs.Int("rate", 500, "memberships published per second")
	interval := fs.Duration("interval", 3*time.Second, "how often to print the table")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *rate <= 0 || *interval <= 0 {
		return fmt.Errorf("demo: -rate and -interval must be positive")
	}
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}

	tokens := map[string]string{}
	for _, a := range demoAccounts {
		tokens[a.AdAccountID] = a.Token.Reveal()
	}
	sim, err := simulator.Start(simulator.Options{Accounts: tokens, KnownUserShare: 0.7})
	if err != nil {
		return fmt.Errorf("starting Pinterest simulator: %w", err)
	}
	defer sim.Close()

	dir, err := os.MkdirTemp("", "cohort-connector-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	cfg := config.Default()
	cfg.DataDir = dir
	cfg.EmbeddedListen = "127.0.0.1:0"
	cfg.ListenAddr = "127.0.0.1:0"
	cfg.PinterestBaseURL = sim.URL()
	cfg.DefaultTagID = demoDefaultTag
	cfg.AccountList = demoAccounts
	for _, a := range demoAccounts {
		cfg.Accounts = append(cfg.Accounts, a.Name)
	}
	cfg.ShutdownTimeout = 10 * time.Second
	cfg.LogFormat = "console"
	cfg.LogLevel = "warn"
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("demo configuration: %w", err)
	}
	log, err := newLogger(cfg, stderr)
	if err != nil {
		return err
	}

	d, err := startDaemon(ctx, cfg, log)
	if err != nil {
		return err
	}
	for _, a := range demoActivations {
		if err := d.resolver.Check(a); err != nil {
			return fmt.Errorf("demo activation %s: %w", a.ID, err)
		}
		data, _ := json.Marshal(a)
		if _, err := d.objs.Activations.Put(ctx, a.ID, data); err != nil {
			return fmt.Errorf("writing demo activation %s: %w", a.ID, err)
		}
	}
	fmt.Fprintf(stdout, "cohort-connector demo: embedded NATS %s, Pinterest simulator %s, metrics http://%s/metrics\n",
		d.natsURL, sim.URL(), d.httpAddr())
	fmt.Fprintf(stdout, "publishing %d memberships/s to %s (cohorts sports, travel, cooking); Ctrl-C stops\n\n", *rate, cfg.Subjects[0])

	var published publishedCount
	var final string
	d.onStopped = func() { final = pipelineLine(context.Background(), d, &published) }
	daemonCtx, stopDaemon := context.WithCancel(context.Background())
	defer stopDaemon()
	runErr := make(chan error, 1)
	go func() { runErr <- d.run(daemonCtx) }()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		publishSynthetic(ctx, d.js, *rate, &published, log)
	}()

	tick := time.NewTicker(*interval)
	defer tick.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
			printTable(ctx, stdout, d, &published)
		}
	}
	wg.Wait()
	fmt.Fprintln(stdout, "stopping: flushing batches and settling every message…")
	// Give the daemon a moment to drain what was published before stopping.
	drainCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	waitDrained(drainCtx, d)
	cancel()
	stopDaemon()
	err = <-runErr
	printActivations(stdout, d)
	fmt.Fprintf(stdout, "%s\nstopped cleanly\n", final)
	return err
}

type publishedCount struct {
	mu sync.Mutex
	n  int
}

// publishSynthetic publishes a stream of enters and exits for 10,000
// synthetic users: most with an email (some already hashed, some mixed
// case), some with a MAID or IP + user agent, some with no identifier.
func publishSynthetic(ctx context.Context, js jetstream.JetStream, rate int, n *publishedCount, log zerolog.Logger) {
	cohortIDs := []string{"sports", "travel", "cooking"}
	rng := rand.New(rand.NewPCG(1, 2))
	inCohort := map[[2]int]bool{}
	per := time.Second / 20 // publish in 20 bursts a second
	burst := max(rate/20, 1)
	t := time.NewTicker(per)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for range burst {
			u, c := rng.IntN(10000), rng.IntN(len(cohortIDs))
			action := cohorts.ActionEnter
			if inCohort[[2]int{u, c}] {
				action = cohorts.ActionExit
			}
			inCohort[[2]int{u, c}] = action == cohorts.ActionEnter
			m := cohorts.Membership{
				UserID: fmt.Sprintf("u%05d", u), CohortID: cohortIDs[c], Action: action,
				TS: time.Now().UTC(),
			}
			switch k := u % 20; {
			case k < 16:
				m.Identifiers.Email = fmt.Sprintf("User%05d@Example.com", u)
			case k == 16:
				m.Identifiers.MAID = fmt.Sprintf("6D92078A-8246-4BA4-AE5B-76104861E%03d", u%1000)
			case k == 17:
				m.Identifiers.IP, m.Identifiers.UserAgent = fmt.Sprintf("203.0.113.%d", u%250), "Mozilla/5.0 (demo)"
			default: // no identifier: counted, not sent
				m.Identifiers.ExternalID = m.UserID
			}
			data, _ := json.Marshal(m)
			if _, err := js.PublishAsync("cohorts.membership."+m.CohortID, data); err != nil {
				log.Warn().Err(err).Msg("demo publish failed")
				continue
			}
			n.mu.Lock()
			n.n++
			n.mu.Unlock()
		}
	}
}

// waitDrained polls until the consumer has nothing pending or ctx ends.
func waitDrained(ctx context.Context, d *daemon) {
	for {
		ci, err := d.objs.Consumer.Info(ctx)
		if err == nil && ci.NumPending == 0 && ci.NumAckPending == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func printTable(ctx context.Context, w io.Writer, d *daemon, published *publishedCount) {
	printActivations(w, d)
	fmt.Fprintf(w, "%s\n\n", pipelineLine(ctx, d, published))
}

// printActivations prints one row per activation: where it goes and what
// Pinterest made of it.
func printActivations(w io.Writer, d *daemon) {
	snap := d.stats.Snapshot()
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "ACTIVATION\tCOHORT\tTAG\tSOURCE\tAD ACCOUNT\tENABLED\tRECEIVED\tWITH IDS\tSENT\tPROCESSED\tFAILED\tACCEPTANCE\tCOVERAGE\t")
	list := d.resolver.List()
	sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	for _, a := range list {
		t := d.resolver.Target(a)
		s := snap[a.ID]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%t\t%d\t%d\t%d\t%d\t%d\t%.1f%%\t%.1f%%\t\n",
			a.ID, a.CohortID, t.TagID, t.TagSource, t.AdAccountID, a.Enabled,
			s.Received, s.WithIdentifiers, s.Sent, s.Processed, s.Failed, 100*s.Acceptance(), 100*s.Coverage())
	}
	tw.Flush()
}

// pipelineLine sums up the stream: published, waiting, in flight, dead letters.
func pipelineLine(ctx context.Context, d *daemon, published *publishedCount) string {
	published.mu.Lock()
	n := published.n
	published.mu.Unlock()
	line := fmt.Sprintf("published %d", n)
	ictx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if ci, err := d.objs.Consumer.Info(ictx); err == nil {
		line += fmt.Sprintf(", waiting %d, in flight %d", ci.NumPending, ci.NumAckPending)
	}
	if si, err := d.objs.DLQ.Info(ictx); err == nil {
		line += fmt.Sprintf(", dead letters %d (messages set aside as invalid)", si.State.Msgs)
	}
	return line
}
