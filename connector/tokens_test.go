package connector_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/connector"
	"github.com/cohort-connector/cohort-connector/destinations"
)

// Every token the fake Pinterest issues contains tokenMark, so that a test
// can tell that none leaked into logs, errors, checks or the bucket.
const tokenMark = "SEKRIT"

const tokenAccount = "549755885175"

// fakeClock is a Now driven by the test (keepers, sketches).
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// rotatingRefresher models Pinterest's continuous refresh strictly: each
// refresh token is usable once, and every refresh issues a new one.
type rotatingRefresher struct {
	clock                 *fakeClock
	accessTTL, refreshTTL time.Duration

	mu     sync.Mutex
	n      int
	valid  map[string]time.Time // refresh token → expiry (unused ones)
	access map[string]time.Time // access token → expiry
	used   []string             // refresh tokens sent, in order
	calls  int
	down   bool // answer 503 to every call

	// gate, when set, holds the first gateN calls until all arrived.
	gate    chan struct{}
	gateN   int
	arrived int
}

func newRotatingRefresher(clock *fakeClock, initial string) *rotatingRefresher {
	r := &rotatingRefresher{clock: clock, accessTTL: time.Hour, refreshTTL: 60 * 24 * time.Hour,
		valid: map[string]time.Time{}, access: map[string]time.Time{}}
	if initial != "" {
		r.valid[initial] = clock.Now().Add(r.refreshTTL)
	}
	return r
}

// holdUntil makes the next n calls wait for each other.
func (r *rotatingRefresher) holdUntil(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gate, r.gateN, r.arrived = make(chan struct{}), n, 0
}

func (r *rotatingRefresher) RefreshToken(ctx context.Context, appID, appSecret, refreshToken string) (destinations.TokenGrant, error) {
	r.mu.Lock()
	gate := r.gate
	if gate != nil {
		r.arrived++
		if r.arrived == r.gateN {
			close(gate)
			r.gate = nil
		}
	}
	r.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return destinations.TokenGrant{}, &destinations.Error{Reason: destinations.ReasonShutdown, Err: ctx.Err()}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	r.used = append(r.used, refreshToken)
	if r.down {
		return destinations.TokenGrant{}, &destinations.Error{Reason: destinations.ReasonServer, StatusCode: 503}
	}
	now := r.clock.Now()
	exp, ok := r.valid[refreshToken]
	if appID != "app" || appSecret != "secret" || !ok || !now.Before(exp) {
		// Pinterest does not echo the token; a careless client might:
		// the keeper must scrub it.
		return destinations.TokenGrant{}, &destinations.Error{Reason: destinations.ReasonAuth, StatusCode: 401,
			Message: "invalid refresh token " + refreshToken}
	}
	delete(r.valid, refreshToken) // dies at once
	r.n++
	g := destinations.TokenGrant{
		AccessToken:      fmt.Sprintf("at-%s-%d", tokenMark, r.n),
		AccessExpiresAt:  now.Add(r.accessTTL),
		RefreshToken:     fmt.Sprintf("rt-%s-%d", tokenMark, r.n),
		RefreshExpiresAt: now.Add(r.refreshTTL),
		Scope:            "ads:read,ads:write",
	}
	r.valid[g.RefreshToken] = g.RefreshExpiresAt
	r.access[g.AccessToken] = g.AccessExpiresAt
	return g, nil
}

// validRefreshTokens are the unused, unexpired refresh tokens: the chains
// still alive.
func (r *rotatingRefresher) validRefreshTokens() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for t, exp := range r.valid {
		if r.clock.Now().Before(exp) {
			out = append(out, t)
		}
	}
	return out
}

func (r *rotatingRefresher) accessValid(tok string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	exp, ok := r.access[tok]
	return ok && r.clock.Now().Before(exp)
}

func (r *rotatingRefresher) waiting() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.arrived
}

func (r *rotatingRefresher) callCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

func (r *rotatingRefresher) usedTokens() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.used...)
}

// flakyKV fails writes while failWrites is set (NATS down for writes).
type flakyKV struct {
	jetstream.KeyValue
	failWrites atomic.Bool
	failed     atomic.Int64 // writes refused
}

var errNATSDown = errors.New("nats: no responders available for request")

