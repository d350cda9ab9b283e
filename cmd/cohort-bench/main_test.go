package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/cohort-connector/cohort-connector/cohorts"
)

func TestMain(m *testing.M) {
	// The bench re-executes its own binary as the bare consumer; under go
	// test that binary is this one.
	if len(os.Args) > 1 && os.Args[1] == bareCommand {
		os.Exit(runBare(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	}
	goleak.VerifyTestMain(m)
}

// A whole run at a tiny size: every phase runs, the last line is one
// parsable BENCH line with every key, and nothing is left pending or lost.
// No figure is checked against a speed.
func TestATinyRunPrintsOneParsableBenchLine(t *testing.T) {
	got := tinyRun(t, "-n", "2000", "-cohorts", "5", "-accounts", "2", "-latency-duration", "1s", "-rate", "200", "-floor", "all")
	for _, key := range []string{"n", "cohorts", "accounts", "msgs_per_s", "bare_msgs_per_s", "ratio", "peak_rss_mb", "cpu_us_per_msg",
		"floor_msgs_per_s", "floor_cpu_us_per_msg",
		"bare_cpu_us_per_msg", "bare_peak_rss_mb", "p50_ms", "p90_ms", "p99_ms", "max_ms", "calls_per_min_max",
		"duplicates", "pending", "ack_pending", "lost", "go_version", "cores"} {
		assert.NotNil(t, got[key], "%s measured", key)
	}
	assert.Equal(t, "events", got["mode"], "the default")
	assert.EqualValues(t, 2000, got["n"])
	assert.EqualValues(t, 5, got["cohorts"])
	assert.EqualValues(t, 2, got["accounts"])
	assert.EqualValues(t, 0, got["pending"])
	assert.EqualValues(t, 0, got["ack_pending"])
	assert.EqualValues(t, 0, got["lost"])
	assert.Greater(t, got["msgs_per_s"], 0.0)
	assert.Greater(t, got["bare_msgs_per_s"], 0.0)
	assert.Greater(t, got["floor_msgs_per_s"], 0.0)
	assert.EqualValues(t, 200, got["latency_published"])
	for _, key := range []string{"list_updates_drain", "list_records", "list_unexpected"} {
		assert.Nil(t, got[key], "%s: customer_list mode only", key)
	}
}

// The same in customer_list mode: every activation's list is created by
// the daemon, every change applied to it (lost 0 is the comparison of each
// list with the changes published), the latency phase timed to the PATCHes.
func TestATinyCustomerListRun(t *testing.T) {
	got := tinyRun(t, "-mode", "customer_list", "-n", "2000", "-cohorts", "4", "-accounts", "2", "-latency-duration", "1s", "-rate", "200",
		"-floor", "pinned")
	assert.Equal(t, "customer_list", got["mode"])
	for _, key := range []string{"msgs_per_s", "ratio", "cpu_us_per_msg", "p50_ms", "p99_ms", "calls_per_min_max",
		"list_updates_drain", "list_records", "list_unexpected"} {
		assert.NotNil(t, got[key], "%s measured", key)
	}
	assert.EqualValues(t, 0, got["pending"])
	assert.EqualValues(t, 0, got["ack_pending"])
	assert.EqualValues(t, 0, got["lost"])
	assert.EqualValues(t, 0, got["backlog_missing"])
	assert.EqualValues(t, 0, got["list_unexpected"])
	assert.EqualValues(t, 200, got["latency_published"])
	assert.GreaterOrEqual(t, got["list_records"], 2200.0, "a record per change: 2,000 in the backlog, 200 in the latency phase")
	assert.Positive(t, got["list_updates_drain"])
	assert.Greater(t, got["floor_msgs_per_s"], 0.0, "the floor consumer on a pinned consumer drained it")
}

// tinyRun runs the command with args and returns its one BENCH line,
// decoded, after checking that it has every key.
func tinyRun(t *testing.T, args ...string) map[string]any {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: the bench builds and runs the daemon")
	}
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), args, &stdout, &stderr)
	require.Equal(t, 0, code, "stderr:\n%s\nstdout:\n%s", stderr.String(), stdout.String())

	var lines []string
	for l := range strings.Lines(stdout.String()) {
		if strings.HasPrefix(l, "BENCH ") {
			lines = append(lines, strings.TrimPrefix(strings.TrimSpace(l), "BENCH "))
		}
	}
	require.Len(t, lines, 1, stdout.String())
	var got map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &got))
	for _, key := range jsonKeys() {
		assert.Contains(t, got, key)
	}
	t.Logf("%s", stdout.String())
	return got
}

// jsonKeys are the keys of the BENCH line.
func jsonKeys() []string {
	var keys []string
	for f := range reflect.TypeFor[benchLine]().Fields() {
		keys = append(keys, strings.Split(f.Tag.Get("json"), ",")[0])
	}
	return keys
}

