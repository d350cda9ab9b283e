// Package config loads the daemon's configuration from CONNECTOR_*
// environment variables, checks it, and describes it (Usage, a startup log
// object).
//
// The variable names are a public contract. Every static variable is a field
// of Config whose struct tags (envconfig-style: envconfig, default, required,
// desc) are the single source of its name, its default and its meaning:
// Default, Load, Usage and the startup log object are all derived from them.
//
// The struct keeps envconfig's tag vocabulary (and envconfig.Process
// fills it identically, see the tests), but Load does not call
// envconfig.Process, because Process
//   - falls back to the unprefixed name when CONNECTOR_X is unset, so a stray
//     LOG_LEVEL or DATA_DIR in a container would silently configure us;
//   - stops at the first problem, where we report every problem at once;
//   - reads only the process environment, where LoadEnv takes any.
//
// Per-account variables are CONNECTOR_ACCOUNT_<NAME>_AD_ACCOUNT_ID,
// CONNECTOR_ACCOUNT_<NAME>_TAG_IDS, the conversion token
// CONNECTOR_ACCOUNT_<NAME>_TOKEN and the OAuth app
// CONNECTOR_ACCOUNT_<NAME>_APP_ID, CONNECTOR_ACCOUNT_<NAME>_APP_SECRET and
// CONNECTOR_ACCOUNT_<NAME>_REFRESH_TOKEN (all three or none; an account
// needs the token, OAuth, or both), one set for each name listed in
// CONNECTOR_ACCOUNTS, NAME in upper case. Secrets (type [Secret]) never
// print: not in errors, not in the startup log object.
// Any other CONNECTOR_* variable is an error: a typo must fail at startup,
// not fall back to a default.
package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"
)

// Prefix starts every variable this package reads.
const Prefix = "CONNECTOR_"

// Suffixes of the per-account variables.
const (
	accountVarPrefix  = Prefix + "ACCOUNT_"
	suffixAdAccountID = "_AD_ACCOUNT_ID"
	suffixToken       = "_TOKEN"
	suffixTagIDs      = "_TAG_IDS"
	suffixAppID       = "_APP_ID"
	suffixAppSecret   = "_APP_SECRET"
	suffixRefresh     = "_REFRESH_TOKEN"
)

// accountSuffixes lists every per-account suffix, longer ones before the
// suffixes they end with (_REFRESH_TOKEN before _TOKEN), so that the first
// match is the right one.
var accountSuffixes = []string{suffixAdAccountID, suffixTagIDs, suffixAppID, suffixAppSecret, suffixRefresh, suffixToken}

// Account is one Pinterest ad account and the Tag IDs that route to it.
type Account struct {
	// Name as listed in CONNECTOR_ACCOUNTS, lower case.
	Name string
	// AdAccountID from CONNECTOR_ACCOUNT_<NAME>_AD_ACCOUNT_ID: digits, at
	// most 18 (Pinterest: ^\d+$, maxLength 18).
	AdAccountID string
	// Token from CONNECTOR_ACCOUNT_<NAME>_TOKEN: the Bearer token of the
	// conversion API. Optional when the account has OAuth ([HasOAuth]).
	Token Secret
	// AppID from CONNECTOR_ACCOUNT_<NAME>_APP_ID: the Pinterest app (OAuth
	// client id), digits. AppID, AppSecret and RefreshToken are all set or
	// all empty.
	AppID string
	// AppSecret from CONNECTOR_ACCOUNT_<NAME>_APP_SECRET: that app's secret.
	AppSecret Secret
	// RefreshToken from CONNECTOR_ACCOUNT_<NAME>_REFRESH_TOKEN: the first
	// refresh token; the daemon keeps the ones it is given later
	// (encrypted with CONNECTOR_SECRETS_KEY) in CONNECTOR_STATE_BUCKET.
	RefreshToken Secret
	// TagIDs from CONNECTOR_ACCOUNT_<NAME>_TAG_IDS, comma separated: digits,
	// at most 32 each, each listed under exactly one account.
	TagIDs []string
}

