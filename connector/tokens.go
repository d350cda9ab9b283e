package connector

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/cohort-connector/cohort-connector/destinations"
)

// SecretsKeyEnv names the environment variable holding the 32-byte key that
// encrypts the stored OAuth tokens. Errors about the key name it, so an
// operator knows what to fix.
const SecretsKeyEnv = "CONNECTOR_SECRETS_KEY"

// CheckOAuthToken prefixes the readiness check of a TokenKeeper: its name
// is "oauth_token_<ad_account_id>".
const CheckOAuthToken = "oauth_token"

// Defaults of TokenKeeperOptions.
const (
	// DefaultTokenRefreshBefore: the access token is refreshed when it
	// expires within this, or within half its lifetime when that is
	// shorter (a token living 10 minutes is refreshed after 5).
	DefaultTokenRefreshBefore = 10 * time.Minute
	// DefaultTokenWarnRefreshWithin: warn (and fail the check) when the
	// refresh token expires within this. The refresh token is renewed
	// (by a refresh, which rotates it) once it expires within twice this,
	// so the warning means renewal has been failing for that long.
	DefaultTokenWarnRefreshWithin = 7 * 24 * time.Hour
	// DefaultTokenInterval is the longest Run sleeps before looking at
	// the clock again.
	DefaultTokenInterval = time.Minute
	// DefaultTokenRaceWait is how long a keeper whose refresh was refused
	// waits for another replica's rotated token to appear in the bucket.
	DefaultTokenRaceWait = 2 * time.Second
)

const (
	tokenRetryMin = 5 * time.Second // first retry of a failed refresh or store
	tokenRetryMax = 5 * time.Minute // retries double up to this
	// tokenRenewSpacing: a refresh made only to renew the refresh token
	// is not repeated sooner than this (a grant whose refresh token does
	// not move its expiry must not cause a refresh per loop).
	tokenRenewSpacing = time.Hour
	tokenValueVersion = byte(1) // first byte of a stored value
	tokenRaceRead     = 50 * time.Millisecond
	// tokenRefreshTimeout bounds one refresh call, which a shutdown does
	// not cancel (see refresh).
	tokenRefreshTimeout = 30 * time.Second
)

// TokenKeeperOptions configure a TokenKeeper.
type TokenKeeperOptions struct {
	// KV is the state bucket; the keeper uses the key "token.<Account>".
	KV jetstream.KeyValue
	// Key is the 32-byte AES-256-GCM key (CONNECTOR_SECRETS_KEY) that
	// encrypts the stored value.
	Key       []byte
	Refresher destinations.TokenRefresher
	// Account is the ad account id: the key, and the logs' and metrics'
	// account label.
	Account   string
	AppID     string
	AppSecret string
	// InitialRefreshToken comes from the environment. It is used only
	// while the bucket holds no token for the account: once a refresh
	// token is stored, the stored one wins (the environment's was rotated
	// away by the first refresh).
	InitialRefreshToken string
	Logger              zerolog.Logger
	Metrics             *TokenMetrics // nil: no metrics
	Now                 func() time.Time
	// RefreshBefore: refresh the access token when it expires within
	// this, or within half its lifetime when that is shorter (0:
	// DefaultTokenRefreshBefore).
	RefreshBefore time.Duration
	// WarnRefreshWithin: warn and fail the check when the refresh token
	// expires within this (0: DefaultTokenWarnRefreshWithin).
	WarnRefreshWithin time.Duration
	// Interval is the longest Run sleeps between looks at the clock (0:
	// DefaultTokenInterval). Every due time is computed from Now.
	Interval time.Duration
	// RaceWait: after a refusal, how long to wait for another replica's
	// rotated token to appear in the bucket (0: DefaultTokenRaceWait).
	RaceWait time.Duration
	// Replica is written as "by" in the stored value (default:
	// hostname/pid).
	Replica string
}

// storedToken is the value of "token.<account>", JSON, encrypted as a
// whole.
type storedToken struct {
	RefreshToken     string    `json:"refresh_token"`
	RefreshExpiresAt time.Time `json:"refresh_expires_at"`
	AccessToken      string    `json:"access_token"`
	AccessExpiresAt  time.Time `json:"access_expires_at"`
	UpdatedAt        time.Time `json:"updated_at"`
	By               string    `json:"by"`
}

