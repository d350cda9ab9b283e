package main

import (
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/config"
	"github.com/cohort-connector/cohort-connector/destinations/pinterest/simulator"
)

// The demo's two brands: two ad accounts, each with its own conversion
// token, Tags and OAuth app (for the audiences).
var demoAccounts = []config.Account{
	{Name: "brand_a", AdAccountID: "549755885175", Token: "demo-token-brand-a", TagIDs: []string{"2612345678901", "2612345678902"},
		AppID: "1484960", AppSecret: "demo-app-secret-a", RefreshToken: "pinr.demo-refresh-a"},
	{Name: "brand_b", AdAccountID: "549755885176", Token: "demo-token-brand-b", TagIDs: []string{"2619876543210"},
		AppID: "1484961", AppSecret: "demo-app-secret-b", RefreshToken: "pinr.demo-refresh-b"},
}

const demoDefaultTag = "2612345678901"

// demoActivations show a default Tag ID, overrides, a fan-out of one cohort
// to two ad accounts, a disabled activation, an actalike and a customer
// list; cohort "news" has none.
var demoActivations = []cohorts.Activation{
	{ID: "sports-brand-a", CohortID: "sports", Destination: "pinterest", Enabled: true, TagID: "", Mode: cohorts.ModeEvents,
		Actalike: &cohorts.Actalike{Country: "US", Percentage: 5}},
	{ID: "sports-brand-b", CohortID: "sports", Destination: "pinterest", Enabled: true, TagID: "2619876543210", Mode: cohorts.ModeEvents},
	{ID: "travel-brand-a", CohortID: "travel", Destination: "pinterest", Enabled: true, TagID: "2612345678902", Mode: cohorts.ModeEvents, RetentionDays: 30},
	{ID: "travel-brand-b", CohortID: "travel", Destination: "pinterest", Enabled: false, TagID: "2619876543210", Mode: cohorts.ModeEvents},
	{ID: "cooking-list-brand-a", CohortID: "cooking", Destination: "pinterest", Enabled: true, TagID: "", Mode: cohorts.ModeCustomerList},
}

// demoCohorts are the cohorts the demo publishes to.
var demoCohorts = []string{"sports", "travel", "cooking", "news"}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	usage(fs, "Usage: cohort-connector demo [flags]\n\nRuns everything locally: an embedded NATS server, the Pinterest simulator, the daemon\nwith two brands, and synthetic memberships; prints a delivery table (Ctrl-C stops).")
	duration := fs.Duration("duration", 0, "stop after this long (0: run until Ctrl-C)")
	rate := fs.Int("rate", 500, "memberships published per second")
	interval := fs.Duration("interval", 3*time.Second, "how often to print the table")
	audienceDelay := fs.Duration("audience-delay", 2*time.Minute, "the simulator's audience processing delay (Pinterest: 24-48h): audiences stay INITIALIZING this long, and their sizes lag by it")
	if help, err := parseFlags(fs, args, stdout); help || err != nil {
		return err
	}
	if *rate <= 0 || *interval <= 0 {
		return fmt.Errorf("demo: --rate and --interval must be positive")
	}
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}

	sim, err := startDemoSimulator(*audienceDelay)
	if err != nil {
		return err
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
	cfg.SecretsKeyBase64 = config.Secret(base64.StdEncoding.EncodeToString(randomKey()))
	cfg.AudiencePollInterval = 10 * time.Second
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
	fmt.Fprintf(stdout, "cohort-connector demo: embedded NATS %s, Pinterest simulator %s, status page http://%s/, metrics http://%s/metrics\n",
		d.natsURL, sim.URL(), d.httpAddr(), d.httpAddr())
	fmt.Fprintf(stdout, "publishing %d memberships/s to %s (cohorts %s); Ctrl-C stops\n", *rate, cfg.Subjects[0], strings.Join(demoCohorts, ", "))
	fmt.Fprintf(stdout, "audiences are INITIALIZING for %s (-audience-delay), then sized with that lag; cohort cooking (a customer list) shrinks every other %s\n\n",
		*audienceDelay, cookingPhase(*audienceDelay))
	fmt.Fprint(stdout, demoLegend+"\n")

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
		publishSynthetic(ctx, d.js, *rate, cookingPhase(*audienceDelay), &published, log)
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
	// The audiences are read while NATS is still connected; the counts
	// after the stop, which settles the last messages.
	views, viewsErr := readAudienceViews(context.Background(), d.objs.State, d.audiences.sketches, d.resolver.List())
	stopDaemon()
	err = <-runErr
	printActivations(stdout, d, views, viewsErr)
	fmt.Fprintf(stdout, "%s\n%s\nstopped cleanly\n", cohortsLine(d, &published), final)
	return err
}

// publishedCount counts what the demo published, in all and per cohort.
type publishedCount struct {
	mu       sync.Mutex
	n        int
	byCohort map[string]int
}

func (p *publishedCount) add(cohort string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	if p.byCohort == nil {
		p.byCohort = map[string]int{}
	}
	p.byCohort[cohort]++
}

// counts returns the total and a copy of the per-cohort counts.
func (p *publishedCount) counts() (int, map[string]int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n, maps.Clone(p.byCohort)
}

