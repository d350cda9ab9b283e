package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cohort-connector/cohort-connector/config"
	"github.com/cohort-connector/cohort-connector/connector"
)

const dlqUsage = `Usage: cohort-connector dlq COMMAND

Reads the dead-letter stream (CONNECTOR_DLQ_STREAM) on CONNECTOR_NATS_URL
(empty: the daemon's embedded server at CONNECTOR_EMBEDDED_NATS_LISTEN) and
replays dead letters to the input stream (CONNECTOR_STREAM). Needs the
NATS settings only, no Pinterest credential. Each command reads up to the
last dead letter present when it starts.

Commands:
  list [--reason R] [--since T] [--limit N]
        one line per dead letter, oldest first: DLQ sequence, time, reason,
        original subject and sequence, deliveries, detail (truncated);
        the N most recent that match (default 100, 0 for all)
  show SEQ
        headers and body of the dead letter at DLQ sequence SEQ
  replay [--reason R] [--since T] [--seq N] [--dry-run]
        move dead letters back to the input stream: re-publish each original
        body, with its original headers (not Dlq-* or Nats-*), to its
        original subject (Dlq-Original-Subject) on the input stream, and once
        JetStream has acknowledged it, delete the dead letter. A replayed
        message that fails again comes back as one new dead letter, so
        replaying never multiplies letters. Each is published with
        Nats-Msg-Id "replay:<DLQ sequence>": a letter whose replay was
        published by an earlier, interrupted replay (within the input
        stream's duplicate window, 2m) is not published twice, only deleted;
        Pinterest deduplicates on event_id (derived from the body) anyway.
        A letter without Dlq-Original-Subject is skipped and kept. The
        summary counts what was published, deleted and skipped.
        --dry-run lists what would be replayed and changes nothing.

  R is a reason (malformed_json, max_deliveries, rejected_by_pinterest, ...).
  T is an RFC 3339 time (2026-11-22T19:00:00Z) or a duration back from now
  (90m, 2h, 3d). --seq selects one dead letter by its DLQ sequence.

Examples:
  cohort-connector dlq list --reason max_deliveries --since 2h
  cohort-connector dlq show 42
  cohort-connector dlq replay --reason max_deliveries --since 2h --dry-run
`

// dlqSelection is which dead letters a list or replay considers.
type dlqSelection struct {
	reason string
	since  time.Time // zero: from the first
	seq    uint64    // 0: every sequence
}

func (s dlqSelection) matches(dl deadLetterMsg, dlqSubject string) bool {
	return (s.reason == "" || dl.reason(dlqSubject) == s.reason) &&
		(s.seq == 0 || dl.Seq == s.seq) &&
		(s.since.IsZero() || !dl.Time.Before(s.since))
}

// deadLetterMsg is one message of the dead-letter stream.
type deadLetterMsg struct {
	Seq     uint64
	Time    time.Time
	Subject string
	Header  nats.Header
	Data    []byte
}

// reason is Dlq-Reason, or the last token of the DLQ subject.
func (d deadLetterMsg) reason(dlqSubject string) string {
	if r := d.Header.Get(connector.HeaderDLQReason); r != "" {
		return r
	}
	return strings.TrimPrefix(d.Subject, dlqSubject+".")
}