// TokenKeeper keeps one ad account's OAuth access token valid: it refreshes
// it before it expires, stores the rotated refresh token durably and
// encrypted in the state bucket, and shares the access token with the
// other replicas through that bucket. It is a destinations.TokenSource.
//
// # Ordering of refresh and store
//
// Pinterest rotates the refresh token on use: the one sent dies at once.
// A successful refresh therefore makes the new grant the only truth, before
// it is stored: it is kept in memory and stored with optimistic
// concurrency (Create when the key is absent, else Update at the revision
// the used token was read from). When storing fails (NATS down), the keeper
// serves the new access token, keeps retrying the store with backoff (an
// error log per new grant or new error, not per attempt; the check fails,
// saying a restart now would lose the token), and the next refresh uses the
// grant in memory, never the stored (dead) one.
//
// # Replicas
//
// Every replica runs a keeper on the same key. A keeper that finds a
// still-valid access token in the bucket uses it without refreshing, so
// normally one replica refreshes and the others adopt. Two replicas that
// refresh at once send the same refresh token: one wins, the other is
// refused (ReasonAuth); the refused one re-reads the bucket, waiting up to
// RaceWait for the winner's value, adopts it when its access token is
// fresh, or else retries once with the stored refresh token before
// declaring failure. A store whose revision moved (another replica, or an
// operator, wrote since) re-reads and adopts the stored value.
//
// # Wrong key
//
// A stored value that does not decrypt is a loud error naming
// CONNECTOR_SECRETS_KEY; it is never overwritten (replacing it with the
// environment's refresh token would lose the rotated one). The operator
// sets CONNECTOR_SECRETS_KEY back to the key that wrote it. Only if that
// key is lost: re-authorise the app in Pinterest, put the new refresh token
// in the environment, and delete the key (nats kv del <bucket>
// token.<ad_account_id>); the keeper then starts from the environment's.
//
// Tokens never appear in logs, errors, checks or metrics.
type TokenKeeper struct {
	o      TokenKeeperOptions
	key    string
	aead   cipher.AEAD
	cfgErr error
	sem    chan struct{} // one sync (read, refresh, store) at a time

	mu              sync.Mutex
	cur             *storedToken // newest known; nil before the first load
	rev             uint64       // revision cur was read or stored as (0: key absent)
	pending         bool         // cur is a grant not stored yet
	storeErr        string       // last store error logged
	storeLoggedFor  time.Time    // UpdatedAt of the grant whose store failure was logged
	storeAttempts   int
	storeRetryAt    time.Time
	failing         bool
	failAttempts    int
	failedAt        time.Time
	failingSince    time.Time // the first failure of the current episode
	failReason      string
	failMsg         string // scrubbed
	nextAttempt     time.Time
	lastRefresh     time.Time
	warnedRefreshAt time.Time // RefreshExpiresAt of the last expiry warning
	secrets         []string  // tokens seen, to scrub them from foreign errors

	// rejected is the access token Pinterest refused (401) before its
	// expiry, if any: never valid again, and refreshed at once.
	rejected   atomic.Pointer[string]
	rejectedAt atomic.Int64 // Unix ns
}

// NewTokenKeeper returns a keeper; call Run to keep the token fresh. A key
// that is not 32 bytes is reported by Run, Token and Check.
func NewTokenKeeper(o TokenKeeperOptions) *TokenKeeper {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.RefreshBefore <= 0 {
		o.RefreshBefore = DefaultTokenRefreshBefore
	}
	if o.WarnRefreshWithin <= 0 {
		o.WarnRefreshWithin = DefaultTokenWarnRefreshWithin
	}
	if o.Interval <= 0 {
		o.Interval = DefaultTokenInterval
	}
	if o.RaceWait <= 0 {
		o.RaceWait = DefaultTokenRaceWait
	}
	if o.Replica == "" {
		host, _ := os.Hostname()
		o.Replica = fmt.Sprintf("%s/%d", host, os.Getpid())
	}
	k := &TokenKeeper{o: o, key: "token." + o.Account, sem: make(chan struct{}, 1)}
	k.o.Logger = o.Logger.With().Str("ad_account_id", o.Account).Logger()
	if len(o.Key) != 32 {
		k.cfgErr = fmt.Errorf("%s must be 32 bytes (AES-256), got %d", SecretsKeyEnv, len(o.Key))
	} else if block, err := aes.NewCipher(o.Key); err != nil {
		k.cfgErr = fmt.Errorf("%s: %w", SecretsKeyEnv, err)
	} else if k.aead, err = cipher.NewGCM(block); err != nil {
		k.cfgErr = fmt.Errorf("%s: %w", SecretsKeyEnv, err)
	}
	if o.InitialRefreshToken != "" {
		k.secrets = append(k.secrets, o.InitialRefreshToken)
	}
	if o.Metrics != nil {
		o.Metrics.init(o.Account)
	}
	return k
}

