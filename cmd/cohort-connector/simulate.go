package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/cohort-connector/cohort-connector/destinations/pinterest/simulator"
)

// runSimulator serves the Pinterest simulator on a fixed loopback address,
// for trying the daemon against "Pinterest" without the demo.
func runSimulator(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("simulator", flag.ContinueOnError)
	usage(fs, "Usage: cohort-connector simulator --account AD_ACCOUNT_ID=TOKEN [flags]\n\nServes the Pinterest simulator alone, on a loopback address (see the README).")
	listen := fs.String("listen", "127.0.0.1:8080", "loopback `host:port` to serve on")
	share := fs.Float64("known-share", simulator.DefaultKnownUserShare, "share of identifiers that are known Pinterest users (what audience sizes will be made of; the events answer never depends on it)")
	latency := fs.Duration("latency", 0, "added to every answer")
	every := fs.Duration("report", 5*time.Second, "how often to print per-account counts")
	accounts := map[string]string{}
	fs.Func("account", "`AD_ACCOUNT_ID=TOKEN` accepted by the simulator (repeatable)", func(v string) error {
		id, tok, ok := strings.Cut(v, "=")
		if !ok || id == "" || tok == "" {
			return fmt.Errorf("want AD_ACCOUNT_ID=TOKEN, got %q", v)
		}
		accounts[id] = tok
		return nil
	})
	delay := fs.Duration("audience-delay", 0, "how long an audience stays INITIALIZING and how stale its size may be (Pinterest: 24-48h)")
	var apps []simApp
	fs.Func("app", "`APP_ID:APP_SECRET:REFRESH_TOKEN:AD_ACCOUNT_ID[,AD_ACCOUNT_ID...]`: an OAuth app, its first refresh token and the ad accounts it may act on (repeatable)", func(v string) error {
		f := strings.SplitN(v, ":", 4)
		if len(f) != 4 || f[0] == "" || f[1] == "" || f[2] == "" || f[3] == "" {
			return fmt.Errorf("want APP_ID:APP_SECRET:REFRESH_TOKEN:AD_ACCOUNT_ID[,...], got %d fields", len(f))
		}
		apps = append(apps, simApp{id: f[0], secret: f[1], refresh: f[2], accounts: strings.Split(f[3], ",")})
		return nil
	})
	tags := map[string][]string{}
	fs.Func("tags", "`AD_ACCOUNT_ID=TAG[,TAG...]`: the conversion tags an ad account owns (repeatable)", func(v string) error {
		id, list, ok := strings.Cut(v, "=")
		if !ok || id == "" || list == "" {
			return fmt.Errorf("want AD_ACCOUNT_ID=TAG[,TAG...], got %q", v)
		}
		tags[id] = append(tags[id], strings.Split(list, ",")...)
		return nil
	})
	if help, err := parseFlags(fs, args, stdout); help || err != nil {
		return err
	}
	if len(accounts) == 0 && len(apps) == 0 {
		return fmt.Errorf("simulator: at least one --account AD_ACCOUNT_ID=TOKEN or --app is required")
	}
	sim, err := simulator.Start(simulator.Options{Accounts: accounts, KnownUserShare: *share, Addr: *listen, AudienceDelay: *delay})
	if err != nil {
		return fmt.Errorf("simulator: %w", err)
	}
	defer sim.Close()
	ids := slices.Collect(maps.Keys(accounts))
	for _, a := range apps {
		sim.AddApp(a.id, a.secret, a.refresh, a.accounts...)
		ids = append(ids, a.accounts...)
	}
	for id, t := range tags {
		sim.SetTags(id, t...)
	}
	if *latency > 0 {
		sim.SetFault("", simulator.Fault{Latency: *latency})
	}
	fmt.Fprintf(stdout, "Pinterest simulator at %s (set CONNECTOR_PINTEREST_BASE_URL to it); Ctrl-C stops\n", sim.URL())
	slices.Sort(ids)
	ids = slices.Compact(ids)
	t := time.NewTicker(*every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			for _, id := range ids {
				st := sim.Stats(id)
				fmt.Fprintf(stdout, "%s  account %s: requests %d (401 %d, 429 %d, 400 %d), events %d, processed %d, failed %d, distinct event_ids %d\n",
					time.Now().Format(time.TimeOnly), id, st.Requests, st.Unauthorized, st.RateLimited, st.BadRequest,
					st.Events, st.Processed, st.Failed, len(sim.EventIDs(id)))
			}
		}
	}
}

// simApp is one -app flag of the simulator command.
type simApp struct {
	id, secret, refresh string
	accounts            []string
}
