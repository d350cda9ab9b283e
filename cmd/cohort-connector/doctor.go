package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/cohort-connector/cohort-connector/config"
	"github.com/cohort-connector/cohort-connector/connector"
)

// cohort-connector doctor: a checklist of what the daemon needs, each line
// OK, WARN or FAIL with the fix, run with the daemon's configuration. It
// reads and does not change anything, with two exceptions a running
// replica would make too: an OAuth token keeper that finds its access
// token expired refreshes it (storing the rotated refresh token in the
// state bucket, as the daemon does), and each account is sent one event
// with ?test=true (Pinterest checks it and records nothing).

// Finding states. Only FAIL makes doctor exit non-zero.
const (
	findingOK   = "OK"
	findingWarn = "WARN"
	findingFail = "FAIL"
)

// finding is one line of the checklist: what was checked, what was found
// and, when it is not OK, what to do.
type finding struct {
	State  string `json:"state"`
	Name   string `json:"name"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

func okFinding(name, format string, args ...any) finding {
	return finding{State: findingOK, Name: name, Detail: fmt.Sprintf(format, args...)}
}

func warnFinding(name, fix, format string, args ...any) finding {
	return finding{State: findingWarn, Name: name, Detail: fmt.Sprintf(format, args...), Fix: fix}
}

func failFinding(name, fix, format string, args ...any) finding {
	return finding{State: findingFail, Name: name, Detail: fmt.Sprintf(format, args...), Fix: fix}
}

const doctorHead = `Usage: cohort-connector doctor [flags]

Checks what the daemon needs, with the daemon's configuration (the same
CONNECTOR_* variables): NATS, the stream, consumer, dead-letter stream and
KV buckets and their settings; each ad account's token (one event sent with
?test=true, which Pinterest does not record), OAuth refresh and conversion
tags; each activation's Tag ID and ad account; each enabled activation's
audience in Pinterest, its status and match rate. Each line is OK, WARN or
FAIL with the fix; the exit status is 1 when a line is FAIL.`

// doctorOptions are doctor's flags.
type doctorOptions struct {
	// history is the stream history a backfill must find (a MaxAge below
	// it fails).
	history time.Duration
	// minMatchRate: a READY audience whose size is below this share of
	// the users sent fails ("much smaller than the cohort").
	minMatchRate float64
	// minUsers: below this many users sent the match rate is not judged.
	minUsers uint64
}

func runDoctor(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	usage(fs, doctorHead)
	var o doctorOptions
	fs.DurationVar(&o.history, "history", 7*24*time.Hour, "the stream history a backfill must find: a stream MaxAge below it fails")
	fs.Float64Var(&o.minMatchRate, "min-match-rate", 0.2, "a READY audience smaller than this share of the users sent fails")
	fs.Uint64Var(&o.minUsers, "min-users", 100, "users sent below which the match rate is not judged")
	asJSON := fs.Bool("json", false, "print the findings as JSON")
	if help, err := parseFlags(fs, args, stdout); help || err != nil {
		return err
	}
	if o.minMatchRate < 0 || o.minMatchRate > 1 {
		return fmt.Errorf("doctor: --min-match-rate must be between 0 and 1, got %g", o.minMatchRate)
	}
	cfg, err := config.Load()
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	found := examine(ctx, cfg, o)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(found)
	} else {
		printFindings(stdout, found)
	}
	if err != nil {
		return err
	}
	if n := countState(found, findingFail); n > 0 {
		return fmt.Errorf("doctor: %d of %d checks failed", n, len(found))
	}
	return nil
}

// examine runs every check in order: NATS and its objects, then the ad
// accounts, then the activations (which use what the accounts' checks
// learnt). Without NATS only the checks that do not need it run.
func examine(ctx context.Context, cfg config.Config, o doctorOptions) []finding {
	nc, js, found := checkNATS(ctx, cfg)
	if nc != nil {
		defer nc.Close()
	}
	var objs *connector.Objects
	if js != nil {
		var more []finding
		objs, more = checkObjects(ctx, js, cfg, o)
		found = append(found, more...)
	}
	p, err := newPinterestView(ctx, cfg, objs)
	if err != nil {
		return append(found, failFinding("pinterest client", "fix the variable the error names", "%v", err))
	}
	found = append(found, p.checkAccounts(ctx)...)
	if objs == nil {
		return append(found, warnFinding("activations", "make NATS reachable, then run doctor again", "not checked: they are read from NATS"))
	}
	return append(found, p.checkActivations(ctx, objs, o)...)
}

// checkNATS connects as the daemon's commands do and checks that
// JetStream answers.
func checkNATS(ctx context.Context, cfg config.Config) (*nats.Conn, jetstream.JetStream, []finding) {
	const name = "nats"
	nc, js, err := connectJetStream(cfg, "cohort-connector doctor")
	if err != nil {
		return nil, nil, []finding{failFinding(name, "start nats-server with -js, or set CONNECTOR_NATS_URL (and its credentials) to the server the daemon uses", "%v", err)}
	}
	info, err := js.AccountInfo(ctx)
	if err != nil {
		nc.Close()
		return nil, nil, []finding{failFinding(name, "enable JetStream on the server (nats-server -js) or for this account", "connected to %s, but JetStream does not answer: %v", redactURL(nc.ConnectedUrl()), err)}
	}
	return nc, js, []finding{okFinding(name, "%s: server %s, JetStream with %d streams", redactURL(nc.ConnectedUrl()), nc.ConnectedServerVersion(), info.Streams)}
}

// newPinterestView builds the daemon's credentials and Pinterest client:
// OAuth token keepers on the state bucket when there is one (objs nil:
// NATS is unreachable). Without it the OAuth apps are left out, and their
// checks say why; the conversion tokens are still checked.
func newPinterestView(_ context.Context, cfg config.Config, objs *connector.Objects) (*pinterestView, error) {
	d := &daemon{cfg: cfg, log: zerolog.Nop(), reg: prometheus.NewRegistry(), objs: objs}
	if objs == nil || objs.State == nil {
		d.objs = &connector.Objects{}
		d.cfg.AccountList = slices.Clone(cfg.AccountList)
		for i := range d.cfg.AccountList {
			d.cfg.AccountList[i].AppID = ""
		}
	}
	if err := d.connectPinterest(nil); err != nil {
		return nil, err
	}
	return &pinterestView{cfg: cfg, client: d.client, creds: d.creds, tags: map[string]map[string]string{}}, nil
}

func countState(found []finding, state string) int {
	n := 0
	for _, f := range found {
		if f.State == state {
			n++
		}
	}
	return n
}

// printFindings prints one line per finding, its fix indented below, and
// a summary.
func printFindings(w io.Writer, found []finding) {
	width := 0
	for _, f := range found {
		width = max(width, utf8.RuneCountInString(f.Name))
	}
	for _, f := range found {
		fmt.Fprintf(w, "%-4s  %-*s  %s\n", f.State, width, f.Name, f.Detail)
		if f.Fix != "" {
			fmt.Fprintf(w, "      fix: %s\n", f.Fix)
		}
	}
	fmt.Fprintf(w, "%d checks: %d ok, %d warnings, %d failed\n", len(found),
		countState(found, findingOK), countState(found, findingWarn), countState(found, findingFail))
}

// errNotFound reports whether err says a JetStream object does not exist.
func errNotFound(err error) bool {
	return errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrConsumerNotFound) ||
		errors.Is(err, jetstream.ErrBucketNotFound)
}