// Run keeps the token fresh until ctx is cancelled (then it returns nil).
// It returns an error only for a bad configuration (the key's length).
func (k *TokenKeeper) Run(ctx context.Context) error {
	if k.cfgErr != nil {
		return k.cfgErr
	}
	for {
		if !k.step(ctx) {
			return nil
		}
		now := k.o.Now()
		wait := k.nextWake(now).Sub(now)
		wait = min(max(wait, min(time.Second, k.o.Interval)), k.o.Interval)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// Token returns the current access token. When there is none, or it has
// expired, it reads the bucket and refreshes synchronously; after a failed
// refresh it does not call Pinterest again before the retry time (Run's).
// The error is a *destinations.Error: the refresher's own reason for a
// passing failure (server_error, timeout, rate_limited, shutdown), else
// ReasonAuth.
func (k *TokenKeeper) Token(ctx context.Context) (string, error) {
	if k.cfgErr != nil {
		return "", &destinations.Error{Reason: destinations.ReasonAuth, Err: k.cfgErr}
	}
	if tok, ok := k.valid(); ok {
		return tok, nil
	}
	select {
	case k.sem <- struct{}{}:
	case <-ctx.Done():
		return "", &destinations.Error{Reason: destinations.ReasonShutdown, Err: ctx.Err()}
	}
	defer func() { <-k.sem }()
	if tok, ok := k.valid(); ok {
		return tok, nil
	}
	k.mu.Lock()
	backingOff := k.failing && k.o.Now().Before(k.nextAttempt)
	k.mu.Unlock()
	if !backingOff {
		k.sync(ctx)
		if tok, ok := k.valid(); ok {
			return tok, nil
		}
	}
	return "", k.tokenErr()
}

// valid returns the access token in memory when it has not expired.
func (k *TokenKeeper) valid() (string, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cur == nil || k.cur.AccessToken == "" || !k.o.Now().Before(k.cur.AccessExpiresAt) || k.isRejected(k.cur.AccessToken) {
		return "", false
	}
	return k.cur.AccessToken, true
}

// Rejected is told that Pinterest refused token (401, an OAuth call of the
// client): when it is the current access token, it no longer counts as
// valid whatever its expiry, so the next Token refreshes; and when the
// refresh is refused too (a revoked grant), the check fails saying so.
// Implements destinations.TokenRejecter.
func (k *TokenKeeper) Rejected(token string) {
	if token == "" || k.isRejected(token) {
		return
	}
	k.mu.Lock()
	current := k.cur != nil && k.cur.AccessToken == token
	k.mu.Unlock()
	if !current {
		return // an older token, already replaced
	}
	k.rejected.Store(&token)
	k.rejectedAt.Store(k.o.Now().UnixNano())
	k.o.Logger.Warn().Msg("Pinterest refused the oauth access token before its expiry: refreshing it")
}

func (k *TokenKeeper) isRejected(token string) bool {
	r := k.rejected.Load()
	return r != nil && *r == token
}

func (k *TokenKeeper) tokenErr() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	reason := destinations.ReasonAuth
	switch destinations.Reason(k.failReason) {
	case destinations.ReasonServer, destinations.ReasonTimeout, destinations.ReasonRateLimited, destinations.ReasonShutdown:
		reason = destinations.Reason(k.failReason)
	}
	msg := "no valid OAuth access token for ad account " + k.o.Account
	if k.failing {
		msg += fmt.Sprintf(": %s (next attempt at %s)", k.failMsg, k.nextAttempt.UTC().Format(time.RFC3339))
	}
	return &destinations.Error{Reason: reason, Message: msg}
}

// Check is the keeper's readiness check, "oauth_token_<account>": failing
// while the last refresh failed, there is no valid access token, the
// refresh token expires within WarnRefreshWithin, or a rotated refresh
// token is held in memory only. Safe for concurrent use.
func (k *TokenKeeper) Check() Check {
	c := Check{Name: CheckOAuthToken + "_" + k.o.Account, State: CheckOK}
	if k.cfgErr != nil {
		c.State, c.Detail = CheckFail, k.cfgErr.Error()
		return c
	}
	now := k.o.Now()
	k.mu.Lock()
	defer k.mu.Unlock()
	var problems []string
	if k.failing {
		problems = append(problems, fmt.Sprintf("last refresh failed at %s (%s: %s); next attempt at %s",
			ts(k.failedAt), k.failReason, k.failMsg, ts(k.nextAttempt)))
	}
	switch {
	case k.cur == nil:
		problems = append(problems, "no access token yet")
	case !now.Before(k.cur.AccessExpiresAt):
		problems = append(problems, "no valid access token: it expired at "+ts(k.cur.AccessExpiresAt))
	case k.isRejected(k.cur.AccessToken):
		problems = append(problems, "no valid access token: Pinterest refused it (401) at "+ts(time.Unix(0, k.rejectedAt.Load())))
	}
	if k.cur != nil && !k.cur.RefreshExpiresAt.IsZero() && k.cur.RefreshExpiresAt.Sub(now) < k.o.WarnRefreshWithin {
		problems = append(problems, fmt.Sprintf("refresh token expires at %s (within %s): when it does, re-authorise the app and set a new refresh token",
			ts(k.cur.RefreshExpiresAt), k.o.WarnRefreshWithin))
	}
	if k.pending {
		problems = append(problems, fmt.Sprintf("rotated refresh token obtained at %s is held in memory only: storing it in bucket %s fails (%s); a restart now would lose it",
			ts(k.cur.UpdatedAt), k.o.KV.Bucket(), k.storeErr))
	}
	if len(problems) > 0 {
		c.State, c.Detail = CheckFail, strings.Join(problems, "; ")
		return c
	}
	c.Detail = fmt.Sprintf("access token valid until %s", ts(k.cur.AccessExpiresAt))
	if !k.cur.RefreshExpiresAt.IsZero() {
		c.Detail += ", refresh token until " + ts(k.cur.RefreshExpiresAt)
	}
	return c
}

// Refreshed is when the grant in use was obtained, and by which replica
// (the "by" of the stored value); zero when there is none yet. Safe for
// concurrent use.
func (k *TokenKeeper) Refreshed() (at time.Time, by string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cur == nil {
		return time.Time{}, ""
	}
	return k.cur.UpdatedAt, k.cur.By
}

// Expiring reports whether the token needs a person soon: the refresh
// token expires within WarnRefreshWithin, or the last refresh failed for
// a reason no retry mends (Pinterest refused it: a revoked or expired
// grant; or the stored token does not decrypt with CONNECTOR_SECRETS_KEY).
// A refresh that failed for a passing reason (5xx, timeout, the state
// bucket) is retried, not reported here. Safe for concurrent use.
func (k *TokenKeeper) Expiring() bool {
	now := k.o.Now()
	k.mu.Lock()
	defer k.mu.Unlock()
	refused := k.failing && (k.failReason == string(destinations.ReasonAuth) || k.failReason == "secrets_key")
	return refused || k.cur != nil && !k.cur.RefreshExpiresAt.IsZero() && k.cur.RefreshExpiresAt.Sub(now) < k.o.WarnRefreshWithin
}

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// step does what is due now; false when ctx ended.
func (k *TokenKeeper) step(ctx context.Context) bool {
	select {
	case k.sem <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	defer func() { <-k.sem }()
	now := k.o.Now()
	k.mu.Lock()
	cur, failing, next, pending, storeAt := k.cur, k.failing, k.nextAttempt, k.pending, k.storeRetryAt
	k.mu.Unlock()
	if pending && !now.Before(storeAt) {
		k.store(ctx)
	}
	switch {
	case failing:
		if !now.Before(next) {
			k.sync(ctx)
		}
	case cur == nil || !now.Before(k.refreshAt(cur, now)):
		k.sync(ctx)
	}
	k.warnExpiry()
	return ctx.Err() == nil
}

// nextWake is when something may be due: a retry, a store retry, or the
// refresh time.
func (k *TokenKeeper) nextWake(now time.Time) time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	var at time.Time
	switch {
	case k.failing:
		at = k.nextAttempt
	case k.cur == nil:
		at = now
	default:
		at = k.refreshAt(k.cur, now)
	}
	if k.pending && k.storeRetryAt.Before(at) {
		at = k.storeRetryAt
	}
	return at
}

// refreshAt is when t must be refreshed: before the access token expires
// (RefreshBefore, at most half its lifetime), or to renew the refresh
// token once it expires within twice WarnRefreshWithin (not sooner than
// tokenRenewSpacing after the last refresh).
func (k *TokenKeeper) refreshAt(t *storedToken, now time.Time) time.Time {
	if t.AccessToken == "" || k.isRejected(t.AccessToken) {
		return now
	}
	before := k.o.RefreshBefore
	if life := t.AccessExpiresAt.Sub(t.UpdatedAt); life > 0 && life/2 < before {
		before = life / 2
	}
	at := t.AccessExpiresAt.Add(-before)
	if !t.RefreshExpiresAt.IsZero() {
		renew := t.RefreshExpiresAt.Add(-2 * k.o.WarnRefreshWithin)
		if earliest := t.UpdatedAt.Add(tokenRenewSpacing); renew.Before(earliest) {
			renew = earliest
		}
		if renew.Before(at) {
			at = renew
		}
	}
	return at
}

// errUndecryptable marks a stored value that cannot be opened.
var errUndecryptable = errors.New("stored token does not decrypt")

// read returns the stored token (nil when the key is absent) and its
// revision.
func (k *TokenKeeper) read(ctx context.Context) (*storedToken, uint64, error) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	e, err := k.o.KV.Get(rctx, k.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("reading %s from bucket %s: %w", k.key, k.o.KV.Bucket(), err)
	}
	t, err := k.open(e.Value())
	if err != nil {
		return nil, e.Revision(), fmt.Errorf("%w: %s revision %d in bucket %s: %v; set %s to the key that wrote it "+
			"(the value is left untouched; if that key is lost, re-authorise the app, set the new refresh token "+
			"in the environment and delete the key: nats kv del %s %s)",
			errUndecryptable, k.key, e.Revision(), k.o.KV.Bucket(), err, SecretsKeyEnv, k.o.KV.Bucket(), k.key)
	}
	k.remember(t.RefreshToken, t.AccessToken)
	return t, e.Revision(), nil
}