func TestPercentilesAreNearestRank(t *testing.T) {
	var lat []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	f := summarize(lat, 101, 1)
	assert.Equal(t, 50*time.Millisecond, f.p50)
	assert.Equal(t, 90*time.Millisecond, f.p90)
	assert.Equal(t, 99*time.Millisecond, f.p99)
	assert.Equal(t, 100*time.Millisecond, f.max)
	assert.Equal(t, 100, f.arrived)
	assert.Equal(t, 1, f.lost)
	assert.Equal(t, 100*time.Millisecond, lat[0], "the caller's slice is not sorted in place")

	assert.Zero(t, summarize(nil, 3, 3).p50, "nothing arrived")
}

// The calls figure is the busiest account's most calls between two
// samples at most 60 s apart; over a run shorter than a minute, all its
// calls.
func TestCallsInAnyMinute(t *testing.T) {
	at := func(s float64) time.Time { return time.Unix(0, 0).Add(time.Duration(s * float64(time.Second))) }

	// 27.3 s: account 1 makes 30 calls a second, account 0 ten, and the
	// last sample (taken at stop) comes 0.3 s after the one before.
	var short []callSample
	for s := 0; s <= 27; s++ {
		short = append(short, callSample{at(float64(s)), []int64{int64(s * 10), int64(s * 30)}})
	}
	short = append(short, callSample{at(27.3), []int64{275, 820}})
	f := callsInAnyMinute(short)
	assert.True(t, f.shortRun())
	assert.EqualValues(t, 820, f.calls, "all of account 1's calls during the run")
	assert.Equal(t, 1, f.account)
	assert.Equal(t, 27300*time.Millisecond, f.window)
	assert.Equal(t, 27300*time.Millisecond, f.run)

	// 90 s: account 0 makes 10 calls a second plus a burst of 100 in
	// second 21; account 1 makes 11 a second. Windows are bounded by
	// samples at most 60 s apart.
	var long []callSample
	for s := 0; s <= 90; s++ {
		n := int64(s * 10)
		if s > 20 {
			n += 100
		}
		long = append(long, callSample{at(float64(s)), []int64{n, int64(s * 11)}})
	}
	f = callsInAnyMinute(long)
	assert.False(t, f.shortRun())
	assert.EqualValues(t, 700, f.calls, "60 s at 10 a second plus the burst, not the 900 + 100 of the whole run")
	assert.Equal(t, 0, f.account)
	assert.Equal(t, time.Minute, f.window)
	assert.Equal(t, 90*time.Second, f.run)

	// A sample a little late: 60 s and 1 ms is not a 60-second window.
	late := []callSample{{at(0), []int64{0}}, {at(30), []int64{100}}, {at(60.001), []int64{300}}, {at(61), []int64{301}}}
	f = callsInAnyMinute(late)
	assert.EqualValues(t, 201, f.calls, "from 30 s to 61 s, not from 0 to 60.001 s")

	assert.Zero(t, callsInAnyMinute([]callSample{{at(0), []int64{5, 7}}}).calls, "one sample: no call counted")
}

func TestAccountsAreNamedByLetter(t *testing.T) {
	a := accounts(maxAccounts)
	assert.Equal(t, benchAccount{name: "a", adAccountID: "549755885175", token: "bench-token-a", tagID: "2612345678901",
		appID: "1484960", appSecret: "bench-app-secret-a", refreshToken: "bench-refresh-a"}, a[0])
	assert.Equal(t, benchAccount{name: "z", adAccountID: "549755885200", token: "bench-token-z", tagID: "2612345678926",
		appID: "1484985", appSecret: "bench-app-secret-z", refreshToken: "bench-refresh-z"}, a[25])

	for _, n := range []string{"0", "27"} {
		_, err := parseFlags([]string{"-accounts", n}, io.Discard)
		assert.Error(t, err, "-accounts %s", n)
	}
	o, err := parseFlags(nil, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, 4, o.accounts, "the default")
}

func TestModeIsEventsOrCustomerList(t *testing.T) {
	o, err := parseFlags(nil, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, cohorts.ModeEvents, o.mode, "the default")
	assert.False(t, o.lists())
	o, err = parseFlags([]string{"-mode", "customer_list"}, io.Discard)
	require.NoError(t, err)
	assert.True(t, o.lists())
	for _, m := range []string{"", "lists", "EVENTS"} {
		_, err := parseFlags([]string{"-mode", m}, io.Discard)
		assert.Error(t, err, "-mode %q", m)
	}
}

func TestFloorIsOffExplicitOrAll(t *testing.T) {
	o, err := parseFlags(nil, io.Discard)
	require.NoError(t, err)
	assert.Empty(t, o.floor, "off by default")
	for _, f := range []string{floorExplicit, floorAll, floorPinned} {
		o, err := parseFlags([]string{"-floor", f}, io.Discard)
		require.NoError(t, err)
		assert.Equal(t, f, o.floor)
	}
	_, err = parseFlags([]string{"-floor", "cumulative"}, io.Discard)
	assert.ErrorContains(t, err, "-floor must be explicit, all or pinned")
}

func TestReadProcReadsThisProcess(t *testing.T) {
	s, err := readProc(os.Getpid())
	require.NoError(t, err)
	assert.Positive(t, s.hwmKiB)
	assert.GreaterOrEqual(t, s.cpu, time.Duration(0))
}
