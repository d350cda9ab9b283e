package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"runtime"
	"text/tabwriter"
	"time"
)

// results are a run's figures; nil parts were not measured (-skip-bare,
// -floor, -skip-latency).
type results struct {
	o options

	publishMsgsPerS float64
	msgBytes        float64 // average size of a backlog message

	bare    *bareFigures
	floor   *bareFigures // the floor consumer's (-floor)
	drain   drainFigures
	latency *latencyFigures
	calls   *callFigures

	exitCode  int   // the daemon's, after SIGTERM
	runHWMKiB int64 // the daemon's peak RSS from its start to SIGTERM

	pending        uint64 // main consumer after the daemon's exit
	ackPending     int
	events         int64  // events the simulator received (duplicates included)
	distinct       int    // distinct event ids among them
	backlogMissing int    // backlog event ids never received, or backlog changes not applied to their list
	rateLimited    int64  // calls answered 429
	parked         uint64 // copies parked during the run

	lists *listFigures // customer_list mode; nil in events mode
}

// bareFigures are the bare consumer's (or the floor consumer's).
type bareFigures struct {
	took   time.Duration
	cpu    time.Duration // its CPU time when done (startup included)
	hwmKiB int64         // its peak RSS when done
}

func (r *results) msgsPerS() float64 { return float64(r.o.n) / r.drain.took.Seconds() }
func (r *results) bareMsgsPerS() float64 {
	return float64(r.o.n) / r.bare.took.Seconds()
}
func (r *results) floorMsgsPerS() float64 { return float64(r.o.n) / r.floor.took.Seconds() }

// usPerMsg is CPU time per backlog message in microseconds.
func (r *results) usPerMsg(cpu time.Duration) float64 {
	return float64(cpu.Microseconds()) / float64(r.o.n)
}

// duplicates are events received − distinct event ids, or in
// customer_list mode records the lists took − distinct records.
func (r *results) duplicates() int64 {
	if r.lists != nil {
		return r.lists.records - int64(r.lists.distinct)
	}
	return r.events - int64(r.distinct)
}

// lost is every change that never arrived: latency-phase ones not at the
// simulator within lostAfter of the last publish, and backlog ones; in
// customer_list mode also the list members no change accounts for (any
// mismatch of a list counts).
func (r *results) lost() int {
	n := r.backlogMissing
	if r.latency != nil {
		n += r.latency.lost
	}
	if r.lists != nil {
		n += r.lists.unexpected
	}
	return n
}

// benchLine is the machine-readable line's JSON; null marks a figure not
// measured (or not of this mode). "mb" figures are MiB (2^20 bytes); ratio
// is daemon ÷ bare consumer msgs/s; lost adds the latency phase's lost
// changes and the backlog's changes never received (events mode) or not
// applied to their list, plus the list members no change accounts for
// (customer_list mode).
type benchLine struct {
	Mode            string   `json:"mode"`
	N               int      `json:"n"`
	Cohorts         int      `json:"cohorts"`
	Accounts        int      `json:"accounts"`
	MsgsPerS        float64  `json:"msgs_per_s"`
	BareMsgsPerS    *float64 `json:"bare_msgs_per_s"`
	Ratio           *float64 `json:"ratio"`
	PeakRSSMB       float64  `json:"peak_rss_mb"`
	CPUUsPerMsg     float64  `json:"cpu_us_per_msg"`
	BareCPUUsPerMsg *float64 `json:"bare_cpu_us_per_msg"`
	BarePeakRSSMB   *float64 `json:"bare_peak_rss_mb"`
	P50Ms           *float64 `json:"p50_ms"`
	P90Ms           *float64 `json:"p90_ms"`
	P99Ms           *float64 `json:"p99_ms"`
	MaxMs           *float64 `json:"max_ms"`
	CallsPerMinMax  *int64   `json:"calls_per_min_max"`
	Duplicates      int64    `json:"duplicates"`
	Pending         uint64   `json:"pending"`
	AckPending      int      `json:"ack_pending"`
	Lost            int      `json:"lost"`
	GoVersion       string   `json:"go_version"`
	Cores           int      `json:"cores"`

	// Beyond the figures above: what qualifies them.
	CallsWindowS *float64 `json:"calls_window_s"`  // the span calls_per_min_max covers: 60, or the run when shorter
	CallsDrain   int64    `json:"calls_drain"`     // Pinterest calls until the backlog was drained
	PeakRSSMBRun float64  `json:"peak_rss_mb_run"` // from start to SIGTERM, not only the drain
	DrainS       float64  `json:"drain_s"`
	BareS        *float64 `json:"bare_s"`
	// The floor consumer's (-floor; see runBareConsumer).
	FloorMsgsPerS    *float64 `json:"floor_msgs_per_s"`
	FloorCPUUsPerMsg *float64 `json:"floor_cpu_us_per_msg"`
	PublishMsgsPerS  float64  `json:"publish_msgs_per_s"`
	MsgBytes         float64  `json:"msg_bytes"`
	BacklogMissing   int      `json:"backlog_missing"`
	LatencyPublished int      `json:"latency_published"`
	RateLimited      int64    `json:"rate_limited"`
	DaemonExitCode   int      `json:"daemon_exit_code"`
	Parked           uint64   `json:"parked"` // copies parked (an account failing or congested), whole run
	BatchSize        int      `json:"batch_size"`
	BatchPeriodMs    float64  `json:"batch_period_ms"`
	Rate             int      `json:"rate"`
	// customer_list mode only: PATCHes answered 200 during the drain, the
	// records the lists took (whole run) and their members no change
	// accounts for.
	ListUpdatesDrain *int64 `json:"list_updates_drain"`
	ListRecords      *int64 `json:"list_records"`
	ListUnexpected   *int   `json:"list_unexpected"`
}