// seal encrypts t: version byte, nonce, AES-256-GCM sealed JSON; the key
// name is the additional data, so a value copied to another account's key
// does not open.
func (k *TokenKeeper) seal(t storedToken) ([]byte, error) {
	plain, err := json.Marshal(t)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out := append([]byte{tokenValueVersion}, nonce...)
	return k.aead.Seal(out, nonce, plain, []byte(k.key)), nil
}

func (k *TokenKeeper) open(v []byte) (*storedToken, error) {
	ns := k.aead.NonceSize()
	if len(v) < 1+ns+k.aead.Overhead() {
		return nil, fmt.Errorf("value too short (%d bytes)", len(v))
	}
	if v[0] != tokenValueVersion {
		return nil, fmt.Errorf("unknown value version %d", v[0])
	}
	plain, err := k.aead.Open(nil, v[1:1+ns], v[1+ns:], []byte(k.key))
	if err != nil {
		return nil, fmt.Errorf("wrong %s? (%v)", SecretsKeyEnv, err)
	}
	var t storedToken
	if err := json.Unmarshal(plain, &t); err != nil {
		return nil, fmt.Errorf("decrypted value is not a token record: %v", err)
	}
	return &t, nil
}

// merge takes in what the bucket holds. A grant of ours not yet stored
// stays unless the bucket moved past the revision it was refreshed from
// (someone else wrote since: theirs is newer). A key that vanished while
// we hold a token gets ours stored back (it is the newest one known).
func (k *TokenKeeper) merge(t *storedToken, rev uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	switch {
	case t == nil && k.cur != nil:
		if k.rev != 0 {
			k.o.Logger.Warn().Str("bucket", k.o.KV.Bucket()).Str("key", k.key).
				Msg("stored oauth token vanished from the bucket: storing the one in memory again")
		}
		k.rev, k.pending = 0, true
	case t == nil:
	case k.pending && rev == k.rev:
	default:
		if k.pending {
			k.o.Logger.Warn().Str("bucket", k.o.KV.Bucket()).Uint64("revision", rev).Str("by", t.By).
				Msg("oauth token was stored by another writer since our refresh: using theirs, ours is dropped")
		}
		k.cur, k.rev, k.pending = t, rev, false
		k.setExpiryMetrics()
	}
}

