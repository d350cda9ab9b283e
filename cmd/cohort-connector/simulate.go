package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/cohort-connector/cohort-connector/destinations/pinterest/simulator"
)

// runSimulator serves the Pinterest simulator on a fixed loopback address,
// for trying the daemon against "Pinterest" without the demo.
func runSimulator(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("simulator", flag.ContinueOnError)
	fs.SetOutput(stderr)
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
	if err := fs.Parse(args); err != nil {
		return err
	}
	if len(accounts) == 0 {
		return fmt.Errorf("simulator: at least one -account AD_ACCOUNT_ID=TOKEN is required")
	}
	sim, err := simulator.Start(simulator.Options{Accounts: accounts, KnownUserShare: *share, Addr: *listen})
	if err != nil {
		return fmt.Errorf("simulator: %w", err)
	}
	defer sim.Close()
	if *latency > 0 {
		sim.SetFault("", simulator.Fault{Latency: *latency})
	}
	fmt.Fprintf(stdout, "Pinterest simulator at %s (set CONNECTOR_PINTEREST_BASE_URL to it); Ctrl-C stops\n", sim.URL())
	ids := make([]string, 0, len(accounts))
	for id := range accounts {
		ids = append(ids, id)
	}
	sort.Strings(ids)
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