// HasOAuth reports whether the account has an OAuth app and refresh token,
// which the audience API needs.
func (a Account) HasOAuth() bool {
	return a.AppID != "" && a.AppSecret != "" && a.RefreshToken != ""
}

func accountVar(name, suffix string) string {
	return accountVarPrefix + strings.ToUpper(name) + suffix
}

// Config is the daemon's whole configuration. Variable names are Prefix plus
// the envconfig tag. Durations use Go syntax (500ms, 30s, 15m); lists are
// comma separated.
type Config struct {
	NATSURL           string        `envconfig:"NATS_URL" desc:"NATS server URL(s), comma separated (nats://, tls://, ws://, wss:// or host:port); empty starts an embedded JetStream server"`
	NATSUser          string        `envconfig:"NATS_USER" desc:"user name for NATS user/password authentication; needs CONNECTOR_NATS_PASSWORD"`
	NATSPassword      Secret        `envconfig:"NATS_PASSWORD" desc:"password for NATS user/password authentication; needs CONNECTOR_NATS_USER; never logged"`
	NATSToken         Secret        `envconfig:"NATS_TOKEN" desc:"NATS authentication token; never logged"`
	NATSCredsFile     string        `envconfig:"NATS_CREDS_FILE" desc:"NATS credentials file (.creds: user JWT and NKey seed) for decentralized JWT authentication"`
	NATSNKeyFile      string        `envconfig:"NATS_NKEY_FILE" desc:"file holding the NKey seed (SU...) of a NATS NKey user"`
	NATSTLSCAFile     string        `envconfig:"NATS_TLS_CA_FILE" desc:"PEM file of the CA certificates that verify the NATS server (default: the system roots); setting any NATS_TLS variable requires TLS"`
	NATSTLSCertFile   string        `envconfig:"NATS_TLS_CERT_FILE" desc:"PEM client certificate for NATS mutual TLS; needs CONNECTOR_NATS_TLS_KEY_FILE"`
	NATSTLSKeyFile    string        `envconfig:"NATS_TLS_KEY_FILE" desc:"PEM private key of that client certificate; needs CONNECTOR_NATS_TLS_CERT_FILE"`
	EmbeddedListen    string        `envconfig:"EMBEDDED_NATS_LISTEN" default:"127.0.0.1:4222" desc:"host:port of the embedded server when CONNECTOR_NATS_URL is empty; loopback host only, port 0 picks a free one"`
	DataDir           string        `envconfig:"DATA_DIR" default:"./data" desc:"JetStream storage directory of the embedded server"`
	Stream            string        `envconfig:"STREAM" default:"COHORTS" desc:"JetStream stream of membership changes"`
	Subjects          []string      `envconfig:"SUBJECTS" default:"cohorts.membership.>" desc:"subjects of that stream, comma separated"`
	Durable           string        `envconfig:"DURABLE" default:"cohort-connector" desc:"durable pull consumer, shared by all replicas"`
	ActivationsBucket string        `envconfig:"ACTIVATIONS_BUCKET" default:"COHORT_ACTIVATIONS" desc:"JetStream KV bucket of activations, watched live"`
	ParkingStream     string        `envconfig:"PARKING_STREAM" default:"COHORTS_PARKED" desc:"stream where a failing ad account's messages wait (subject <CONNECTOR_PARKING_SUBJECT>.<ad_account_id>), so they never hold up the other accounts"`
	ParkingSubject    string        `envconfig:"PARKING_SUBJECT" default:"cohorts.parked" desc:"subject prefix of parked messages, no wildcards; must not be matched by CONNECTOR_SUBJECTS"`
	OrderBucket       string        `envconfig:"ORDER_BUCKET" default:"COHORT_CONNECTOR_ORDER" desc:"JetStream KV bucket recording changes that wait for redelivery, so that per-user order survives a restart"`
	StateBucket       string        `envconfig:"STATE_BUCKET" default:"COHORT_CONNECTOR_STATE" desc:"JetStream KV bucket where the daemon keeps what it learns: audience ids, encrypted refresh tokens, the last change applied per user to customer lists, match-rate sketches, backfill progress"`
	DLQStream         string        `envconfig:"DLQ_STREAM" default:"COHORTS_DLQ" desc:"stream of dead letters; it stores <CONNECTOR_DLQ_SUBJECT>.>"`
	DLQSubject        string        `envconfig:"DLQ_SUBJECT" default:"cohorts.dlq" desc:"subject prefix of dead letters, no wildcards; must not be matched by CONNECTOR_SUBJECTS"`
	AckWait           time.Duration `envconfig:"ACK_WAIT" default:"60s" desc:"consumer AckWait: how long a delivered message may stay unsettled before it is redelivered"`
	MaxDeliver        int           `envconfig:"MAX_DELIVER" default:"50" desc:"consumer MaxDeliver (>= 2): deliveries before a message is dead-lettered"`
	MaxAckPending     int           `envconfig:"MAX_ACK_PENDING" default:"20000" desc:"consumer MaxAckPending (>= CONNECTOR_BATCH_SIZE): unsettled messages in flight"`

	DefaultTagID string    `envconfig:"DEFAULT_TAG_ID" required:"true" desc:"Tag ID used by activations with a blank tag_id; must be listed by one account"`
	Accounts     []string  `envconfig:"ACCOUNTS" required:"true" desc:"account names, comma separated (letters, digits, _); each needs its CONNECTOR_ACCOUNT_<NAME>_* variables"`
	AccountList  []Account `ignored:"true"` // built by Load from Accounts; what the program uses

	SecretsKeyBase64     Secret        `envconfig:"SECRETS_KEY" desc:"32 random bytes, base64, encrypting the refresh tokens kept in CONNECTOR_STATE_BUCKET; required when an account has OAuth (make one: openssl rand -base64 32); never logged"`
	AudiencePollInterval time.Duration `envconfig:"AUDIENCE_POLL_INTERVAL" default:"1h" desc:"how often audiences are read back from Pinterest (size, status), at least 1s"`

	PinterestBaseURL string        `envconfig:"PINTEREST_BASE_URL" default:"https://api.pinterest.com/v5" desc:"Pinterest API base URL, stored without trailing /; https, or http on a loopback host (simulator)"`
	BatchSize        int           `envconfig:"BATCH_SIZE" default:"1000" desc:"events per Pinterest request, 1..1000"`
	BatchPeriod      time.Duration `envconfig:"BATCH_PERIOD" default:"100ms" desc:"how long a partial batch waits for a free sender (within the call budget) before it is flushed, at most 10s"`
	MaxInFlight      int           `envconfig:"MAX_INFLIGHT" default:"2" desc:"concurrent Pinterest calls per ad account, 1..16"`
	CallsPerMinute   int           `envconfig:"PINTEREST_CALLS_PER_MINUTE" default:"5000" desc:"call budget per ad account (Pinterest allows 5,000 a minute); halved on 429, restored as calls succeed; 0 disables"`
	HTTPTimeout      time.Duration `envconfig:"HTTP_TIMEOUT" default:"10s" desc:"timeout of one HTTP attempt"`
	HTTPRetryMax     int           `envconfig:"HTTP_RETRY_MAX" default:"3" desc:"retries inside one call, 0..10"`
	HTTPRetryWaitMin time.Duration `envconfig:"HTTP_RETRY_WAIT_MIN" default:"250ms" desc:"shortest wait between retries inside one call"`
	HTTPRetryWaitMax time.Duration `envconfig:"HTTP_RETRY_WAIT_MAX" default:"5s" desc:"longest wait between retries inside one call, also the cap on a Retry-After honoured inside it"`
	HTTPCallTimeout  time.Duration `envconfig:"HTTP_CALL_TIMEOUT" default:"30s" desc:"bound on one call including its retries; plus CONNECTOR_BATCH_PERIOD it must stay below CONNECTOR_ACK_WAIT"`
	RetryDelayMin    time.Duration `envconfig:"RETRY_DELAY_MIN" default:"5s" desc:"redelivery delay after a transient failure, doubled with each delivery"`
	RetryDelayMax    time.Duration `envconfig:"RETRY_DELAY_MAX" default:"15m" desc:"cap on that redelivery delay, and on any Retry-After Pinterest asks for (the pause of the ad account included)"`
	AuthRetryDelay   time.Duration `envconfig:"AUTH_RETRY_DELAY" default:"5m" desc:"redelivery delay after Pinterest answered 401, 403, 404 or a 3xx redirect"`
	LogLevel         string        `envconfig:"LOG_LEVEL" default:"info" desc:"trace, debug, info, warn or error"`
	LogFormat        string        `envconfig:"LOG_FORMAT" default:"json" desc:"json or console"`
	ListenAddr       string        `envconfig:"LISTEN_ADDR" default:"127.0.0.1:9464" desc:"host:port serving /metrics, health, /status and the status page; empty disables"`
	AdminToken       Secret        `envconfig:"ADMIN_TOKEN" desc:"token a publisher signs in with on the status page to change activations (at least 16 characters); empty: the page is read-only; never logged"`
	ShutdownTimeout  time.Duration `envconfig:"SHUTDOWN_TIMEOUT" default:"30s" desc:"how long shutdown may take to flush batches and settle messages"`
}