// sync reads the bucket, adopts a fresh stored token or refreshes, and
// stores a new grant. The caller holds sem.
func (k *TokenKeeper) sync(ctx context.Context) {
	if !k.loadBucket(ctx) {
		return
	}
	cur, base, fresh := k.inMemory()
	if fresh {
		return
	}
	used := k.o.InitialRefreshToken
	if cur != nil {
		used = cur.RefreshToken
	}
	if used == "" {
		k.fail(errors.New("no refresh token: none is stored and none is set in the environment"), string(destinations.ReasonAuth), false)
		return
	}
	r, adopted, err := k.refreshRacing(ctx, used, base)
	if adopted {
		return
	}
	if err != nil {
		k.fail(err, string(destinations.ReasonOf(err)), true)
		return
	}
	k.keepGrant(ctx, r, cur)
}

// loadBucket reads the stored token and merges it into memory. It decides
// whether sync goes on: not when the stored value cannot be decrypted, nor
// when the bucket is unreadable and no token is in memory; with a token in
// memory an unreadable bucket is only warned about. When it returns false
// it has recorded the failure.
func (k *TokenKeeper) loadBucket(ctx context.Context) bool {
	t, rev, err := k.read(ctx)
	switch {
	case errors.Is(err, errUndecryptable):
		k.fail(err, "secrets_key", false)
		return false
	case err != nil:
		k.mu.Lock()
		have := k.cur != nil
		k.mu.Unlock()
		if !have {
			// Without the bucket, using the environment's token could
			// rotate away a chain that is stored there.
			k.fail(err, "state_bucket", false)
			return false
		}
		k.o.Logger.Warn().Err(err).Msg("state bucket unreadable: going on with the oauth token in memory")
	default:
		k.merge(t, rev)
	}
	return true
}