func (f *flakyKV) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	if f.failWrites.Load() {
		f.failed.Add(1)
		return 0, errNATSDown
	}
	return f.KeyValue.Create(ctx, key, value, opts...)
}

func (f *flakyKV) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	if f.failWrites.Load() {
		f.failed.Add(1)
		return 0, errNATSDown
	}
	return f.KeyValue.Update(ctx, key, value, rev)
}

// tokenEnv is an embedded JetStream server with a state bucket, a fake
// clock, a strict Pinterest model and a log the test reads.
type tokenEnv struct {
	t     *testing.T
	kv    jetstream.KeyValue
	clock *fakeClock
	pin   *rotatingRefresher
	key   []byte
	logs  *logBuffer
	log   zerolog.Logger
}

const envRefreshToken = "rt-" + tokenMark + "-env"

func newTokenEnv(t *testing.T) *tokenEnv {
	t.Helper()
	_, js := embeddedJetStream(t)
	kv, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "COHORT_CONNECTOR_STATE", History: 5})
	require.NoError(t, err)
	clock := &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	e := &tokenEnv{t: t, kv: kv, clock: clock, pin: newRotatingRefresher(clock, envRefreshToken),
		key: bytes.Repeat([]byte{7}, 32), logs: &logBuffer{}}
	e.log = zerolog.New(zerolog.MultiLevelWriter(e.logs, zerolog.NewTestWriter(t))).Level(zerolog.DebugLevel)
	t.Cleanup(func() {
		e.logs.mu.Lock()
		defer e.logs.mu.Unlock()
		assert.NotContains(t, e.logs.b.String(), tokenMark, "a token leaked into the logs")
	})
	return e
}

func (e *tokenEnv) options() connector.TokenKeeperOptions {
	return connector.TokenKeeperOptions{
		KV: e.kv, Key: e.key, Refresher: e.pin, Account: tokenAccount,
		AppID: "app", AppSecret: "secret", InitialRefreshToken: envRefreshToken,
		Logger: e.log, Now: e.clock.Now, Interval: 5 * time.Millisecond,
	}
}

// run starts k.Run until the test ends.
func (e *tokenEnv) run(k *connector.TokenKeeper) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- k.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				assert.NoError(e.t, err)
			case <-time.After(waitFor):
				e.t.Error("TokenKeeper.Run did not return")
			}
		})
	}
	e.t.Cleanup(stop)
	return stop
}

func (e *tokenEnv) raw() (jetstream.KeyValueEntry, bool) {
	ent, err := e.kv.Get(e.t.Context(), "token."+tokenAccount)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, false
	}
	require.NoError(e.t, err)
	return ent, true
}

// stored waits until the bucket holds a value written after revision after.
func (e *tokenEnv) stored(after uint64) jetstream.KeyValueEntry {
	e.t.Helper()
	var ent jetstream.KeyValueEntry
	require.Eventually(e.t, func() bool {
		got, ok := e.raw()
		ent = got
		return ok && got.Revision() > after
	}, waitFor, tick, "no token stored after revision %d", after)
	return ent
}

func token(t *testing.T, k *connector.TokenKeeper) string {
	t.Helper()
	tok, err := k.Token(t.Context())
	require.NoError(t, err)
	return tok
}

func tokenMetric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s %v not found", name, labels)
	return 0
}