// variable describes one static variable, read from Config's tags.
type variable struct {
	name     string // full name, with Prefix
	index    int    // field index in Config
	def      string
	required bool
	desc     string
}

// staticVars lists the static variables in Config's field order.
var staticVars = func() []variable {
	t := reflect.TypeFor[Config]()
	var vs []variable
	for i := range t.NumField() {
		f := t.Field(i)
		key := f.Tag.Get("envconfig")
		if key == "" || f.Tag.Get("ignored") == "true" {
			continue // a test checks that only AccountList is skipped
		}
		vs = append(vs, variable{
			name:     Prefix + key,
			index:    i,
			def:      f.Tag.Get("default"),
			required: f.Tag.Get("required") == "true",
			desc:     f.Tag.Get("desc"),
		})
	}
	return vs
}()

// Default returns the configuration with every default applied: the values of
// the `default` tags, decoded exactly as Load decodes variables. It has no
// accounts and no default Tag ID, so it does not pass Validate.
func Default() Config {
	var c Config
	v := reflect.ValueOf(&c).Elem()
	for _, sv := range staticVars {
		if sv.def != "" {
			_ = decode(v.Field(sv.index), sv.def) // every default decodes; tested
		}
	}
	return c
}

// Load reads the configuration from the process environment.
//
// envconfig.Process parses the static variables. Two of its habits are
// corrected here. It falls back to the unprefixed name (LOG_LEVEL) when
// CONNECTOR_LOG_LEVEL is unset, so a stray variable meant for another
// program would configure us: such fields are put back to their default.
// And it stops at the first value it cannot parse, where we report every
// problem at once: on any envconfig error, LoadEnv's per-variable decoder
// reads the same environment and lists them all.
func Load() (Config, error) {
	environ := os.Environ()
	var c Config
	if err := envconfig.Process(strings.TrimSuffix(Prefix, "_"), &c); err != nil {
		c, lerr := LoadEnv(environ)
		if lerr == nil {
			// envconfig refused what our decoder accepts: say so rather
			// than run on a configuration read differently.
			return Config{}, fmt.Errorf("reading %s* variables: %w", Prefix, err)
		}
		return c, lerr
	}
	env := prefixedEnv(environ)
	cv, dv := reflect.ValueOf(&c).Elem(), reflect.ValueOf(Default())
	for _, sv := range staticVars {
		f := cv.Field(sv.index)
		if _, set := env[sv.name]; !set {
			f.Set(dv.Field(sv.index)) // undo envconfig's unprefixed fallback
			continue
		}
		// Same normalisation as decode: values and list items trimmed.
		switch v := f.Addr().Interface().(type) {
		case *string:
			*v = strings.TrimSpace(*v)
		case *Secret:
			*v = Secret(strings.TrimSpace(string(*v)))
		case *[]string:
			*v = splitList(strings.Join(*v, ","))
		}
	}
	c, problems := finish(c, env, false)
	if len(problems) > 0 {
		return Config{}, errors.Join(problems...)
	}
	return c, nil
}