// inMemory returns the token in memory (nil: none) and the bucket revision
// it was read at, and decides whether it is fresh: not yet due for a
// refresh by refreshAt. A fresh token marks the keeper healthy.
func (k *TokenKeeper) inMemory() (cur *storedToken, rev uint64, fresh bool) {
	now := k.o.Now()
	k.mu.Lock()
	defer k.mu.Unlock()
	cur, rev = k.cur, k.rev
	fresh = cur != nil && now.Before(k.refreshAt(cur, now))
	if fresh {
		k.succeedLocked()
	}
	return cur, rev, fresh
}

// tokenRefresh is one refresh: the refresh token sent, the bucket revision
// the token was read at, and the grant Pinterest answered with.
type tokenRefresh struct {
	used  string
	base  uint64
	grant destinations.TokenGrant
}

// refreshRacing refreshes with used, read at revision base, and owns the
// race with the other replicas: when Pinterest refuses the token (an auth
// error, ctx not ended), another replica may have rotated it. It then
// waits for that replica's value, and adopts it when it is fresh (adopted:
// there is no grant to keep), or retries once with its refresh token. The
// returned refresh names the token and revision the grant came from.
func (k *TokenKeeper) refreshRacing(ctx context.Context, used string, base uint64) (r tokenRefresh, adopted bool, err error) {
	r = tokenRefresh{used: used, base: base}
	r.grant, err = k.refresh(ctx, used)
	if err == nil || destinations.ReasonOf(err) != destinations.ReasonAuth || ctx.Err() != nil {
		return r, false, err
	}
	// Another replica may have rotated the token we sent: wait for
	// its value, then use it or retry once with its refresh token.
	t, rev, ok := k.awaitOther(ctx, used)
	if !ok {
		return r, false, err
	}
	k.merge(t, rev)
	if k.adoptOther(t, rev) {
		return r, true, nil
	}
	r = tokenRefresh{used: t.RefreshToken, base: rev}
	r.grant, err = k.refresh(ctx, r.used)
	return r, false, err
}

// adoptOther decides whether another replica's token t, stored at revision
// rev and already merged, is fresh enough to use without a refresh of our
// own. If it is, the keeper is marked healthy and the log says so.
func (k *TokenKeeper) adoptOther(t *storedToken, rev uint64) bool {
	now := k.o.Now()
	if !now.Before(k.refreshAt(t, now)) {
		return false
	}
	k.mu.Lock()
	k.succeedLocked()
	k.mu.Unlock()
	k.o.Logger.Info().Uint64("revision", rev).Str("by", t.By).
		Msg("oauth token refreshed by another replica: using it")
	return true
}

// keepGrant makes the grant of refresh r the token in memory, based on r's
// revision and pending its store, and stores it. cur is the token that was
// in memory before the refresh (nil: none).
func (k *TokenKeeper) keepGrant(ctx context.Context, r tokenRefresh, cur *storedToken) {
	// The used refresh token is dead now: the grant is the only truth.
	k.remember(r.grant.RefreshToken, r.grant.AccessToken)
	now := k.o.Now()
	nt := grantToken(r, cur, now, k.o.Replica)
	k.mu.Lock()
	k.cur, k.rev, k.pending, k.lastRefresh = nt, r.base, true, now
	k.storeAttempts, k.storeRetryAt = 0, time.Time{}
	k.succeedLocked()
	k.setExpiryMetrics()
	k.mu.Unlock()
	if m := k.o.Metrics; m != nil {
		m.refreshes.WithLabelValues(k.o.Account, "ok").Inc()
	}
	k.o.Logger.Info().Time("access_expires_at", nt.AccessExpiresAt).Time("refresh_expires_at", nt.RefreshExpiresAt).
		Msg("oauth token refreshed")
	// Not cancelled by a shutdown either: the grant exists only here.
	k.store(context.WithoutCancel(ctx))
}

// grantToken is the value to store for refresh r's grant, made at now by
// replica by. It decides which refresh token the value holds: the grant's
// when it rotated it; otherwise the one used, with the refresh expiry of
// cur (the token in memory before the refresh; none when cur is nil).
func grantToken(r tokenRefresh, cur *storedToken, now time.Time, by string) *storedToken {
	g := r.grant
	nt := &storedToken{
		RefreshToken: g.RefreshToken, RefreshExpiresAt: g.RefreshExpiresAt,
		AccessToken: g.AccessToken, AccessExpiresAt: g.AccessExpiresAt,
		UpdatedAt: now, By: by,
	}
	if nt.RefreshToken == "" { // not rotated: keep the one used
		nt.RefreshToken = r.used
		if cur != nil {
			nt.RefreshExpiresAt = cur.RefreshExpiresAt
		}
	}
	return nt
}