func runDLQ(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || asksForHelp(args) {
		fmt.Fprint(stdout, dlqUsage)
		return nil
	}
	// Parse before loading the configuration and connecting.
	cmd, rest := args[0], args[1:]
	fs := flag.NewFlagSet("dlq "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var sel dlqSelection
	var since string
	var limit int
	var dryRun bool
	switch cmd {
	case "list":
		fs.StringVar(&sel.reason, "reason", "", "")
		fs.StringVar(&since, "since", "", "")
		fs.IntVar(&limit, "limit", 100, "")
	case "replay":
		fs.StringVar(&sel.reason, "reason", "", "")
		fs.StringVar(&since, "since", "", "")
		fs.Uint64Var(&sel.seq, "seq", 0, "")
		fs.BoolVar(&dryRun, "dry-run", false, "")
	case "show":
	default:
		return fmt.Errorf("unknown dlq command %q\n\n%s", cmd, dlqUsage)
	}
	if err := fs.Parse(rest); err != nil {
		return fmt.Errorf("dlq %s: %w", cmd, err)
	}
	if sel.reason != "" && !slices.Contains(connector.DeadLetterReasons(), sel.reason) {
		return fmt.Errorf("dlq %s: --reason %q is not a dead-letter reason; one of: %s", cmd, sel.reason,
			strings.Join(connector.DeadLetterReasons(), ", "))
	}
	var showSeq uint64
	var err error
	switch {
	case cmd == "show":
		if fs.NArg() != 1 {
			return errors.New("dlq show takes exactly one DLQ sequence")
		}
		if showSeq, err = strconv.ParseUint(fs.Arg(0), 10, 64); err != nil || showSeq == 0 {
			return fmt.Errorf("dlq show: %q is not a DLQ sequence", fs.Arg(0))
		}
	case fs.NArg() != 0:
		return fmt.Errorf("dlq %s: unexpected argument %q", cmd, fs.Arg(0))
	case limit < 0:
		return errors.New("dlq list: --limit must be 0 (all) or more")
	}
	if sel.since, err = parseSince(since, time.Now()); err != nil {
		return fmt.Errorf("dlq %s: %w", cmd, err)
	}

	cfg, err := config.LoadForReading() // NATS only: no Pinterest credential
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	nc, js, err := connectJetStream(cfg, "cohort-connector dlq")
	if err != nil {
		return err
	}
	defer nc.Close()
	lookupCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	dlq, err := js.Stream(lookupCtx, cfg.DLQStream)
	if err != nil {
		return fmt.Errorf("opening dead-letter stream %s (start the daemon once, or create it from deploy/nats): %w", cfg.DLQStream, err)
	}
	switch cmd {
	case "list":
		return listDLQ(ctx, dlq, cfg.DLQSubject, sel, limit, stdout)
	case "show":
		return showDLQ(lookupCtx, dlq, showSeq, stdout)
	default:
		return replayDLQ(ctx, js, dlq, cfg, sel, dryRun, stdout)
	}
}

// connectJetStream is connectNATS and its JetStream context; close the
// connection when done.
func connectJetStream(cfg config.Config, name string) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := connectNATS(cfg, name)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// connectNATS connects a one-shot command to CONNECTOR_NATS_URL, or to the
// daemon's embedded server at CONNECTOR_EMBEDDED_NATS_LISTEN when it is
// empty, with the daemon's auth and TLS (natsOptions); it fails fast rather
// than reconnecting forever.
func connectNATS(cfg config.Config, name string) (*nats.Conn, error) {
	url := cfg.NATSURL
	if url == "" {
		url = "nats://" + cfg.EmbeddedListen
	}
	opts, err := natsOptions(cfg, name)
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(url, append(opts, nats.Timeout(5*time.Second), nats.MaxReconnects(0))...)
	if err != nil {
		return nil, fmt.Errorf("connecting to NATS at %s: %w", redactURL(url), err)
	}
	return nc, nil
}

// parseSince reads --since: an RFC 3339 time, or a duration back from now
// (Go syntax, plus whole days such as 3d). Empty is the zero time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		if days, err := strconv.Atoi(n); err == nil && days >= 0 {
			return now.AddDate(0, 0, -days), nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("--since %q: want an RFC 3339 time (2026-11-22T19:00:00Z) or a duration such as 2h", s)
	}
	return now.Add(-d), nil
}