// prefixedEnv keeps the CONNECTOR_* entries of environ (any case).
func prefixedEnv(environ []string) map[string]string {
	env := make(map[string]string)
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !hasPrefixFold(k, Prefix) {
			continue
		}
		if _, dup := env[k]; !dup { // first wins, like os.Getenv
			env[k] = v
		}
	}
	return env
}

// LoadEnv reads the configuration from environ ("KEY=value" strings, as from
// os.Environ): the static variables over Default(), then the per-account
// variables of every name in CONNECTOR_ACCOUNTS. Unknown CONNECTOR_*
// variables are rejected, then the result is validated. The error lists
// every problem (errors.Join, one per line), each starting with the name of
// the variable at fault; on error the returned Config is the zero value.
func LoadEnv(environ []string) (Config, error) { return loadEnv(environ, false) }

// LoadForReading loads the configuration of the commands that only read
// (activations list, dlq list and show) or touch NATS only (dlq replay):
// the NATS settings, the names of the streams and buckets, and what is set
// of the accounts and the default Tag ID, which are checked as far as they
// are set. No Pinterest credential is needed: not a token, an OAuth app or
// the secrets key. Unknown CONNECTOR_* variables are errors as for Load.
func LoadForReading() (Config, error) { return loadEnv(os.Environ(), true) }

