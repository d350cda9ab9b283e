// Command cohort-bench measures the cohort-connector daemon end to end and
// prints the figures: a human table, then one line "BENCH {json}".
//
//	go run ./cmd/cohort-bench [-n 1000000] [-cohorts 200] [-nats-url URL] ...
//
// In one process it runs a JetStream server (embedded, unless -nats-url),
// the Pinterest simulator, and the producer; the daemon (built from
// ./cmd/cohort-connector as the Dockerfile builds it) and the reference consumer run as
// child processes, so that their CPU time and memory can be read per
// process. Phases:
//
//  1. publish -n memberships across -cohorts cohorts, one enabled
//     activation per cohort in -mode (events or customer_list), cohort c's
//     to ad account c mod -accounts;
//  2. the bare consumer: a second durable pull consumer on the same stream
//     that only fetches and acks (this binary re-executed as
//     "cohort-bench bare-consumer"), timed until it has acked every message
//     and its NumAckPending is 0;
//  3. the daemon drains the same backlog, timed from its process start until
//     the simulator has received every event (events mode) or its customer
//     lists have taken as many records as there are changes (customer_list
//     mode), and the main consumer has nothing pending;
//  4. latency: -rate new memberships a second for -latency-duration, each
//     timed from its ts to its arrival at the simulator (its event, or the
//     PATCH that adds it to its list);
//  5. SIGTERM, and the final state of the consumer and of the simulator's
//     event-id tally (events mode) or of every customer list, compared with
//     the changes published (customer_list mode).
//
// It measures and reports; it checks nothing against a threshold.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cohort-connector/cohort-connector/cohorts"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == bareCommand {
		os.Exit(runBare(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// options are the command's flags.
type options struct {
	n, cohorts      int
	accounts        int
	natsURL         string
	rate            int
	latencyDuration time.Duration
	batchSize       int
	batchPeriod     time.Duration
	skipBare        bool
	floor           string // "", or the floor consumer's acks: explicit, all or pinned
	skipLatency     bool
	keep            bool
	daemon          string
	drainTimeout    time.Duration
	mode            cohorts.Mode // every activation's
}

// lists reports whether the run is in customer_list mode.
func (o options) lists() bool { return o.mode == cohorts.ModeCustomerList }

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("cohort-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.n, "n", 1_000_000, "memberships in the backlog the daemon drains")
	fs.IntVar(&o.cohorts, "cohorts", 200, "cohorts, one enabled events activation each")
	fs.IntVar(&o.accounts, "accounts", 4, "ad accounts (1 to 26): cohort c goes to account c mod -accounts, each with its own limit of 5,000 calls a minute")
	fs.StringVar(&o.natsURL, "nats-url", "", "external NATS server with JetStream (default: an embedded one, file storage in a temp dir)")
	fs.IntVar(&o.rate, "rate", 2000, "memberships a second in the latency phase")
	fs.DurationVar(&o.latencyDuration, "latency-duration", 10*time.Second, "how long the latency phase publishes")
	fs.IntVar(&o.batchSize, "batch-size", 1000, "the daemon's CONNECTOR_BATCH_SIZE")
	fs.DurationVar(&o.batchPeriod, "batch-period", 100*time.Millisecond, "the daemon's CONNECTOR_BATCH_PERIOD")
	fs.BoolVar(&o.skipBare, "skip-bare", false, "do not run the bare consumer")
	fs.BoolVar(&o.skipLatency, "skip-latency", false, "do not run the latency phase")
	fs.StringVar(&o.floor, "floor", "", "also run the floor consumer: the bare consumer doing the work no design of the daemon can skip (metadata, decode, event id and hashes), with acks explicit (one per message), all (AckAll, one per 500 messages) or pinned (all, on a consumer with a pinned_client priority group)")
	fs.BoolVar(&o.keep, "keep", false, "keep the temp dir (daemon binary and log, JetStream storage) and, with -nats-url, the streams and buckets")
	fs.StringVar(&o.daemon, "daemon", "", "prebuilt cohort-connector binary (default: ./cmd/cohort-connector built as the Dockerfile builds it: CGO_ENABLED=0 go build -trimpath -ldflags='-s -w')")
	mode := fs.String("mode", string(cohorts.ModeEvents), "every activation's mode: events (conversion events) or customer_list (ADD/REMOVE on a customer list per activation; every account gets an OAuth app)")
	fs.DurationVar(&o.drainTimeout, "drain-timeout", 30*time.Minute, "give up a drain (bare consumer or daemon) not finished after this long")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	o.mode = cohorts.Mode(*mode)
	switch {
	case o.mode != cohorts.ModeEvents && o.mode != cohorts.ModeCustomerList:
		return o, fmt.Errorf("-mode must be %s or %s, not %q", cohorts.ModeEvents, cohorts.ModeCustomerList, *mode)
	case o.floor != "" && o.floor != floorExplicit && o.floor != floorAll && o.floor != floorPinned:
		return o, fmt.Errorf("-floor must be %s, %s or %s, not %q", floorExplicit, floorAll, floorPinned, o.floor)
	case o.n < 1:
		return o, errors.New("-n must be at least 1")
	case o.cohorts < 1:
		return o, errors.New("-cohorts must be at least 1")
	case o.accounts < 1 || o.accounts > maxAccounts:
		return o, fmt.Errorf("-accounts must be 1 to %d", maxAccounts)
	case o.rate < 1 && !o.skipLatency:
		return o, errors.New("-rate must be at least 1")
	case o.latencyDuration <= 0 && !o.skipLatency:
		return o, errors.New("-latency-duration must be positive")
	}
	return o, nil
}

// run is the whole command; it returns the exit code: 0 when every phase
// ran to its end (whatever the figures), 1 when one could not, 2 for bad
// flags.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "cohort-bench:", err)
		}
		return 2
	}
	b, err := setUp(ctx, o, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "cohort-bench:", err)
		return 1
	}
	r, err := b.measure(ctx)
	if cerr := b.close(); cerr != nil && err == nil {
		err = cerr
	}
	if r != nil {
		r.print(stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "cohort-bench:", err)
		return 1
	}
	return 0
}
