package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/config"
)

// Tools behave like a mature daemon's: help on every command without a
// configuration, stray arguments refused, bad values named.
func TestEveryCommandTakesHelpWithoutConfiguration(t *testing.T) {
	t.Setenv("CONNECTOR_ACCOUNTS", "") // nothing configured: help must not need it
	for _, args := range [][]string{
		{"demo", "-h"}, {"simulator", "-h"}, {"simulator", "--help"},
		{"activations", "-h"}, {"activations", "list", "-h"}, {"activations", "put", "--help"}, {"activations", "help"},
		{"dlq", "-h"}, {"dlq", "list", "-h"}, {"dlq", "show", "-help"},
		{"backfill", "-h"}, {"doctor", "-h"}, {"doctor", "--help"}, {"--help"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(t.Context(), append([]string{"cohort-connector"}, args...), &stdout, &stderr)
		assert.Equal(t, 0, code, "%v: %s", args, stderr.String())
		assert.Contains(t, stdout.String(), "sage", "%v prints its usage", args)
		assert.Empty(t, stderr.String(), "%v", args)
	}
}

func TestStrayArgumentsAndBadValuesAreErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"demo", "extra", "-duration", "1s"}, `demo: unexpected argument "extra"`},
		{[]string{"demo", "-duration", "1s", "extra"}, `demo: unexpected argument "extra"`},
		{[]string{"demo", "-bogus"}, "demo: flag provided but not defined: -bogus"},
		{[]string{"simulator", "-account", "1=t", "extra"}, `simulator: unexpected argument "extra"`},
		{[]string{"simulator", "-account", "1=t", "-listen", "0.0.0.0:0"}, "the host must be loopback"},
		{[]string{"dlq", "list", "--reason", "bogus"}, `--reason "bogus" is not a dead-letter reason; one of: rejected_by_pinterest`},
		{[]string{"dlq", "list", "extra"}, `dlq list: unexpected argument "extra"`},
		{[]string{"--version", "extra"}, "--version takes no arguments"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(t.Context(), append([]string{"cohort-connector"}, c.args...), &stdout, &stderr)
		assert.NotEqual(t, 0, code, "%v", c.args)
		assert.Contains(t, stderr.String(), c.want, "%v", c.args)
	}
}

func TestVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	require.Equal(t, 0, run(t.Context(), []string{"cohort-connector", "--version"}, &stdout, &stderr), stderr.String())
	b := thisBuild()
	assert.Equal(t, b.String()+"\n", stdout.String())
	assert.Regexp(t, `^cohort-connector \S+ \(revision \S+, go1\.\d+`, stdout.String())
	assert.NotEmpty(t, b.Version)
	assert.NotEmpty(t, b.Revision)
}

// signalHelperEnv makes this test binary a process that stops on the first
// signal as main does, and then takes forever (a drain that does not end).
const signalHelperEnv = "COHORT_CONNECTOR_SIGNAL_HELPER"

func init() {
	if os.Getenv(signalHelperEnv) == "" {
		return
	}
	ctx, _ := stopOnSignal()
	fmt.Println("ready")
	<-ctx.Done()
	fmt.Println("stopping")
	select {} // a drain that never ends
}

// The first SIGTERM starts a graceful stop; a second one ends the process
// at once, whatever the stop is waiting for.
func TestASecondSignalForcesExit(t *testing.T) {
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(exe, "-test.run", "^$")
	cmd.Env = append(os.Environ(), signalHelperEnv+"=1")
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	lines := bufio.NewScanner(out)
	next := func() string {
		require.True(t, lines.Scan(), "the helper ended early")
		return strings.TrimSpace(lines.Text())
	}
	require.Equal(t, "ready", next())
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, "stopping", next(), "the first signal starts the stop")
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		require.True(t, errors.As(err, &ee), "want an exit status, got %v", err)
		assert.Equal(t, 128+int(syscall.SIGTERM), ee.ExitCode(), "128 + SIGTERM, as a shell reports a process it ended")
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatal("still running 10s after the second SIGTERM")
	}
}

// Console logs are for people at a terminal: into a file or a pipe they
// carry no colour codes.
func TestConsoleLogsHaveNoColourOffATerminal(t *testing.T) {
	cfg := config.Default()
	cfg.LogFormat = "console"
	var buf bytes.Buffer
	log, err := newLogger(cfg, &buf)
	require.NoError(t, err)
	log.Warn().Str("ad_account_id", "549755885175").Msg("Pinterest account failing")
	require.Contains(t, buf.String(), "Pinterest account failing")
	assert.NotContains(t, buf.String(), "\x1b[", "no ANSI escape codes")
	assert.False(t, isTerminal(&buf))
}