func TestTokenKeeperRefreshesBeforeExpiryAndStoresEncrypted(t *testing.T) {
	e := newTokenEnv(t)
	reg := prometheus.NewRegistry()
	o := e.options()
	o.Metrics = connector.NewTokenMetrics(reg, []string{tokenAccount})
	k := connector.NewTokenKeeper(o)
	e.run(k)

	first := e.stored(0)
	at1 := token(t, k)
	assert.True(t, e.pin.accessValid(at1))
	assert.Equal(t, []string{envRefreshToken}, e.pin.usedTokens(), "the first refresh uses the environment's token")
	assert.Equal(t, connector.CheckOK, k.Check().State, k.Check().Detail)
	assert.False(t, k.Expiring())
	at, by := k.Refreshed()
	assert.Equal(t, e.clock.Now().UTC(), at.UTC(), "the grant was obtained now")
	assert.NotEmpty(t, by, "by a named replica")

	// 51 minutes on, the 1h access token expires within 10 minutes:
	// refreshed before it expires, with the rotated refresh token.
	e.clock.Advance(51 * time.Minute)
	second := e.stored(first.Revision())
	require.Eventually(t, func() bool { return token(t, k) != at1 }, waitFor, tick)
	at2 := token(t, k)
	assert.True(t, e.pin.accessValid(at1), "refreshed while the old token was still valid")
	assert.True(t, e.pin.accessValid(at2))
	assert.Equal(t, []string{envRefreshToken, "rt-" + tokenMark + "-1"}, e.pin.usedTokens())

	// The stored value is encrypted as a whole: no token, no field name.
	for _, ent := range []jetstream.KeyValueEntry{first, second} {
		v := string(ent.Value())
		assert.NotContains(t, v, tokenMark)
		assert.NotContains(t, v, "refresh_token")
		assert.Equal(t, byte(1), ent.Value()[0], "version byte")
	}
	assert.NotEqual(t, first.Value()[1:13], second.Value()[1:13], "a fresh nonce per value")

	labels := map[string]string{"account": tokenAccount}
	assert.Equal(t, 2.0, tokenMetric(t, reg, "cohort_connector_oauth_refreshes_total", map[string]string{"account": tokenAccount, "result": "ok"}))
	assert.Equal(t, 0.0, tokenMetric(t, reg, "cohort_connector_oauth_refreshes_total", map[string]string{"account": tokenAccount, "result": "failed"}))
	assert.Equal(t, 0.0, tokenMetric(t, reg, "cohort_connector_oauth_refresh_failing", labels))
	assert.InDelta(t, float64(e.clock.Now().Add(time.Hour).Unix()),
		tokenMetric(t, reg, "cohort_connector_oauth_access_token_expiry_timestamp_seconds", labels), 1)
	assert.InDelta(t, float64(e.clock.Now().Add(60*24*time.Hour).Unix()),
		tokenMetric(t, reg, "cohort_connector_oauth_refresh_token_expiry_timestamp_seconds", labels), 1)
	assert.Len(t, e.pin.validRefreshTokens(), 1)
}

func TestTokenKeeperRestartUsesTheStoredTokenNotTheEnvironments(t *testing.T) {
	e := newTokenEnv(t)
	a := connector.NewTokenKeeper(e.options())
	at1 := token(t, a) // synchronous: reads, refreshes, stores
	first := e.stored(0)

	// A restart while the access token is valid: the stored one is used,
	// nothing is refreshed.
	b := connector.NewTokenKeeper(e.options())
	assert.Equal(t, at1, token(t, b))
	assert.Equal(t, 1, e.pin.callCount())

	// A restart after it expired: refreshed with the stored (rotated)
	// refresh token, not the environment's, which is dead.
	e.clock.Advance(2 * time.Hour)
	c := connector.NewTokenKeeper(e.options())
	at2 := token(t, c)
	assert.NotEqual(t, at1, at2)
	assert.True(t, e.pin.accessValid(at2))
	assert.Equal(t, []string{envRefreshToken, "rt-" + tokenMark + "-1"}, e.pin.usedTokens())
	e.stored(first.Revision())
	assert.Equal(t, connector.CheckOK, c.Check().State, c.Check().Detail)
}

func TestTokenKeepersRefreshingAtOnceKeepOneChain(t *testing.T) {
	e := newTokenEnv(t)
	seed := connector.NewTokenKeeper(e.options())
	token(t, seed)
	first := e.stored(0)

	// Both replicas start inside the refresh window and send the same
	// refresh token at the same moment: Pinterest takes one.
	e.clock.Advance(55 * time.Minute)
	e.pin.holdUntil(2)
	oa, ob := e.options(), e.options()
	oa.Replica, ob.Replica = "replica-a", "replica-b"
	a, b := connector.NewTokenKeeper(oa), connector.NewTokenKeeper(ob)
	e.run(a)
	e.run(b)

	e.stored(first.Revision())
	require.Eventually(t, func() bool {
		ta, errA := a.Token(t.Context())
		tb, errB := b.Token(t.Context())
		return errA == nil && errB == nil && ta == tb && ta == "at-"+tokenMark+"-2"
	}, waitFor, tick, "both replicas serve the winner's token")
	assert.Equal(t, 3, e.pin.callCount(), "seed + the two racing refreshes, no retry after the loser re-read")
	assert.Equal(t, []string{"rt-" + tokenMark + "-2"}, e.pin.validRefreshTokens(), "exactly one chain alive")
	assert.True(t, e.pin.accessValid(token(t, a)))
	ent, _ := e.raw()
	assert.Equal(t, first.Revision()+1, ent.Revision(), "stored once")
	require.Eventually(t, func() bool {
		return a.Check().State == connector.CheckOK && b.Check().State == connector.CheckOK
	}, waitFor, tick, "a: %v b: %v", a.Check(), b.Check())
	assert.Len(t, e.logs.lines("oauth token refreshed by another replica"), 1)

	// The chain goes on from the stored token, whichever replica refreshes.
	e.clock.Advance(55 * time.Minute)
	e.stored(ent.Revision())
	require.Eventually(t, func() bool {
		ta, errA := a.Token(t.Context())
		tb, errB := b.Token(t.Context())
		return errA == nil && errB == nil && ta == tb && ta == "at-"+tokenMark+"-3"
	}, waitFor, tick)
	assert.Equal(t, []string{"rt-" + tokenMark + "-3"}, e.pin.validRefreshTokens())
}

