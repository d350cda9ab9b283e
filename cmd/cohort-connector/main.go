// Command cohort-connector activates audience cohorts to Pinterest in real
// time. Run with no arguments it is the daemon; its subcommands are the tools
// around it (see usage).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/cohort-connector/cohort-connector/config"
)

// Only main handles signals and exits; everything else returns errors.
func main() {
	ctx, stop := stopOnSignal()
	code := run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// stopOnSignal is a context cancelled by the first SIGINT or SIGTERM,
// which starts a graceful stop. A second one ends the process at once, for
// an operator who will not wait for the drain: what was not settled is
// redelivered after its AckWait. stop releases the signals.
func stopOnSignal() (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	released := make(chan struct{})
	go func() {
		select {
		case <-signals:
			cancel()
		case <-released:
			return
		}
		select {
		case sig := <-signals:
			fmt.Fprintf(os.Stderr, "cohort-connector: second %v: exiting without finishing the stop\n", sig)
			os.Exit(128 + int(sig.(syscall.Signal)))
		case <-released:
		}
	}()
	return ctx, func() {
		signal.Stop(signals)
		close(released)
		cancel()
	}
}

const usageHead = `cohort-connector: forwards cohort membership changes from NATS JetStream to Pinterest.

Usage:
  cohort-connector                     run the daemon (configured by CONNECTOR_* variables)
  cohort-connector demo [--duration D] run everything locally: embedded NATS, Pinterest simulator,
                                       two brands, synthetic memberships, a live delivery table
  cohort-connector activations list|get|put|enable|disable|delete ...
                                       read and toggle activations (see: activations -h)
  cohort-connector dlq list|show|replay ...
                                       inspect and replay dead letters (see: dlq -h)
  cohort-connector backfill --activation ID [--status|--cancel]
                                       rebuild an activation's cohort from the stream's history
                                       and send its members (see: backfill -h)
  cohort-connector status [--json] [--url URL]
                                       a running daemon's activations, accounts and backlog
                                       (see: status -h)
  cohort-connector doctor [--json]     check NATS, the accounts' tokens and Tag IDs, and every
                                       activation and its audience; exit 1 when a check fails
                                       (see: doctor -h)
  cohort-connector simulator --account ID=TOKEN [--listen 127.0.0.1:8080]
                                       serve the Pinterest simulator alone
  cohort-connector --version           the version, VCS revision and Go release
  cohort-connector --help              this text

`

// run is the whole program; it returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := ""
	if len(args) > 1 {
		cmd = args[1]
	}
	var err error
	switch cmd {
	case "":
		err = runDaemon(ctx, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usageHead)
		err = config.Usage(stdout)
	case "-version", "--version", "version":
		if len(args) > 2 {
			fmt.Fprintf(stderr, "cohort-connector: %s takes no arguments\n", cmd)
			return 2
		}
		fmt.Fprintln(stdout, thisBuild())
	case "demo":
		err = runDemo(ctx, args[2:], stdout, stderr)
	case "activations":
		err = runActivations(ctx, args[2:], stdout)
	case "simulator":
		err = runSimulator(ctx, args[2:], stdout, stderr)
	case "dlq":
		err = runDLQ(ctx, args[2:], stdout)
	case "status":
		err = runStatus(ctx, args[2:], stdout)
	case "backfill":
		err = runBackfill(ctx, args[2:], stdout, stderr)
	case "doctor":
		err = runDoctor(ctx, args[2:], stdout)
	default:
		fmt.Fprintf(stderr, "unknown command %q\n\n%s", cmd, usageHead)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "cohort-connector: %v\n", err)
		return 1
	}
	return 0
}