// refresh sends the refresh token. The call is not cancelled with ctx (a
// shutdown, or a caller giving up): once sent, Pinterest may have rotated
// the token, and only a completed answer tells the new one. It is bounded
// by tokenRefreshTimeout instead.
func (k *TokenKeeper) refresh(ctx context.Context, refreshToken string) (destinations.TokenGrant, error) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), tokenRefreshTimeout)
	defer cancel()
	return k.o.Refresher.RefreshToken(rctx, k.o.AppID, k.o.AppSecret, refreshToken)
}

// awaitOther polls the bucket for up to RaceWait for a stored token whose
// refresh token differs from used.
func (k *TokenKeeper) awaitOther(ctx context.Context, used string) (*storedToken, uint64, bool) {
	deadline := time.Now().Add(k.o.RaceWait)
	for {
		t, rev, err := k.read(ctx)
		if err == nil && t != nil && t.RefreshToken != used {
			return t, rev, true
		}
		if errors.Is(err, errUndecryptable) || !time.Now().Before(deadline) {
			return nil, 0, false
		}
		tm := time.NewTimer(tokenRaceRead)
		select {
		case <-ctx.Done():
			tm.Stop()
			return nil, 0, false
		case <-tm.C:
		}
	}
}

// store writes the grant held in memory: Create when the key is absent,
// else Update at the revision it was refreshed from.
func (k *TokenKeeper) store(ctx context.Context) {
	for range 2 { // a second round after finding the key deleted
		k.mu.Lock()
		if !k.pending {
			k.mu.Unlock()
			return
		}
		t, base := *k.cur, k.rev
		k.mu.Unlock()
		val, err := k.seal(t)
		if err != nil {
			k.storeFailed(t, err)
			return
		}
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var rev uint64
		if base == 0 {
			rev, err = k.o.KV.Create(sctx, k.key, val)
		} else {
			rev, err = k.o.KV.Update(sctx, k.key, val, base)
		}
		cancel()
		switch {
		case err == nil:
			k.mu.Lock()
			if k.cur != nil && k.cur.UpdatedAt.Equal(t.UpdatedAt) {
				k.rev, k.pending = rev, false
			}
			recovered := k.storeErr != ""
			k.storeErr, k.storeAttempts = "", 0
			k.mu.Unlock()
			ev := k.o.Logger.Info()
			if recovered {
				ev = k.o.Logger.Warn()
			}
			ev.Str("bucket", k.o.KV.Bucket()).Uint64("revision", rev).Msg("oauth token stored")
			return
		case errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch):
			st, srev, rerr := k.read(ctx)
			if rerr != nil {
				k.storeFailed(t, rerr)
				return
			}
			k.merge(st, srev) // theirs when present; a deleted key: ours, created again
		default:
			k.storeFailed(t, err)
			return
		}
	}
}

// storeFailed keeps the grant pending and schedules a retry; it logs at
// error once per grant and per distinct error.
func (k *TokenKeeper) storeFailed(t storedToken, err error) {
	msg := k.scrub(err.Error())
	k.mu.Lock()
	k.storeAttempts++
	retry := k.o.Now().Add(tokenBackoff(k.storeAttempts))
	k.storeRetryAt = retry
	changed := msg != k.storeErr || !t.UpdatedAt.Equal(k.storeLoggedFor)
	k.storeErr, k.storeLoggedFor = msg, t.UpdatedAt
	k.mu.Unlock()
	if changed {
		k.o.Logger.Error().Str("bucket", k.o.KV.Bucket()).Str("error", msg).Time("next_attempt", retry).
			Msg("storing the rotated oauth refresh token failed: it is kept in memory and stored again until it works; a restart now would lose it")
	}
}

// fail records a failed refresh (or a failure to get to one).
func (k *TokenKeeper) fail(err error, reason string, refreshed bool) {
	msg := k.scrub(err.Error())
	now := k.o.Now()
	k.mu.Lock()
	k.failAttempts++
	// A repeat of the same failure is not logged again at error level:
	// the episode's end says how many attempts failed.
	repeat := k.failing && k.failReason == reason && k.failMsg == msg
	if !k.failing {
		k.failingSince = now
	}
	k.failing, k.failedAt, k.failReason, k.failMsg = true, now, reason, msg
	k.nextAttempt = now.Add(tokenBackoff(k.failAttempts))
	next, attempts := k.nextAttempt, k.failAttempts
	k.mu.Unlock()
	if m := k.o.Metrics; m != nil {
		if refreshed {
			m.refreshes.WithLabelValues(k.o.Account, "failed").Inc()
		}
		m.failing.WithLabelValues(k.o.Account).Set(1)
	}
	ev := k.o.Logger.Error()
	if repeat {
		ev = k.o.Logger.Debug()
	}
	ev.Str("reason", reason).Str("error", msg).Int("failed_attempts", attempts).Time("next_attempt", next).
		Msg("oauth token refresh failed")
}