func TestTokenKeeperWrongKeyIsLoudAndLeavesTheStoredValue(t *testing.T) {
	e := newTokenEnv(t)
	token(t, connector.NewTokenKeeper(e.options()))
	before := e.stored(0)

	e.clock.Advance(2 * time.Hour)
	o := e.options()
	o.Key = bytes.Repeat([]byte{9}, 32)
	reg := prometheus.NewRegistry()
	o.Metrics = connector.NewTokenMetrics(reg, []string{tokenAccount})
	k := connector.NewTokenKeeper(o)
	e.run(k)

	_, err := k.Token(t.Context())
	require.Error(t, err)
	var de *destinations.Error
	require.ErrorAs(t, err, &de)
	assert.Equal(t, destinations.ReasonAuth, de.Reason)
	assert.Contains(t, err.Error(), connector.SecretsKeyEnv)
	assert.True(t, k.Expiring(), "a key that does not decrypt needs a person")
	require.Eventually(t, func() bool {
		c := k.Check()
		return c.State == connector.CheckFail && strings.Contains(c.Detail, connector.SecretsKeyEnv)
	}, waitFor, tick)
	t.Log(k.Check().Detail)

	// Retries pass (5s, 10s, …): still never written, never refreshed.
	for range 5 {
		n := len(e.logs.lines("oauth token refresh failed"))
		e.clock.Advance(5 * time.Minute)
		require.Eventually(t, func() bool { return len(e.logs.lines("oauth token refresh failed")) > n }, waitFor, tick)
	}
	after, ok := e.raw()
	require.True(t, ok)
	assert.Equal(t, before.Revision(), after.Revision())
	assert.Equal(t, before.Value(), after.Value())
	assert.Equal(t, 1, e.pin.callCount(), "only the first keeper's refresh")
	assert.Equal(t, 1.0, tokenMetric(t, reg, "cohort_connector_oauth_refresh_failing", map[string]string{"account": tokenAccount}))
	line := e.logs.lines("oauth token refresh failed")[0]
	assert.Equal(t, "error", line["level"])
	assert.Equal(t, "secrets_key", line["reason"])
	assert.Contains(t, line["error"], connector.SecretsKeyEnv)
}