// readDLQ calls fn for every dead letter selected by sel, in sequence order,
// up to the stream's last sequence when it is called (messages added
// meanwhile are not read, and it never waits for new ones). It reads with
// an ordered consumer, starting at sel.seq or sel.since when given.
func readDLQ(ctx context.Context, dlq jetstream.Stream, dlqSubject string, sel dlqSelection, fn func(deadLetterMsg) error) error {
	info, err := dlq.Info(ctx)
	if err != nil {
		return fmt.Errorf("dead-letter stream info: %w", err)
	}
	last := info.State.LastSeq
	if info.State.Msgs == 0 || (sel.seq != 0 && (sel.seq > last || sel.seq < info.State.FirstSeq)) {
		return nil
	}
	occ := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	switch {
	case sel.seq != 0:
		occ.DeliverPolicy, occ.OptStartSeq = jetstream.DeliverByStartSequencePolicy, sel.seq
	case !sel.since.IsZero():
		since := sel.since
		occ.DeliverPolicy, occ.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
	}
	cons, err := dlq.OrderedConsumer(ctx, occ)
	if err != nil {
		return fmt.Errorf("reading dead-letter stream: %w", err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("reading dead-letter stream: %w", err)
	}
	defer it.Stop()
	if ci := cons.CachedInfo(); ci != nil && ci.NumPending == 0 {
		return nil // nothing at or after the start
	}
	for {
		// Bounded: the messages counted above are there, unless deleted
		// meanwhile; a stall is an error, never a hang.
		nextCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		m, err := it.Next(jetstream.NextContext(nextCtx))
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("reading dead-letter stream: %w", err)
		}
		meta, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("reading dead-letter stream: %w", err)
		}
		seq := meta.Sequence.Stream
		if seq > last {
			return nil
		}
		dl := deadLetterMsg{Seq: seq, Time: meta.Timestamp, Subject: m.Subject(), Header: m.Headers(), Data: m.Data()}
		if sel.matches(dl, dlqSubject) {
			if err := fn(dl); err != nil {
				return err
			}
		}
		if seq >= last || meta.NumPending == 0 || (sel.seq != 0 && seq >= sel.seq) {
			return nil
		}
	}
}

