package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cohort-connector/cohort-connector/cohorts"
)

// The bare consumer is this binary re-executed as "cohort-bench
// bare-consumer" (not in the usage: the bench starts it), so that its CPU
// time and peak RSS are its own process's.
const (
	bareCommand  = "bare-consumer"
	bareDurable  = "cohort-bench-bare"
	floorDurable = "cohort-bench-floor"
	bareDone     = "done" // the line it prints once every message is acked

	// The floor consumer's acks (-floor): pinned is all on a consumer
	// with a pinned_client priority group (one puller at a time).
	floorExplicit = "explicit"
	floorAll      = "all"
	floorPinned   = "pinned"
	ackAllEvery   = 500
	floorGroup    = "floor"
)

// runBareConsumer measures the reference (floor ""): a second durable pull consumer
// on the input stream, configured like the daemon's (deploy/nats/
// consumer.json: no filter, explicit acks, the same MaxAckPending), read
// by a child process that only fetches and acks. Its time runs from the
// child's start until it reports every message acked and the consumer's
// NumAckPending at 0; its CPU time and peak RSS are read from /proc then,
// while it waits for its stdin to close. (The rusage of its wait would not
// do for the RSS: Go runs a new child in this process's address space
// until its exec, and Linux carries that space's high-water mark into the
// child's ru_maxrss.)
//
// With floor set, it is the floor consumer instead (-floor): the same, doing
// for each message the work the daemon cannot do without whatever its
// design: read the delivery's metadata (stream sequence and delivery
// count, for settlement), decode the membership, and compute its event id
// and hashed identifiers (the event_id contract, and nothing in plain text
// leaving the process). No routing, order book, encoding, HTTP or
// settlement bookkeeping: the daemon's CPU per message cannot be below
// the floor consumer's with explicit acks. With floor "all" its consumer
// acks cumulatively (AckAll, one ack per ackAllEvery messages): the
// cheapest settlement JetStream has, for the floor of any design; with
// "pinned" its consumer also has a pinned_client priority group, which
// lets one client pull at a time: the server then adds a Nats-Pin-Id
// header to every delivery.
func (b *bench) runBareConsumer(ctx context.Context, floor string) (*bareFigures, error) {
	durable, what := bareDurable, "bare consumer (fetch and ack only)"
	if floor != "" {
		durable, what = floorDurable, "floor consumer (fetch, metadata, decode, event id and hashes; acks "+floor+")"
	}
	b.progress("%s: %d messages", what, b.o.n)
	stream, err := b.js.Stream(ctx, b.defs.stream.Name)
	if err != nil {
		return nil, err
	}
	cc := b.defs.consumer
	cc.Durable = durable
	cc.Description = "cohort-bench: " + what
	if floor == floorAll || floor == floorPinned {
		cc.AckPolicy = jetstream.AckAllPolicy
	}
	if floor == floorPinned {
		cc.PriorityGroups = []string{floorGroup}
		cc.PriorityPolicy = jetstream.PriorityPolicyPinned
		cc.PinnedTTL = time.Minute
	}
	if _, err := stream.CreateConsumer(ctx, cc); err != nil {
		return nil, err
	}
	defer func() { _ = stream.DeleteConsumer(context.Background(), durable) }()

	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, exe, bareCommand, "-nats-url", b.url, "-stream", b.defs.stream.Name,
		"-durable", durable, "-n", strconv.Itoa(b.o.n), "-pull-max", strconv.Itoa(pullMax(b.o.batchSize)),
		"-timeout", b.o.drainTimeout.String(), "-floor="+floor)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	var took time.Duration
	var at procSample
	var procErr error
	for sc := bufio.NewScanner(out); sc.Scan(); {
		if sc.Text() == bareDone && took == 0 {
			took = time.Since(start)
			// The child waits for its stdin to close: sample it alive.
			at, procErr = readProc(cmd.Process.Pid)
			in.Close()
		}
	}
	in.Close()
	if err := cmd.Wait(); err != nil || took == 0 {
		return nil, fmt.Errorf("%s: %v\n%s", what, err, stderr.String())
	}
	if procErr != nil {
		return nil, procErr
	}
	return &bareFigures{took: took, cpu: at.cpu, hwmKiB: at.hwmKiB}, nil
}