// The startup log shows the consumer settings in effect, the existing
// consumer's when an operator created it differently, durations with units.
func TestStartupLogShowsTheConsumerSettingsInEffect(t *testing.T) {
	cfg := config.Default()
	var buf bytes.Buffer
	log := zerolog.New(&buf)
	logConsumerSettings(log, cfg, jetstream.ConsumerConfig{Durable: "ops", AckWait: 2 * time.Minute, MaxDeliver: 7, MaxAckPending: cfg.MaxAckPending})
	line := buf.String()
	assert.Contains(t, line, `"level":"warn"`)
	assert.Contains(t, line, `"ack_wait":"2m0s"`)
	assert.Contains(t, line, `"max_deliver":7`)
	assert.Contains(t, line, `"configured_ack_wait":"1m0s"`)
	assert.Contains(t, line, "not CONNECTOR_ACK_WAIT")

	buf.Reset()
	logConsumerSettings(log, cfg, jetstream.ConsumerConfig{Durable: "ours", AckWait: cfg.AckWait, MaxDeliver: cfg.MaxDeliver, MaxAckPending: cfg.MaxAckPending})
	assert.Contains(t, buf.String(), `"level":"info"`)
	assert.Contains(t, buf.String(), `"message":"consumer settings in effect"`)
}

// The demo's table explains itself and shows every cohort it publishes,
// the one without an activation too.
func TestDemoTableHasALegendAndEveryCohort(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the demo runs for seconds")
	}
	clearEnv(t)
	code, out, errOut := runCmd(t, "demo", "-duration", "3s", "-interval", "1s", "-rate", "200")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "How to read the table")
	for _, col := range []string{"TAG, SOURCE", "RECEIVED", "ACCEPTANCE", "COVERAGE", "MATCH RATE", "waiting"} {
		assert.Contains(t, out, col, "the legend explains %s", col)
	}
	last := out[strings.LastIndex(out, "cohorts: "):]
	for _, c := range demoCohorts {
		assert.Regexp(t, `\b`+c+` [1-9]\d* \(`, last, "cohort %s with what was published to it", c)
	}
	assert.Contains(t, last, "news", "the cohort without an activation")
	assert.Regexp(t, `news \d+ \(none\)`, last)
	assert.Contains(t, out, "stopped cleanly")
}

// The read-only commands need the NATS settings (and, to show where an
// activation goes, the accounts' Tag IDs), never a Pinterest credential;
// a write still needs the whole configuration.
func TestReadOnlyCommandsNeedNoPinterestCredential(t *testing.T) {
	e := newDLQEnv(t)
	kv, err := e.js.KeyValue(t.Context(), "COHORT_ACTIVATIONS")
	require.NoError(t, err)
	_, err = kv.Put(t.Context(), "news-a", []byte(`{"id":"news-a","cohort_id":"news","destination":"pinterest","enabled":true,"tag_id":"","mode":"events"}`))
	require.NoError(t, err)
	os.Unsetenv("CONNECTOR_ACCOUNT_A_TOKEN") // t.Setenv by newDLQEnv restores it

	code, out, errOut := runCmd(t, "activations", "list")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "news-a")
	code, out, errOut = runCmd(t, "activations", "get", "news-a")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, `"cohort_id":"news"`)
	code, _, errOut = runCmd(t, "dlq", "list")
	require.Equal(t, 0, code, errOut)

	code, _, errOut = runCmd(t, "activations", "disable", "news-a")
	assert.Equal(t, 1, code, "a write is checked against the whole configuration")
	assert.Contains(t, errOut, "CONNECTOR_ACCOUNT_A_TOKEN")

	// dlq needs no account at all.
	for _, k := range []string{"CONNECTOR_DEFAULT_TAG_ID", "CONNECTOR_ACCOUNTS", "CONNECTOR_ACCOUNT_A_AD_ACCOUNT_ID", "CONNECTOR_ACCOUNT_A_TAG_IDS"} {
		os.Unsetenv(k)
	}
	code, _, errOut = runCmd(t, "dlq", "list")
	require.Equal(t, 0, code, errOut)
	code, _, errOut = runCmd(t, "activations", "list")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "CONNECTOR_DEFAULT_TAG_ID", "names what it lacks")
}