func listDLQ(ctx context.Context, dlq jetstream.Stream, dlqSubject string, sel dlqSelection, limit int, stdout io.Writer) error {
	var rows []deadLetterMsg
	matched := 0
	err := readDLQ(ctx, dlq, dlqSubject, sel, func(dl deadLetterMsg) error {
		matched++
		dl.Data = nil // not shown
		rows = append(rows, dl)
		if limit > 0 && len(rows) > limit {
			rows = slices.Delete(rows, 0, 1)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if matched == 0 {
		_, err := fmt.Fprintln(stdout, "no dead letters match")
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tREASON\tORIGINAL_SUBJECT\tORIGINAL_SEQ\tDELIVERIES\tDETAIL")
	for _, dl := range rows {
		h := dl.Header
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", dl.Seq, dl.Time.UTC().Format(time.RFC3339), dl.reason(dlqSubject),
			h.Get(connector.HeaderDLQSubject), h.Get(connector.HeaderDLQSequence), h.Get(connector.HeaderDLQDeliveries),
			truncate(h.Get(connector.HeaderDLQDetail), 60))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(rows) < matched {
		fmt.Fprintf(stdout, "(the %d most recent of %d; --limit 0 lists all)\n", len(rows), matched)
	}
	return nil
}

// truncate shortens s to at most n runes, marking the cut with "…".
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

func showDLQ(ctx context.Context, dlq jetstream.Stream, seq uint64, stdout io.Writer) error {
	m, err := dlq.GetMsg(ctx, seq)
	if err != nil {
		return fmt.Errorf("dead letter %d: %w", seq, err)
	}
	fmt.Fprintf(stdout, "sequence: %d\nsubject:  %s\ntime:     %s\nheaders:\n", m.Sequence, m.Subject, m.Time.UTC().Format(time.RFC3339Nano))
	keys := make([]string, 0, len(m.Header))
	for k := range m.Header {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range m.Header[k] {
			fmt.Fprintf(stdout, "  %s: %s\n", k, v)
		}
	}
	if utf8.Valid(m.Data) {
		_, err = fmt.Fprintf(stdout, "body (%d bytes):\n%s\n", len(m.Data), m.Data)
	} else {
		_, err = fmt.Fprintf(stdout, "body (%d bytes, not UTF-8, Go-quoted):\n%q\n", len(m.Data), m.Data)
	}
	return err
}

// replayMsg is the input-stream message that replays dl: its original
// subject and body, its headers except Dlq-* and Nats-* ones, and
// Nats-Msg-Id "replay:<DLQ sequence>".
func replayMsg(dl deadLetterMsg) *nats.Msg {
	out := nats.NewMsg(dl.Header.Get(connector.HeaderDLQSubject))
	out.Data = dl.Data
	for k, vs := range dl.Header {
		if ck := http.CanonicalHeaderKey(k); strings.HasPrefix(ck, "Dlq-") || strings.HasPrefix(ck, "Nats-") {
			continue
		}
		for _, v := range vs {
			out.Header.Add(k, v)
		}
	}
	out.Header.Set(jetstream.MsgIDHeader, "replay:"+strconv.FormatUint(dl.Seq, 10))
	return out
}

// replayDLQ moves the selected dead letters to the input stream: publish,
// await the PubAck, then delete the letter. It prints what it did, also
// when it stops on an error: the counts are of what really happened.
func replayDLQ(ctx context.Context, js jetstream.JetStream, dlq jetstream.Stream, cfg config.Config, sel dlqSelection,
	dryRun bool, stdout io.Writer) error {
	var (
		matched   int
		published int // published now and deleted
		earlier   int // published by an earlier replay (duplicate), deleted now
		kept      int // published (now or earlier), but the delete failed
		skipped   int // no original subject: not published, kept
	)
	var tw *tabwriter.Writer
	if dryRun {
		tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SEQ\tREASON\tTO_SUBJECT\tBYTES")
	}
	err := readDLQ(ctx, dlq, cfg.DLQSubject, sel, func(dl deadLetterMsg) error {
		matched++
		subject := dl.Header.Get(connector.HeaderDLQSubject)
		if subject == "" {
			skipped++
			fmt.Fprintf(stdout, "skipped %d: no %s header, kept\n", dl.Seq, connector.HeaderDLQSubject)
			return nil
		}
		if dryRun {
			published++
			fmt.Fprintf(tw, "%d\t%s\t%s\t%d\n", dl.Seq, dl.reason(cfg.DLQSubject), subject, len(dl.Data))
			return nil
		}
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		ack, err := js.PublishMsg(pctx, replayMsg(dl), jetstream.WithExpectStream(cfg.Stream))
		if err != nil {
			return fmt.Errorf("replaying dead letter %d to %s (not published, kept): %w", dl.Seq, subject, err)
		}
		// Only after the PubAck: the message is safe in the input stream.
		if err := dlq.DeleteMsg(pctx, dl.Seq); err != nil {
			kept++
			return fmt.Errorf("dead letter %d replayed, but not deleted from %s (replaying it again within 2m publishes nothing): %w",
				dl.Seq, cfg.DLQStream, err)
		}
		if ack.Duplicate {
			earlier++
		} else {
			published++
		}
		return nil
	})
	if err == nil && sel.seq != 0 && matched == 0 {
		return fmt.Errorf("no dead letter %d in %s (or it does not match --reason/--since)", sel.seq, cfg.DLQStream)
	}
	if dryRun {
		if published > 0 {
			_ = tw.Flush()
		}
		fmt.Fprintf(stdout, "dry run: %d dead letters would be published to stream %s and deleted from %s, %d skipped; nothing changed\n",
			published, cfg.Stream, cfg.DLQStream, skipped)
		return err
	}
	fmt.Fprintf(stdout, "replay: %d dead letters published to stream %s and deleted from %s", published, cfg.Stream, cfg.DLQStream)
	if earlier > 0 {
		fmt.Fprintf(stdout, "; %d already published by an earlier replay (duplicate window), not published again, deleted now", earlier)
	}
	if kept > 0 {
		fmt.Fprintf(stdout, "; %d published but not deleted", kept)
	}
	if skipped > 0 {
		fmt.Fprintf(stdout, "; %d skipped and kept", skipped)
	}
	if err != nil {
		fmt.Fprint(stdout, "; stopped on an error")
	}
	fmt.Fprintln(stdout)
	return err
}