func (r *results) line() benchLine {
	l := benchLine{
		Mode: string(r.o.mode), N: r.o.n, Cohorts: r.o.cohorts, Accounts: r.o.accounts,
		MsgsPerS:    round(r.msgsPerS(), 1),
		PeakRSSMB:   round(mib(r.drain.hwmKiB), 1),
		CPUUsPerMsg: round(r.usPerMsg(r.drain.cpu), 3),
		Duplicates:  r.duplicates(), Pending: r.pending, AckPending: r.ackPending, Lost: r.lost(),
		GoVersion: runtime.Version(), Cores: runtime.NumCPU(),

		PeakRSSMBRun: round(mib(r.runHWMKiB), 1), DrainS: round(r.drain.took.Seconds(), 3),
		PublishMsgsPerS: round(r.publishMsgsPerS, 1), MsgBytes: round(r.msgBytes, 1),
		CallsDrain:     r.drain.calls,
		BacklogMissing: r.backlogMissing, RateLimited: r.rateLimited, DaemonExitCode: r.exitCode, Parked: r.parked,
		BatchSize: r.o.batchSize, BatchPeriodMs: float64(r.o.batchPeriod.Microseconds()) / 1000, Rate: r.o.rate,
	}
	if r.bare != nil {
		l.BareMsgsPerS = ptr(round(r.bareMsgsPerS(), 1))
		l.Ratio = ptr(round(r.msgsPerS()/r.bareMsgsPerS(), 4))
		l.BareCPUUsPerMsg = ptr(round(r.usPerMsg(r.bare.cpu), 3))
		l.BarePeakRSSMB = ptr(round(mib(r.bare.hwmKiB), 1))
		l.BareS = ptr(round(r.bare.took.Seconds(), 3))
	}
	if r.floor != nil {
		l.FloorMsgsPerS = ptr(round(r.floorMsgsPerS(), 1))
		l.FloorCPUUsPerMsg = ptr(round(r.usPerMsg(r.floor.cpu), 3))
	}
	if f := r.latency; f != nil {
		l.LatencyPublished = f.published
		if f.arrived > 0 {
			l.P50Ms, l.P90Ms, l.P99Ms, l.MaxMs = ptr(ms(f.p50)), ptr(ms(f.p90)), ptr(ms(f.p99)), ptr(ms(f.max))
		}
	}
	if r.lists != nil {
		l.ListUpdatesDrain = ptr(r.drain.listUpdates)
		l.ListRecords = ptr(r.lists.records)
		l.ListUnexpected = ptr(r.lists.unexpected)
	}
	if r.calls != nil {
		l.CallsPerMinMax = ptr(r.calls.calls)
		l.CallsWindowS = ptr(round(r.calls.window.Seconds(), 1))
	}
	return l
}

// print writes the table, then the line "BENCH {json}".
func (r *results) print(w io.Writer) {
	r.table(w)
	data, err := json.Marshal(r.line())
	if err != nil {
		panic(err) // plain numbers and strings: cannot fail
	}
	fmt.Fprintf(w, "\nBENCH %s\n", data)
}