// succeedLocked clears the failure state; k.mu is held.
func (k *TokenKeeper) succeedLocked() {
	if k.failing {
		k.o.Logger.Info().Int("failed_attempts", k.failAttempts).Str("last_reason", k.failReason).
			Str("lasted", k.o.Now().Sub(k.failingSince).Round(time.Millisecond).String()).Msg("oauth token valid again")
	}
	k.failing, k.failAttempts, k.failReason, k.failMsg = false, 0, "", ""
	if m := k.o.Metrics; m != nil {
		m.failing.WithLabelValues(k.o.Account).Set(0)
	}
}

// setExpiryMetrics publishes cur's expiries; k.mu is held.
func (k *TokenKeeper) setExpiryMetrics() {
	if m := k.o.Metrics; m != nil && k.cur != nil {
		m.accessExpiry.WithLabelValues(k.o.Account).Set(unixSeconds(k.cur.AccessExpiresAt))
		m.refreshExpiry.WithLabelValues(k.o.Account).Set(unixSeconds(k.cur.RefreshExpiresAt))
	}
}

func unixSeconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

// warnExpiry logs a warning once per refresh token expiring within
// WarnRefreshWithin.
func (k *TokenKeeper) warnExpiry() {
	now := k.o.Now()
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cur == nil || k.cur.RefreshExpiresAt.IsZero() || k.cur.RefreshExpiresAt.Sub(now) >= k.o.WarnRefreshWithin ||
		k.warnedRefreshAt.Equal(k.cur.RefreshExpiresAt) {
		return
	}
	k.warnedRefreshAt = k.cur.RefreshExpiresAt
	k.o.Logger.Warn().Time("refresh_expires_at", k.cur.RefreshExpiresAt).Dur("within", k.o.WarnRefreshWithin).
		Msg("oauth refresh token expires soon: when it does, re-authorise the app and set a new refresh token")
}

// remember records tokens to scrub from errors the keeper did not write.
func (k *TokenKeeper) remember(tokens ...string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, t := range tokens {
		if t != "" && !contains(k.secrets, t) {
			k.secrets = append(k.secrets, t)
		}
	}
	if n := len(k.secrets); n > 16 {
		k.secrets = append(k.secrets[:0:0], k.secrets[n-16:]...)
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// scrub removes every known token from s.
func (k *TokenKeeper) scrub(s string) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, t := range k.secrets {
		s = strings.ReplaceAll(s, t, "[redacted]")
	}
	return s
}

// tokenBackoff is the wait after the n-th consecutive failure: 5s
// doubling to 5m.
func tokenBackoff(n int) time.Duration {
	d := tokenRetryMin
	for i := 1; i < n && d < tokenRetryMax; i++ {
		d *= 2
	}
	return min(d, tokenRetryMax)
}

// TokenMetrics are the token keepers' metrics; the only label is the ad
// account (bounded by the configuration).
type TokenMetrics struct {
	refreshes     *prometheus.CounterVec // account, result
	accessExpiry  *prometheus.GaugeVec
	refreshExpiry *prometheus.GaugeVec
	failing       *prometheus.GaugeVec
}

// NewTokenMetrics creates the metrics and registers them on reg, with every
// account of accounts pre-initialised.
func NewTokenMetrics(reg prometheus.Registerer, accounts []string) *TokenMetrics {
	m := &TokenMetrics{
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cohort_connector_oauth_refreshes_total",
			Help: "OAuth token refreshes sent to Pinterest, by ad account and result (ok, failed).",
		}, []string{"account", "result"}),
		accessExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cohort_connector_oauth_access_token_expiry_timestamp_seconds",
			Help: "When the ad account's current OAuth access token expires (Unix seconds; 0: none).",
		}, []string{"account"}),
		refreshExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cohort_connector_oauth_refresh_token_expiry_timestamp_seconds",
			Help: "When the ad account's current OAuth refresh token expires (Unix seconds; 0: unknown).",
		}, []string{"account"}),
		failing: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cohort_connector_oauth_refresh_failing",
			Help: "1 while the ad account's last OAuth refresh (or the read before it) failed, else 0.",
		}, []string{"account"}),
	}
	for _, a := range accounts {
		m.init(a)
	}
	reg.MustRegister(m.refreshes, m.accessExpiry, m.refreshExpiry, m.failing)
	return m
}

func (m *TokenMetrics) init(account string) {
	m.refreshes.WithLabelValues(account, "ok")
	m.refreshes.WithLabelValues(account, "failed")
	m.accessExpiry.WithLabelValues(account)
	m.refreshExpiry.WithLabelValues(account)
	m.failing.WithLabelValues(account)
}
