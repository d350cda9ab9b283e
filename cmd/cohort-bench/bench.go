package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cohort-connector/cohort-connector/destinations/pinterest/simulator"
)

// benchAccount is one ad account of the run (see accounts).
type benchAccount struct {
	name        string // "a", "b", …: CONNECTOR_ACCOUNTS
	adAccountID string
	token       string
	tagID       string // its one Tag ID; account 0's is the default Tag ID
	// Its OAuth app (customer_list mode): app id, secret and first
	// refresh token.
	appID, appSecret, refreshToken string
}

// Ad account ids, Tag IDs and OAuth app ids of the run: account i has
// firstAdAccountID + i, firstTagID + i and firstAppID + i.
const (
	firstAdAccountID = 549755885175
	firstTagID       = 2612345678901
	firstAppID       = 1484960
	maxAccounts      = 26 // one letter each
)

// accounts are the run's n ad accounts: account i is named by the i-th
// letter, its token is "bench-token-<name>", its OAuth app's secret
// "bench-app-secret-<name>" and first refresh token
// "bench-refresh-<name>". Cohort c goes to account c mod n (see
// createObjects).
func accounts(n int) []benchAccount {
	out := make([]benchAccount, n)
	for i := range out {
		name := accountName(i)
		out[i] = benchAccount{
			name:         name,
			adAccountID:  strconv.FormatInt(firstAdAccountID+int64(i), 10),
			token:        "bench-token-" + name,
			tagID:        strconv.FormatInt(firstTagID+int64(i), 10),
			appID:        strconv.FormatInt(firstAppID+int64(i), 10),
			appSecret:    "bench-app-secret-" + name,
			refreshToken: "bench-refresh-" + name,
		}
	}
	return out
}

// accountName is the name of account i: "a", "b", …
func accountName(i int) string { return string(rune('a' + i)) }

// adAccountIDs are the run's ad account ids, account 0 first.
func (b *bench) adAccountIDs() []string {
	ids := make([]string, len(b.accounts))
	for i, a := range b.accounts {
		ids[i] = a.adAccountID
	}
	return ids
}

// publishMaxPending bounds the asynchronous publishes awaiting their PubAck.
const publishMaxPending = 4096

// bench is one run: its temp dir, the JetStream server and connection, the
// simulator, the daemon binary and the JetStream objects' definitions.
type bench struct {
	o        options
	log      io.Writer // progress lines (stderr)
	accounts []benchAccount

	dir       string // temp dir: daemon binary and log, JetStream storage
	root      string // the module's directory
	daemonBin string
	defs      deployDefs

	// secretsKey is the daemon's CONNECTOR_SECRETS_KEY in customer_list
	// mode: 32 random bytes of this run, base64.
	secretsKey string

	srv *server.Server // the embedded server; nil with -nats-url
	url string
	nc  *nats.Conn
	js  jetstream.JetStream
	sim *simulator.Simulator

	// base is the ts of backlog membership 0 (see backlogMembership).
	base time.Time
	// publishErrs counts asynchronous publishes that failed.
	publishErrs atomic.Int64
	// owned is set once the JetStream objects were found absent and are
	// created by this run: only then may close delete them (-nats-url).
	owned bool
}

// setUp prepares everything the phases need; on error it releases what it
// had set up.
func setUp(ctx context.Context, o options, log io.Writer) (b *bench, err error) {
	b = &bench{o: o, log: log, accounts: accounts(o.accounts)}
	defer func() {
		if err != nil {
			_ = b.close()
			b = nil
		}
	}()
	if b.dir, err = os.MkdirTemp("", "cohort-bench-"); err != nil {
		return b, err
	}
	if b.root, err = moduleRoot(); err != nil {
		return b, err
	}
	if b.defs, err = readDeployDefs(b.root); err != nil {
		return b, err
	}
	if err = b.connect(); err != nil {
		return b, err
	}
	if err = b.createObjects(ctx); err != nil {
		return b, err
	}
	if err = b.prepareDaemon(); err != nil {
		return b, err
	}
	tokens := make(map[string]string, len(b.accounts))
	for _, a := range b.accounts {
		tokens[a.adAccountID] = a.token
	}
	b.sim, err = simulator.Start(simulator.Options{
		Accounts: tokens,
		// No user is a known Pinterest user: the answers are the same
		// (an unmatched user is processed), and the simulator keeps no
		// per-user visitor tally, which would grow with -n.
		KnownUserShare: simulator.NoKnownUsers,
		// Pinterest's limit, 5,000 calls a minute per ad account, enforced
		// with 429s; the daemon's own budget is the same by default.
		RateLimitPerMinute: simulator.DefaultRateLimitPerMinute,
		// Room for every event id an account gets (cohort c goes to
		// account c mod -accounts), the latency phase's too.
		EventIDsRoom: (b.o.n+b.o.rate*int(b.o.latencyDuration.Seconds()))/b.o.accounts + b.o.cohorts,
	})
	if err != nil {
		return b, err
	}
	// Keep only the event-id tally (counts per id), not whole events.
	b.sim.SetRecord(false)
	if b.o.lists() {
		// Customer lists take OAuth only: an app per account, as a
		// publisher authorises one per ad account. The conversion token
		// stays (unused: no activation sends events).
		key := make([]byte, 32)
		if _, err = rand.Read(key); err != nil {
			return b, err
		}
		b.secretsKey = base64.StdEncoding.EncodeToString(key)
		for _, a := range b.accounts {
			b.sim.AddApp(a.appID, a.appSecret, a.refreshToken, a.adAccountID)
			b.sim.SetTags(a.adAccountID, a.tagID)
		}
	}
	return b, nil
}