func loadEnv(environ []string, reading bool) (Config, error) {
	env := prefixedEnv(environ)
	var errs []error
	c := Default()
	cv := reflect.ValueOf(&c).Elem()
	for _, sv := range staticVars {
		raw, ok := env[sv.name]
		if !ok {
			continue
		}
		// On failure the field keeps its default, so only the parse error
		// is reported, not a knock-on rule violation.
		if err := decode(cv.Field(sv.index), raw); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", sv.name, err))
		}
	}
	c, problems := finish(c, env, reading)
	if errs = append(errs, problems...); len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	return c, nil
}

// finish adds the per-account variables to c and returns every problem:
// unknown variables and failed rules (for reading: see LoadForReading).
func finish(c Config, env map[string]string, reading bool) (Config, []error) {
	var errs []error
	c.PinterestBaseURL = strings.TrimRight(c.PinterestBaseURL, "/")
	for _, name := range c.Accounts {
		a := Account{Name: strings.ToLower(name)}
		// An invalid name has no well-formed variables; Validate reports
		// the name.
		if validAccountName(a.Name) {
			a.AdAccountID = strings.TrimSpace(env[accountVar(a.Name, suffixAdAccountID)])
			a.Token = Secret(strings.TrimSpace(env[accountVar(a.Name, suffixToken)]))
			a.TagIDs = splitList(env[accountVar(a.Name, suffixTagIDs)])
			a.AppID = strings.TrimSpace(env[accountVar(a.Name, suffixAppID)])
			a.AppSecret = Secret(strings.TrimSpace(env[accountVar(a.Name, suffixAppSecret)]))
			a.RefreshToken = Secret(strings.TrimSpace(env[accountVar(a.Name, suffixRefresh)]))
		}
		c.AccountList = append(c.AccountList, a)
	}

	errs = append(errs, unknownVars(env, c.AccountList)...)
	return c, append(errs, c.check(reading)...)
}

// decode sets field from raw. Surrounding white space is ignored everywhere
// (a token read from a file often ends in a newline).
func decode(field reflect.Value, raw string) error {
	raw = strings.TrimSpace(raw)
	switch p := field.Addr().Interface().(type) {
	case *string:
		*p = raw
	case *Secret:
		*p = Secret(raw)
	case *[]string:
		*p = splitList(raw)
	case *int:
		n, err := strconv.Atoi(raw)
		if errors.Is(err, strconv.ErrRange) {
			return fmt.Errorf("integer out of range: %q", raw)
		}
		if err != nil {
			return fmt.Errorf("not an integer: %q", raw)
		}
		*p = n
	case *time.Duration:
		d, err := time.ParseDuration(raw)
		if err != nil {
			return fmt.Errorf("not a duration such as 500ms, 30s or 15m: %q", raw)
		}
		*p = d
	default:
		return fmt.Errorf("unsupported field type %s", field.Type())
	}
	return nil
}