func TestTokenKeeperRefreshRefusedFailsTheCheck(t *testing.T) {
	e := newTokenEnv(t)
	o := e.options()
	o.InitialRefreshToken = "rt-" + tokenMark + "-revoked"
	o.RaceWait = 20 * time.Millisecond
	reg := prometheus.NewRegistry()
	o.Metrics = connector.NewTokenMetrics(reg, []string{tokenAccount})
	k := connector.NewTokenKeeper(o)
	e.run(k)

	require.Eventually(t, func() bool { return strings.Contains(k.Check().Detail, "last refresh failed") }, waitFor, tick)
	c := k.Check()
	assert.Contains(t, c.Detail, "last refresh failed")
	assert.Contains(t, c.Detail, "auth")
	assert.Contains(t, c.Detail, "next attempt at")
	assert.Contains(t, c.Detail, "no access token")
	assert.NotContains(t, c.Detail, tokenMark)
	assert.True(t, k.Expiring(), "a refused refresh needs a person")
	labels := map[string]string{"account": tokenAccount}
	assert.Equal(t, 1.0, tokenMetric(t, reg, "cohort_connector_oauth_refresh_failing", labels))
	assert.Equal(t, 1.0, tokenMetric(t, reg, "cohort_connector_oauth_refreshes_total", map[string]string{"account": tokenAccount, "result": "failed"}))

	// While backing off, Token does not call Pinterest again.
	_, err := k.Token(t.Context())
	require.Error(t, err)
	assert.NotContains(t, err.Error(), tokenMark)
	assert.Equal(t, destinations.ReasonAuth, destinations.ReasonOf(err))
	assert.Equal(t, 1, e.pin.callCount())

	line := e.logs.lines("oauth token refresh failed")[0]
	assert.Equal(t, "error", line["level"])
	assert.Equal(t, tokenAccount, line["ad_account_id"])
	assert.Equal(t, "auth", line["reason"])
	assert.NotEmpty(t, line["next_attempt"])
	_, ok := e.raw()
	assert.False(t, ok, "nothing stored")

	// The retry comes after the backoff (5s, then 10s).
	e.clock.Advance(5 * time.Second)
	require.Eventually(t, func() bool { return len(e.logs.lines("oauth token refresh failed")) == 2 }, waitFor, tick)
	assert.Equal(t, 2, e.pin.callCount())
	e.clock.Advance(5 * time.Second)
	assert.Never(t, func() bool { return e.pin.callCount() > 2 }, 100*time.Millisecond, tick)
}

func TestTokenKeeperSaysWhenTheRefreshTokenExpiresSoon(t *testing.T) {
	e := newTokenEnv(t)
	e.pin.refreshTTL = 5 * 24 * time.Hour
	k := connector.NewTokenKeeper(e.options())
	e.run(k)
	require.Eventually(t, func() bool { return strings.Contains(k.Check().Detail, "refresh token expires at") }, waitFor, tick)
	c := k.Check()
	assert.Equal(t, connector.CheckFail, c.State)
	assert.Contains(t, c.Detail, "refresh token expires at "+e.clock.Now().Add(5*24*time.Hour).UTC().Format(time.RFC3339))
	assert.Contains(t, c.Detail, "within 168h0m0s")
	assert.NotContains(t, c.Detail, "last refresh failed")
	require.Eventually(t, func() bool { return len(e.logs.lines("oauth refresh token expires soon")) == 1 }, waitFor, tick)
	assert.Equal(t, "warn", e.logs.lines("oauth refresh token expires soon")[0]["level"])
	_, err := k.Token(t.Context())
	assert.NoError(t, err, "the access token is still served")
	assert.True(t, k.Expiring(), "its account's state is token_expiring")
}

func TestTokenKeeperKeepsANewGrantItCouldNotStore(t *testing.T) {
	e := newTokenEnv(t)
	fkv := &flakyKV{KeyValue: e.kv}
	o := e.options()
	o.KV = fkv
	k := connector.NewTokenKeeper(o)
	e.run(k)
	first := e.stored(0)
	at1 := token(t, k)

	// NATS refuses writes; the refresh succeeds and rotates the token.
	fkv.failWrites.Store(true)
	e.clock.Advance(55 * time.Minute)
	require.Eventually(t, func() bool { return token(t, k) != at1 }, waitFor, tick)
	assert.True(t, e.pin.accessValid(token(t, k)))
	require.Eventually(t, func() bool { return strings.Contains(k.Check().Detail, "held in memory only") }, waitFor, tick)
	assert.Equal(t, connector.CheckFail, k.Check().State)

	// Retries (5s, 10s, …) log nothing new; the next refresh uses the
	// grant in memory, never the stored (dead) token.
	for range 3 {
		n := fkv.failed.Load()
		e.clock.Advance(20 * time.Second)
		require.Eventually(t, func() bool { return fkv.failed.Load() > n }, waitFor, tick, "the store is retried")
	}
	assert.Len(t, e.logs.lines("storing the rotated oauth refresh token failed"), 1)
	e.clock.Advance(time.Hour)
	require.Eventually(t, func() bool { return e.pin.callCount() == 3 }, waitFor, tick)
	assert.Equal(t, []string{envRefreshToken, "rt-" + tokenMark + "-1", "rt-" + tokenMark + "-2"}, e.pin.usedTokens())
	require.Eventually(t, func() bool { return len(e.logs.lines("storing the rotated oauth refresh token failed")) == 2 }, waitFor, tick,
		"one error log per new grant")

	// NATS back: the newest grant is stored; a restart picks it up.
	fkv.failWrites.Store(false)
	e.clock.Advance(10 * time.Minute)
	e.stored(first.Revision())
	require.Eventually(t, func() bool { return k.Check().State == connector.CheckOK }, waitFor, tick, "%v", k.Check())
	r := connector.NewTokenKeeper(e.options())
	assert.Equal(t, "at-"+tokenMark+"-3", token(t, r))
	assert.Equal(t, []string{"rt-" + tokenMark + "-3"}, e.pin.validRefreshTokens())
}