func (r *results) table(out io.Writer) {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	defer w.Flush()
	row := func(measure, bare, daemon string) { fmt.Fprintf(w, "%s\t%s\t%s\n", measure, bare, daemon) }
	bareOr := func(f func(*bareFigures) string) string {
		if r.bare == nil {
			return "(skipped)"
		}
		return f(r.bare)
	}
	row("measure", "bare consumer", "daemon")
	row("mode of every activation", "", string(r.o.mode))
	row(fmt.Sprintf("ad accounts (cohort c goes to account c mod %d)", r.o.accounts), "", fmt.Sprint(r.o.accounts))
	row("messages drained", bareOr(func(*bareFigures) string { return fmt.Sprint(r.o.n) }), fmt.Sprint(r.o.n))
	row("time from process start to all acked", bareOr(func(b *bareFigures) string { return secs(b.took) }), secs(r.drain.took))
	row("msgs/s", bareOr(func(*bareFigures) string { return fmt.Sprintf("%.0f", r.bareMsgsPerS()) }), fmt.Sprintf("%.0f", r.msgsPerS()))
	row("ratio daemon/bare", "", bareOr(func(*bareFigures) string { return fmt.Sprintf("%.3f", r.msgsPerS()/r.bareMsgsPerS()) }))
	row("CPU µs per message (user+sys, startup included)",
		bareOr(func(b *bareFigures) string { return fmt.Sprintf("%.2f", r.usPerMsg(b.cpu)) }), fmt.Sprintf("%.2f", r.usPerMsg(r.drain.cpu)))
	row("peak RSS MiB at the end of the drain",
		bareOr(func(b *bareFigures) string { return fmt.Sprintf("%.1f", mib(b.hwmKiB)) }), fmt.Sprintf("%.1f", mib(r.drain.hwmKiB)))
	row("peak RSS MiB from start to SIGTERM", "", fmt.Sprintf("%.1f", mib(r.runHWMKiB)))
	if r.floor != nil {
		row("floor consumer (+ metadata, decode, event id, hashes; acks "+r.o.floor+"): msgs/s, CPU µs per message", "",
			fmt.Sprintf("%.0f, %.2f", r.floorMsgsPerS(), r.usPerMsg(r.floor.cpu)))
	}
	row("Pinterest calls during the drain (all accounts)", "", fmt.Sprint(r.drain.calls))
	if r.lists != nil {
		perCall := 0.0
		if r.drain.listUpdates > 0 {
			perCall = float64(r.drain.listRecords) / float64(r.drain.listUpdates)
		}
		row("of which customer list PATCHes (records per PATCH)", "", fmt.Sprintf("%d (%.1f)", r.drain.listUpdates, perCall))
	}
	r.callRows(row)
	r.latencyRows(row)
	row("calls answered 429 (whole run, all accounts)", "", fmt.Sprint(r.rateLimited))
	row("copies parked (account failing, or congested: a call over 1 s; whole run)", "", fmt.Sprint(r.parked))
	if r.lists != nil {
		row("list records taken / distinct (whole run, all lists)", "", fmt.Sprintf("%d / %d", r.lists.records, r.lists.distinct))
		row("records applied more than once (taken − distinct)", "", fmt.Sprint(r.duplicates()))
		row("backlog changes not applied (enter not a member, exit never removed)", "", fmt.Sprint(r.backlogMissing))
		row("list members no change accounts for", "", fmt.Sprint(r.lists.unexpected))
		row("activations without a customer list", "", fmt.Sprint(r.lists.noList))
	} else {
		row("duplicates (events received − distinct ids)", "", fmt.Sprint(r.duplicates()))
		row("backlog event ids never received", "", fmt.Sprint(r.backlogMissing))
	}
	row("consumer NumPending / NumAckPending after exit", "", fmt.Sprintf("%d / %d", r.pending, r.ackPending))
	row("daemon exit code after SIGTERM", "", fmt.Sprint(r.exitCode))
	row("publish rate (bench, async)", "", fmt.Sprintf("%.0f msgs/s, %.0f bytes each on average", r.publishMsgsPerS, r.msgBytes))
	row("machine", "", fmt.Sprintf("%d cores, %s", runtime.NumCPU(), runtime.Version()))
}

// latencyRows adds the latency phase's rows.
func (r *results) latencyRows(row func(measure, bare, daemon string)) {
	f := r.latency
	if f == nil {
		row("latency phase", "", "(skipped)")
		return
	}
	what, arrival := "events", "its event's arrival"
	if r.o.lists() {
		what, arrival = "enters", "the PATCH adding it"
	}
	row(fmt.Sprintf("latency p50 / p90 / p99 / max (%d msgs/s for %s; ts to %s)", r.o.rate, r.o.latencyDuration, arrival), "",
		fmt.Sprintf("%.1f / %.1f / %.1f / %.1f ms", ms(f.p50), ms(f.p90), ms(f.p99), ms(f.max)))
	row(fmt.Sprintf("latency %s published / arrived / lost (not within 30 s)", what), "", fmt.Sprintf("%d / %d / %d", f.published, f.arrived, f.lost))
	if f.published > 0 {
		row("CPU µs per message during the latency phase", "", fmt.Sprintf("%.2f", float64(f.cpu.Microseconds())/float64(f.published)))
	}
}

// callRows adds the calls of the busiest ad account in any minute of the
// daemon's run, and which account it was.
func (r *results) callRows(row func(measure, bare, daemon string)) {
	f := r.calls
	if f == nil {
		return
	}
	label := "calls of the busiest account in any 60 s window"
	if f.shortRun() {
		label += fmt.Sprintf(" (run of %.1f s: all its calls)", f.run.Seconds())
	}
	row(label, "", fmt.Sprintf("%d (account %s)", f.calls, accountName(f.account)))
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
func ms(d time.Duration) float64  { return round(float64(d.Nanoseconds())/1e6, 3) }
func ptr[T any](v T) *T           { return &v }

func round(v float64, decimals int) float64 {
	p := math.Pow(10, float64(decimals))
	return math.Round(v*p) / p
}