// splitList splits a comma separated list, trimming items and dropping
// empty ones (so a trailing comma is harmless).
func splitList(s string) []string {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// unknownVars reports every CONNECTOR_* variable (any case) that is neither
// static nor a per-account variable of a listed account.
func unknownVars(env map[string]string, accounts []Account) []error {
	known := make(map[string]bool)
	for _, sv := range staticVars {
		known[sv.name] = true
	}
	for _, a := range accounts {
		if validAccountName(a.Name) {
			for _, s := range accountSuffixes {
				known[accountVar(a.Name, s)] = true
			}
		}
	}
	var names []string
	for k := range env {
		if !known[k] {
			names = append(names, k)
		}
	}
	slices.Sort(names)

	var errs []error
	for _, k := range names {
		msg := k + ": unknown variable"
		if name, ok := accountOf(k); ok {
			msg += fmt.Sprintf(" (account %q is not listed in %sACCOUNTS)", name, Prefix)
		} else {
			msg += " (typo?)"
		}
		if s := closest(strings.ToUpper(k), known); s != "" {
			msg += ", did you mean " + s + "?"
		}
		errs = append(errs, errors.New(msg))
	}
	return errs
}

// accountOf returns the account name of a well-formed per-account variable.
func accountOf(k string) (string, bool) {
	if !strings.HasPrefix(k, accountVarPrefix) {
		return "", false
	}
	rest := k[len(accountVarPrefix):]
	for _, s := range accountSuffixes {
		if name, ok := strings.CutSuffix(rest, s); ok && name != "" {
			return strings.ToLower(name), true
		}
	}
	return "", false
}

// closest returns the known name nearest to k if it is within two edits,
// preferring the alphabetically first on a tie.
func closest(k string, known map[string]bool) string {
	best, bestD := "", 3
	for name := range known {
		d := levenshtein(k, name)
		if d < bestD || (d == bestD && name < best) {
			best, bestD = name, d
		}
	}
	return best
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// TagAccounts maps each Tag ID to the ad account it belongs to.
func (c Config) TagAccounts() map[string]string {
	m := make(map[string]string)
	for _, a := range c.AccountList {
		for _, t := range a.TagIDs {
			m[t] = a.AdAccountID
		}
	}
	return m
}

// Tokens maps each ad account id to its conversion token (empty for an
// account with OAuth only).
func (c Config) Tokens() map[string]Secret {
	m := make(map[string]Secret, len(c.AccountList))
	for _, a := range c.AccountList {
		m[a.AdAccountID] = a.Token
	}
	return m
}

// Length of CONNECTOR_SECRETS_KEY once decoded, and how to make one.
const (
	secretsKeyLen   = 32
	secretsKeyHowTo = "make one with `openssl rand -base64 32` or `head -c32 /dev/urandom | base64`"
)

// SecretsKey returns CONNECTOR_SECRETS_KEY decoded: 32 bytes, or nil when
// it is not set (Validate requires it when an account has OAuth). The error
// names the variable but never shows the value.
func (c Config) SecretsKey() ([]byte, error) {
	if c.SecretsKeyBase64 == "" {
		return nil, nil
	}
	key, err := decodeSecretsKey(c.SecretsKeyBase64.Reveal())
	if err != nil {
		return nil, fmt.Errorf("%sSECRETS_KEY: %w", Prefix, err)
	}
	return key, nil
}

// decodeSecretsKey decodes base64, standard or URL alphabet, padded or not,
// and wants 32 bytes. Its errors never include s.
func decodeSecretsKey(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		key, err := enc.DecodeString(s)
		if err != nil {
			continue
		}
		if len(key) != secretsKeyLen {
			return nil, fmt.Errorf("must be %d random bytes in base64, decodes to %d bytes (value not shown); %s", secretsKeyLen, len(key), secretsKeyHowTo)
		}
		return key, nil
	}
	return nil, fmt.Errorf("not valid base64 (value not shown); must be %d random bytes in base64, %s", secretsKeyLen, secretsKeyHowTo)
}