// demoLegend explains the table's columns and lines.
const demoLegend = `How to read the table (the one cohort-connector status prints; one row per activation:
a cohort sent to a Pinterest Tag):
  TAG, SOURCE    the Tag ID the activation's events go to: the default Tag ID, or its own (override)
  AD ACCOUNT     the ad account owning that Tag ID; MODE: events or customer_list; ON: enabled
  RECEIVED       memberships of its cohort the daemon received; SENT: those Pinterest answered for,
                 ACCEPTED or REJECTED (a user without email, MAID or IP+user agent is not sent)
  ACCEPTANCE     accepted / sent; COVERAGE: memberships with an identifier Pinterest matches / received
  AUDIENCE       the Pinterest audience of the activation (VISITOR for events, CUSTOMER_LIST
                 for customer lists), its STATUS and SIZE as Pinterest reports them
  USERS          distinct users sent; MATCH RATE: SIZE / USERS (what Pinterest could match)
  ACCOUNT        the ad account's state (healthy, failing, throttled, auth_failing, token_expiring);
                 LAST ERROR: what last went wrong for the activation, and when
  cohorts        every cohort published to, with how many memberships, and the activations
                 it has (a cohort with none is acked and not sent)
  published      memberships published; waiting: not yet read by the daemon; in flight: read,
                 not yet settled; dead letters: set aside as invalid (cohort-connector dlq list)
`

// publishSynthetic publishes a stream of enters and exits for 10,000
// synthetic users: most with an email (some already hashed, some mixed
// case), some with a MAID or IP + user agent, some with no identifier.
// Every other phase, cohort cooking loses members.
func publishSynthetic(ctx context.Context, js jetstream.JetStream, rate int, phase time.Duration, n *publishedCount, log zerolog.Logger) {
	rng := rand.New(rand.NewPCG(1, 2))
	inCohort := map[[2]int]bool{}
	start := time.Now()
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
		shrinking := int(time.Since(start)/phase)%2 == 1
		for range burst {
			m := nextChange(rng, inCohort, shrinking)
			data, _ := json.Marshal(m)
			if _, err := js.PublishAsync("cohorts.membership."+m.CohortID, data); err != nil {
				log.Warn().Err(err).Msg("demo publish failed")
				continue
			}
			n.add(m.CohortID)
		}
	}
}

// cookingPhase is how long cooking grows, then shrinks: long enough for
// the simulator's audience size, which lags by the audience delay, to
// follow.
func cookingPhase(audienceDelay time.Duration) time.Duration {
	return max(30*time.Second, 3*audienceDelay)
}

// nextChange flips a random user's membership of a random cohort; while
// shrinking, half of cohort cooking's changes are exits of members, so its
// customer list audience visibly shrinks.
func nextChange(rng *rand.Rand, in map[[2]int]bool, shrinking bool) cohorts.Membership {
	u, c := rng.IntN(10000), rng.IntN(len(demoCohorts))
	if shrinking && demoCohorts[c] == "cooking" && rng.IntN(2) == 0 {
		for range 50 {
			if in[[2]int{u, c}] {
				break
			}
			u = rng.IntN(10000)
		}
	}
	action := cohorts.ActionEnter
	if in[[2]int{u, c}] {
		action = cohorts.ActionExit
	}
	in[[2]int{u, c}] = action == cohorts.ActionEnter
	m := cohorts.Membership{UserID: fmt.Sprintf("u%05d", u), CohortID: demoCohorts[c], Action: action, TS: time.Now().UTC()}
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
	return m
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
	views, err := readAudienceViews(ctx, d.objs.State, d.audiences.sketches, d.resolver.List())
	printActivations(w, d, views, err)
	fmt.Fprintf(w, "%s\n%s\n\n", cohortsLine(d, published), pipelineLine(ctx, d, published))
}

// cohortsLine names every cohort published to, with its memberships and
// its activations ("none": acked, not sent).
func cohortsLine(d *daemon, published *publishedCount) string {
	_, by := published.counts()
	activations := map[string][]string{}
	for _, a := range d.resolver.List() {
		activations[a.CohortID] = append(activations[a.CohortID], a.ID)
	}
	parts := make([]string, 0, len(demoCohorts))
	for _, c := range demoCohorts {
		acts := "none"
		if ids := activations[c]; len(ids) > 0 {
			slices.Sort(ids)
			acts = strings.Join(ids, ", ")
		}
		parts = append(parts, fmt.Sprintf("%s %d (%s)", c, by[c], acts))
	}
	return "cohorts: " + strings.Join(parts, "; ")
}

// printActivations prints the activations as cohort-connector status
// does, from views (the audience views, read by the caller; err when they
// could not be).
func printActivations(w io.Writer, d *daemon, views map[string]audienceView, err error) {
	if err != nil {
		fmt.Fprintf(w, "audiences not readable: %v\n", err)
	}
	printActivationTable(w, d.activationRows(views, d.accountHealth()))
}

// pipelineLine sums up the stream: published, waiting, in flight, dead letters.
func pipelineLine(ctx context.Context, d *daemon, published *publishedCount) string {
	n, _ := published.counts()
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

// startDemoSimulator starts the simulator with the demo's accounts, their
// conversion tokens, OAuth apps and Tags.
func startDemoSimulator(audienceDelay time.Duration) (*simulator.Simulator, error) {
	tokens := map[string]string{}
	for _, a := range demoAccounts {
		tokens[a.AdAccountID] = a.Token.Reveal()
	}
	sim, err := simulator.Start(simulator.Options{Accounts: tokens, KnownUserShare: 0.7, AudienceDelay: audienceDelay})
	if err != nil {
		return nil, fmt.Errorf("starting Pinterest simulator: %w", err)
	}
	for _, a := range demoAccounts {
		sim.AddApp(a.AppID, a.AppSecret.Reveal(), a.RefreshToken.Reveal(), a.AdAccountID)
		sim.SetTags(a.AdAccountID, a.TagIDs...)
	}
	return sim, nil
}

// randomKey is a fresh CONNECTOR_SECRETS_KEY for one demo run.
func randomKey() []byte {
	k := make([]byte, 32)
	_, _ = crand.Read(k) // never fails (crypto/rand)
	return k
}