// pullMax is the daemon's pull size (connector/source.go): the bare
// consumer asks for as many messages at a time.
func pullMax(batchSize int) int { return max(2*batchSize, 256) }

// runBare is the bare-consumer child process; it returns its exit code.
func runBare(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(bareCommand, flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("nats-url", "", "NATS server")
	stream := fs.String("stream", "", "stream")
	durable := fs.String("durable", "", "durable pull consumer")
	n := fs.Int("n", 0, "messages to ack")
	pull := fs.Int("pull-max", 2000, "messages asked for at a time")
	timeout := fs.Duration("timeout", 30*time.Minute, "give up after this long")
	floor := fs.String("floor", "", "also read each message's metadata, decode it and compute its event id and hashes; acks explicit, all (one per ackAllEvery) or pinned (all, and a pinned_client priority group)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	done := func() {
		fmt.Fprintln(stdout, bareDone)
		_, _ = io.Copy(io.Discard, stdin) // until the bench has sampled us
	}
	if err := ackAll(ctx, *url, *stream, *durable, *n, *pull, *floor, done); err != nil {
		fmt.Fprintln(stderr, "bare consumer:", err)
		return 1
	}
	return 0
}

// ackAll consumes the durable with Consume, acks every message with
// msg.Ack() (after floorWork with floor set; with floor "all" or "pinned"
// only every ackAllEvery-th and the last), and once it has seen n and the server
// counts none pending and none awaiting an ack, calls done (still
// connected and consuming).
func ackAll(ctx context.Context, url, stream, durable string, n, pull int, floor string, done func()) error {
	nc, err := nats.Connect(url, nats.Name("cohort-bench-bare"))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	c, err := js.Consumer(ctx, stream, durable)
	if err != nil {
		return err
	}
	var seen, ackErrs, workErrs atomic.Int64
	all := make(chan struct{})
	opts := []jetstream.PullConsumeOpt{jetstream.PullMaxMessages(pull)}
	if floor == floorPinned {
		opts = append(opts, jetstream.PullPriorityGroup(floorGroup))
	}
	cc, err := c.Consume(func(msg jetstream.Msg) {
		if floor != "" && floorWork(msg) != nil {
			workErrs.Add(1)
		}
		k := seen.Add(1)
		cumulative := floor == floorAll || floor == floorPinned
		if (!cumulative || k%ackAllEvery == 0 || k == int64(n)) && msg.Ack() != nil {
			ackErrs.Add(1)
		}
		if k == int64(n) {
			close(all)
		}
	}, opts...)
	if err != nil {
		return err
	}
	defer cc.Stop()
	select {
	case <-all:
	case <-ctx.Done():
		return fmt.Errorf("saw %d of %d messages: %w", seen.Load(), n, ctx.Err())
	}
	if k := ackErrs.Load(); k > 0 {
		return fmt.Errorf("%d acks could not be sent", k)
	}
	if k := workErrs.Load(); k > 0 {
		return fmt.Errorf("%d messages could not be read or decoded", k)
	}
	if err := nc.Flush(); err != nil {
		return err
	}
	err = poll(ctx, time.Minute, 5*time.Millisecond, func() (bool, error) {
		ci, err := c.Info(ctx)
		if err != nil {
			return false, fmt.Errorf("consumer info: %w", err)
		}
		return ci.NumPending == 0 && ci.NumAckPending == 0, nil
	})
	if err != nil {
		return err
	}
	done()
	return nil
}

// floorWork is the floor consumer's work for one message: what the daemon
// does for every message whatever its design (see runBareConsumer).
func floorWork(msg jetstream.Msg) error {
	if _, err := msg.Metadata(); err != nil {
		return err
	}
	m, err := cohorts.Decode(msg.Data(), time.Now())
	if err != nil {
		return err
	}
	eventID, h := m.Prepare()
	if eventID == "" || h.Em == "" {
		return fmt.Errorf("no event id or hashed email for %q", msg.Data())
	}
	return nil
}