// moduleRoot is the directory of the module the command runs in.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the cohort-connector module: run from its directory")
	}
	return filepath.Dir(gomod), nil
}

// prepareDaemon builds ./cmd/cohort-connector into the temp dir, unless
// -daemon names a binary.
func (b *bench) prepareDaemon() error {
	if b.o.daemon != "" {
		p, err := filepath.Abs(b.o.daemon)
		if err != nil {
			return err
		}
		b.daemonBin = p
		return nil
	}
	b.progress("building ./cmd/cohort-connector")
	bin := filepath.Join(b.dir, "cohort-connector")
	// Built as the Dockerfile builds what ships: static, no libc.
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./cmd/cohort-connector")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Dir = b.root
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("building the daemon: %w\n%s", err, stderr.String())
	}
	b.daemonBin = bin
	return nil
}

// connect starts the embedded JetStream server (unless -nats-url) and
// connects to the server.
func (b *bench) connect() error {
	b.url = b.o.natsURL
	if b.url == "" {
		srv, err := server.NewServer(&server.Options{
			ServerName: "cohort-bench",
			Host:       "127.0.0.1",
			Port:       server.RANDOM_PORT,
			JetStream:  true,
			StoreDir:   filepath.Join(b.dir, "jetstream"),
			NoLog:      true,
			NoSigs:     true,
		})
		if err != nil {
			return err
		}
		go srv.Start()
		if !srv.ReadyForConnections(10 * time.Second) {
			srv.Shutdown()
			srv.WaitForShutdown()
			return errors.New("the embedded NATS server did not start within 10s")
		}
		b.srv, b.url = srv, srv.ClientURL()
	}
	nc, err := nats.Connect(b.url, nats.Name("cohort-bench"), nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("connecting to NATS at %s: %w", b.url, err)
	}
	b.nc = nc
	b.js, err = jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(publishMaxPending),
		jetstream.WithPublishAsyncErrHandler(func(jetstream.JetStream, *nats.Msg, error) { b.publishErrs.Add(1) }))
	return err
}

// close stops what setUp started and removes the temp dir (unless -keep).
func (b *bench) close() error {
	var errs []error
	if b.sim != nil {
		errs = append(errs, b.sim.Close())
	}
	if b.nc != nil {
		if b.srv == nil && b.owned && !b.o.keep {
			errs = append(errs, b.deleteObjects())
		}
		b.nc.Close()
	}
	if b.srv != nil {
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
	}
	if b.dir != "" {
		if b.o.keep {
			b.progress("kept %s", b.dir)
		} else {
			errs = append(errs, os.RemoveAll(b.dir))
		}
	}
	return errors.Join(errs...)
}

// progress writes one line about what the bench is doing (not a figure).
func (b *bench) progress(format string, args ...any) {
	fmt.Fprintf(b.log, "cohort-bench: "+format+"\n", args...)
}

// errDeadline is poll's error when its limit passed first.
var errDeadline = errors.New("deadline passed")

// poll calls cond every interval until it returns true or an error, the
// limit passes (errDeadline) or ctx ends.
func poll(ctx context.Context, limit, interval time.Duration, cond func() (bool, error)) error {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if ok, err := cond(); ok || err != nil {
			return err
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			return fmt.Errorf("%w after %s", errDeadline, limit)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