func TestTokenKeeperAdoptsAStoreThatWonTheRace(t *testing.T) {
	// Two replicas with an empty bucket and (odd, but possible) two
	// different valid environment tokens: both refresh, one Create wins,
	// the other re-reads and serves the winner's token.
	e := newTokenEnv(t)
	other := "rt-" + tokenMark + "-env2"
	e.pin.valid[other] = e.clock.Now().Add(time.Hour)
	e.pin.holdUntil(2)
	oa, ob := e.options(), e.options()
	ob.InitialRefreshToken = other
	a, b := connector.NewTokenKeeper(oa), connector.NewTokenKeeper(ob)
	e.run(a)
	e.run(b)
	e.stored(0)
	require.Eventually(t, func() bool {
		ta, errA := a.Token(t.Context())
		tb, errB := b.Token(t.Context())
		return errA == nil && errB == nil && ta == tb
	}, waitFor, tick)
	assert.Len(t, e.logs.lines("oauth token was stored by another writer"), 1)
}

func TestTokenKeeperRejectsABadKeyLength(t *testing.T) {
	e := newTokenEnv(t)
	o := e.options()
	o.Key = []byte("short")
	k := connector.NewTokenKeeper(o)
	require.ErrorContains(t, k.Run(t.Context()), connector.SecretsKeyEnv)
	_, err := k.Token(t.Context())
	require.ErrorContains(t, err, connector.SecretsKeyEnv)
	assert.Equal(t, connector.CheckFail, k.Check().State)
}

func TestTokenKeeperStoresARefreshInFlightWhenItsCallerGivesUp(t *testing.T) {
	// The caller's context ends while the refresh is at Pinterest: the
	// answer carries the only live refresh token, so it is awaited and
	// stored all the same.
	e := newTokenEnv(t)
	k := connector.NewTokenKeeper(e.options())
	e.pin.holdUntil(2)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = k.Token(ctx)
	}()
	require.Eventually(t, func() bool { return e.pin.waiting() == 1 }, waitFor, tick)
	cancel()
	// Release the gate with a second (refused) call.
	_, err := e.pin.RefreshToken(t.Context(), "app", "secret", "nope")
	require.Error(t, err)
	<-done
	e.stored(0)
	assert.Equal(t, []string{"rt-" + tokenMark + "-1"}, e.pin.validRefreshTokens())
	r := connector.NewTokenKeeper(e.options())
	assert.Equal(t, "at-"+tokenMark+"-1", token(t, r), "a restart finds the grant")
	assert.Equal(t, 2, e.pin.callCount())
}

// An access token Pinterest refuses (401) before its expiry is not handed
// out again: the next Token refreshes, also for a replica that reads the
// refused one from the bucket; the check says why in between.
func TestTokenKeeperRefreshesAnAccessTokenPinterestRefused(t *testing.T) {
	e := newTokenEnv(t)
	k := connector.NewTokenKeeper(e.options())
	at1 := token(t, k)
	k.Rejected("some-older-token") // not the current one: nothing happens
	assert.Equal(t, connector.CheckOK, k.Check().State)
	k.Rejected(at1)
	c := k.Check()
	assert.Equal(t, connector.CheckFail, c.State)
	assert.Contains(t, c.Detail, "Pinterest refused it (401)")
	assert.NotContains(t, c.Detail, at1)
	at2 := token(t, k)
	assert.NotEqual(t, at1, at2, "refreshed at once, well before its expiry")
	assert.Equal(t, 2, e.pin.callCount())
	assert.Equal(t, connector.CheckOK, k.Check().State, k.Check().Detail)
}
