package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Limits checked by Validate.
const (
	maxBatchSize    = 1000 // Pinterest: at most 1,000 events a request
	maxBatchPeriod  = 10 * time.Second
	maxHTTPRetries  = 10
	maxAdAccountLen = 18 // Pinterest: ad_account_id ^\d+$, maxLength 18
	maxTagIDLen     = 32
	maxNameLen      = 255 // JetStream stream and consumer names
)

var (
	accountNameRe = regexp.MustCompile(`^[a-z0-9_]+$`)
	bucketRe      = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)
	digitsRe      = regexp.MustCompile(`^[0-9]+$`)
)

// Validate reports every problem of c at once (errors.Join, one per line).
// Each message starts with the name of the variable at fault, then the rule,
// then what was found. Values of secrets are never included.
func (c Config) Validate() error { return errors.Join(c.problems()...) }

func (c Config) problems() []error { return c.check(false) }

// check returns every problem of c. For reading (LoadForReading) the
// Pinterest side is checked only as far as it is set, and never for
// credentials: a token, an OAuth app, the secrets key.
func (c Config) check(reading bool) []error {
	var p problems
	c.checkNATS(&p)
	c.checkNATSClient(&p)
	c.checkConsumer(&p)
	switch {
	case !reading:
		c.checkAccounts(&p, true)
		c.checkHTTP(&p)
		c.checkAudiences(&p)
	case len(c.AccountList) > 0 || c.DefaultTagID != "":
		c.checkAccounts(&p, false)
	}
	c.checkRest(&p)
	return p
}

type problems []error

func (p *problems) add(variable, format string, args ...any) {
	*p = append(*p, fmt.Errorf("%s: %s", Prefix+variable, fmt.Sprintf(format, args...)))
}

func (c Config) checkNATS(p *problems) {
	if c.NATSURL != "" {
		for i, u := range strings.Split(c.NATSURL, ",") {
			if err := checkNATSURL(strings.TrimSpace(u)); err != nil {
				p.add("NATS_URL", "entry %d: %v", i+1, err)
			}
		}
	} else if strings.TrimSpace(c.DataDir) == "" {
		p.add("DATA_DIR", "must not be empty when %sNATS_URL is empty (the embedded server stores its streams there)", Prefix)
	}
	if err := checkLoopbackAddr(c.EmbeddedListen); err != nil {
		p.add("EMBEDDED_NATS_LISTEN", "%v", err)
	}

	checkStreamName(p, "STREAM", c.Stream)
	checkStreamName(p, "DURABLE", c.Durable)
	checkStreamName(p, "DLQ_STREAM", c.DLQStream)
	if c.DLQStream == c.Stream && c.Stream != "" {
		p.add("DLQ_STREAM", "must differ from %sSTREAM, both are %q", Prefix, c.Stream)
	}
	if !bucketRe.MatchString(c.ActivationsBucket) {
		p.add("ACTIVATIONS_BUCKET", "must match %s, got %q", bucketRe, c.ActivationsBucket)
	}
	if !bucketRe.MatchString(c.OrderBucket) {
		p.add("ORDER_BUCKET", "must match %s, got %q", bucketRe, c.OrderBucket)
	} else if c.OrderBucket == c.ActivationsBucket {
		p.add("ORDER_BUCKET", "must differ from %sACTIVATIONS_BUCKET, both are %q", Prefix, c.OrderBucket)
	}
	switch {
	case !bucketRe.MatchString(c.StateBucket):
		p.add("STATE_BUCKET", "must match %s, got %q", bucketRe, c.StateBucket)
	case c.StateBucket == c.ActivationsBucket:
		p.add("STATE_BUCKET", "must differ from %sACTIVATIONS_BUCKET, both are %q", Prefix, c.StateBucket)
	case c.StateBucket == c.OrderBucket:
		p.add("STATE_BUCKET", "must differ from %sORDER_BUCKET, both are %q", Prefix, c.StateBucket)
	}

	if len(c.Subjects) == 0 {
		p.add("SUBJECTS", "required: at least one subject")
	}
	seen := make(map[string]bool)
	var subjects [][]string // the valid ones, tokenised
	for _, s := range c.Subjects {
		if err := checkSubject(s, false); err != nil {
			p.add("SUBJECTS", "%v", err)
			continue
		}
		if seen[s] {
			p.add("SUBJECTS", "%q is listed twice", s)
			continue
		}
		seen[s] = true
		subjects = append(subjects, strings.Split(s, "."))
	}

	// The KV bucket is a stream of its own on $KV.<bucket>.>; JetStream
	// refuses streams whose subjects overlap.
	for variable, bucket := range map[string]string{"ACTIVATIONS_BUCKET": c.ActivationsBucket, "ORDER_BUCKET": c.OrderBucket, "STATE_BUCKET": c.StateBucket} {
		if !bucketRe.MatchString(bucket) {
			continue
		}
		kv := []string{"$KV", bucket, ">"}
		for _, s := range subjects {
			if subjectsIntersect(s, kv) {
				p.add("SUBJECTS", "%q overlaps the subjects of %s%s (%s)", strings.Join(s, "."), Prefix, variable, strings.Join(kv, "."))
			}
		}
	}

	// Dead letters and parked messages are published under <prefix>.>; if
	// the input stream captured any of them they would loop back into the
	// input, and the two streams may not share subjects either.
	prefixes := [][]string{}
	for _, v := range []struct{ name, subject string }{{"DLQ_SUBJECT", c.DLQSubject}, {"PARKING_SUBJECT", c.ParkingSubject}} {
		if err := checkSubject(v.subject, true); err != nil {
			p.add(v.name, "%v", err)
			continue
		}
		tokens := strings.Split(v.subject, ".")
		all := append(tokens[:len(tokens):len(tokens)], ">")
		prefixes = append(prefixes, all)
		for _, s := range subjects {
			if subjectsIntersect(s, tokens) || subjectsIntersect(s, all) {
				p.add(v.name, "%q and %s.> must not be matched by %sSUBJECTS entry %q, or those messages loop back into the input", v.subject, v.subject, Prefix, strings.Join(s, "."))
			}
		}
	}
	if len(prefixes) == 2 && subjectsIntersect(prefixes[0], prefixes[1]) {
		p.add("PARKING_SUBJECT", "%q overlaps %sDLQ_SUBJECT %q", c.ParkingSubject, Prefix, c.DLQSubject)
	}
	checkStreamName(p, "PARKING_STREAM", c.ParkingStream)
	if c.ParkingStream == c.Stream || c.ParkingStream == c.DLQStream {
		p.add("PARKING_STREAM", "must differ from %sSTREAM and %sDLQ_STREAM, got %q", Prefix, Prefix, c.ParkingStream)
	}
}

// checkNATSClient checks the authentication and TLS variables of the NATS
// connection. They configure a client of an external server, so they are
// refused with the embedded one. At most one authentication method may be
// set, and every file must be readable now, not at the first reconnect.
// Messages name files but never show their content or a secret.
func (c Config) checkNATSClient(p *problems) {
	vars := []struct {
		name string
		set  bool
	}{
		{"NATS_USER", c.NATSUser != ""},
		{"NATS_PASSWORD", c.NATSPassword != ""},
		{"NATS_TOKEN", c.NATSToken != ""},
		{"NATS_CREDS_FILE", c.NATSCredsFile != ""},
		{"NATS_NKEY_FILE", c.NATSNKeyFile != ""},
		{"NATS_TLS_CA_FILE", c.NATSTLSCAFile != ""},
		{"NATS_TLS_CERT_FILE", c.NATSTLSCertFile != ""},
		{"NATS_TLS_KEY_FILE", c.NATSTLSKeyFile != ""},
	}
	if c.NATSURL == "" {
		for _, v := range vars {
			if v.set {
				p.add(v.name, "must not be set when %sNATS_URL is empty: the NATS authentication and TLS variables configure a client of an external server, and the embedded server uses none", Prefix)
			}
		}
		return
	}

	if (c.NATSUser == "") != (c.NATSPassword == "") {
		missing, have := "NATS_PASSWORD", "NATS_USER"
		if c.NATSUser == "" {
			missing, have = have, missing
		}
		p.add(missing, "required when %s%s is set: user/password authentication needs both", Prefix, have)
	}
	var methods []string // one entry per authentication method set
	if c.NATSUser != "" || c.NATSPassword != "" {
		methods = append(methods, Prefix+"NATS_USER/"+Prefix+"NATS_PASSWORD")
	}
	for _, m := range []struct {
		name string
		set  bool
	}{{"NATS_TOKEN", c.NATSToken != ""}, {"NATS_CREDS_FILE", c.NATSCredsFile != ""}, {"NATS_NKEY_FILE", c.NATSNKeyFile != ""}} {
		if m.set {
			methods = append(methods, Prefix+m.name)
		}
	}
	// nats.go silently prefers the URL's user info to every option.
	if len(methods) > 0 && urlHasUserInfo(c.NATSURL) {
		methods = append(methods, Prefix+"NATS_URL (user info)")
	}
	if len(methods) > 1 {
		*p = append(*p, fmt.Errorf("%s: at most one NATS authentication method may be set: %sNATS_USER and %sNATS_PASSWORD, %sNATS_TOKEN, %sNATS_CREDS_FILE, %sNATS_NKEY_FILE, or user info in %sNATS_URL",
			strings.Join(methods, ", "), Prefix, Prefix, Prefix, Prefix, Prefix, Prefix))
	}

	checkFile(p, "NATS_CREDS_FILE", c.NATSCredsFile)
	checkFile(p, "NATS_NKEY_FILE", c.NATSNKeyFile)
	if checkFile(p, "NATS_TLS_CA_FILE", c.NATSTLSCAFile) {
		if pem, err := os.ReadFile(c.NATSTLSCAFile); err == nil && !x509.NewCertPool().AppendCertsFromPEM(pem) {
			p.add("NATS_TLS_CA_FILE", "no PEM certificate found in %q", c.NATSTLSCAFile)
		}
	}
	if (c.NATSTLSCertFile == "") != (c.NATSTLSKeyFile == "") {
		missing, have := "NATS_TLS_KEY_FILE", "NATS_TLS_CERT_FILE"
		if c.NATSTLSCertFile == "" {
			missing, have = have, missing
		}
		p.add(missing, "required when %s%s is set: a client certificate needs its key", Prefix, have)
	}
	certOK := checkFile(p, "NATS_TLS_CERT_FILE", c.NATSTLSCertFile)
	keyOK := checkFile(p, "NATS_TLS_KEY_FILE", c.NATSTLSKeyFile)
	if certOK && keyOK {
		// tls errors describe the PEM blocks, never their bytes.
		if _, err := tls.LoadX509KeyPair(c.NATSTLSCertFile, c.NATSTLSKeyFile); err != nil {
			p.add("NATS_TLS_CERT_FILE", "with %sNATS_TLS_KEY_FILE: not a usable certificate and key: %v", Prefix, err)
		}
	}
}

// checkFile reports a set path that is not a readable regular file and
// returns whether path is set and readable.
func checkFile(p *problems, variable, path string) bool {
	if path == "" {
		return false
	}
	err := readable(path)
	if err != nil {
		p.add(variable, "cannot read %q: %v", path, err)
	}
	return err == nil
}

func readable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return pe.Err // the message shows the path already
		}
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return errors.New("is a directory")
	}
	return nil
}

// urlHasUserInfo reports whether an entry of the NATS URL list carries a
// user, password or token.
func urlHasUserInfo(list string) bool {
	for s := range strings.SplitSeq(list, ",") {
		if u, err := url.Parse(strings.TrimSpace(s)); (err == nil && u.User != nil) || strings.Contains(s, "@") {
			return true
		}
	}
	return false
}

func (c Config) checkConsumer(p *problems) {
	positive(p, "ACK_WAIT", c.AckWait)
	if c.MaxDeliver < 2 {
		p.add("MAX_DELIVER", "must be at least 2, got %d", c.MaxDeliver)
	}
	if least := max(c.BatchSize, 1); c.MaxAckPending < least {
		p.add("MAX_ACK_PENDING", "must be at least %sBATCH_SIZE (%d), got %d", Prefix, least, c.MaxAckPending)
	}
}

// checkAccounts checks the accounts and the default Tag ID, and with
// credentials each account's token or OAuth app.
func (c Config) checkAccounts(p *problems, credentials bool) {
	if len(c.AccountList) == 0 {
		p.add("ACCOUNTS", "required: at least one account name, comma separated")
	}
	names := make(map[string]bool)
	varAccount := make(map[string]string)   // per-account variable → its account
	adAccountVar := make(map[string]string) // ad account id → its variable
	tagVar := make(map[string]string)       // Tag ID → the variable listing it
	for _, a := range c.AccountList {
		if !accountNameRe.MatchString(a.Name) {
			p.add("ACCOUNTS", "account name %q: must be letters, digits and _ only", a.Name)
			continue
		}
		if names[a.Name] {
			p.add("ACCOUNTS", "account %q is listed twice", a.Name)
			continue
		}
		names[a.Name] = true
		// brand and brand_refresh would share CONNECTOR_ACCOUNT_BRAND_REFRESH_TOKEN.
		for _, suffix := range accountSuffixes {
			v := accountVar(a.Name, suffix)
			if other := varAccount[v]; other != "" {
				p.add("ACCOUNTS", "accounts %q and %q clash: %s would belong to both; rename one", other, a.Name, v)
			} else {
				varAccount[v] = a.Name
			}
		}

		adVar := accountVar(a.Name, suffixAdAccountID)
		switch {
		case a.AdAccountID == "":
			*p = append(*p, fmt.Errorf("%s: required: the Pinterest ad account id of account %s", adVar, a.Name))
		case !digitsRe.MatchString(a.AdAccountID) || len(a.AdAccountID) > maxAdAccountLen:
			*p = append(*p, fmt.Errorf("%s: must be digits only, at most %d, got %q", adVar, maxAdAccountLen, a.AdAccountID))
		case adAccountVar[a.AdAccountID] != "":
			*p = append(*p, fmt.Errorf("%s: ad account %s is also used by %s", adVar, a.AdAccountID, adAccountVar[a.AdAccountID]))
		default:
			adAccountVar[a.AdAccountID] = adVar
		}

		if credentials {
			checkAccountCredentials(p, a)
		}

		tv := accountVar(a.Name, suffixTagIDs)
		if len(a.TagIDs) == 0 {
			*p = append(*p, fmt.Errorf("%s: required: the Tag IDs routed to account %s, comma separated", tv, a.Name))
		}
		for _, t := range a.TagIDs {
			switch {
			case !validTagID(t):
				*p = append(*p, fmt.Errorf("%s: Tag IDs must be digits only, at most %d, got %q", tv, maxTagIDLen, t))
			case tagVar[t] == tv:
				*p = append(*p, fmt.Errorf("%s: Tag ID %s is listed twice", tv, t))
			case tagVar[t] != "":
				*p = append(*p, fmt.Errorf("%s: Tag ID %s is also listed in %s; a Tag ID belongs to one account", tv, t, tagVar[t]))
			default:
				tagVar[t] = tv
			}
		}
	}

	switch {
	case c.DefaultTagID == "":
		p.add("DEFAULT_TAG_ID", "required: the Tag ID used by activations that name none")
	case !validTagID(c.DefaultTagID):
		p.add("DEFAULT_TAG_ID", "must be digits only, at most %d, got %q", maxTagIDLen, c.DefaultTagID)
	case tagVar[c.DefaultTagID] == "":
		p.add("DEFAULT_TAG_ID", "Tag ID %s is not listed in any %s<NAME>%s", c.DefaultTagID, accountVarPrefix, suffixTagIDs)
	}
}

// checkAccountCredentials checks the conversion token and the OAuth
// variables of one account: the token, OAuth (app id, app secret and
// refresh token, all three), or both. Secrets are named, never shown.
func checkAccountCredentials(p *problems, a Account) {
	tokenVar := accountVar(a.Name, suffixToken)
	oauth := []struct {
		variable, what string
		set            bool
	}{
		{accountVar(a.Name, suffixAppID), "the Pinterest app id", a.AppID != ""},
		{accountVar(a.Name, suffixAppSecret), "the app secret", a.AppSecret != ""},
		{accountVar(a.Name, suffixRefresh), "the first refresh token", a.RefreshToken != ""},
	}
	var setVar string // an OAuth variable that is set, if any
	for _, v := range oauth {
		if v.set {
			setVar = v.variable
			break
		}
	}

	if a.Token == "" && setVar == "" {
		*p = append(*p, fmt.Errorf("%s: required: the Pinterest API token of account %s, unless the account has OAuth (%s, %s and %s); set either or both",
			tokenVar, a.Name, oauth[0].variable, oauth[1].variable, oauth[2].variable))
	}
	if setVar != "" {
		for _, v := range oauth {
			if !v.set {
				*p = append(*p, fmt.Errorf("%s: required when %s is set: OAuth needs %s of account %s, with %s, %s and %s all set",
					v.variable, setVar, v.what, a.Name, oauth[0].variable, oauth[1].variable, oauth[2].variable))
			}
		}
	}
	if a.AppID != "" && !digitsRe.MatchString(a.AppID) {
		*p = append(*p, fmt.Errorf("%s: must be digits only, got %q", oauth[0].variable, a.AppID))
	}
	checkSecretChars(p, tokenVar, a.Token)
	checkSecretChars(p, oauth[1].variable, a.AppSecret)
	checkSecretChars(p, oauth[2].variable, a.RefreshToken)
}

// checkSecretChars reports a token or secret that is not printable ASCII
// without white space. Such a token could never be sent (net/http refuses a
// header with a control character) or never be right, and every call would
// fail as a transient error for hours. The message names the character and
// where it is, never the value.
func checkSecretChars(p *problems, variable string, s Secret) {
	if i, r, ok := badTokenRune(s.Reveal()); ok {
		*p = append(*p, fmt.Errorf("%s: must be printable ASCII without white space or control characters, found %U at character %d (value not shown)",
			variable, r, i))
	}
}

// checkAudiences checks what the audience API needs: the poll interval,
// and the key that encrypts the refresh tokens of accounts with OAuth.
func (c Config) checkAudiences(p *problems) {
	if c.AudiencePollInterval < time.Second {
		p.add("AUDIENCE_POLL_INTERVAL", "must be at least 1s, got %s", c.AudiencePollInterval)
	}
	var oauth []string // accounts with any OAuth variable
	for _, a := range c.AccountList {
		if validAccountName(a.Name) && (a.AppID != "" || a.AppSecret != "" || a.RefreshToken != "") {
			oauth = append(oauth, a.Name)
		}
	}
	if c.SecretsKeyBase64 == "" {
		if len(oauth) > 0 {
			p.add("SECRETS_KEY", "required when an account has OAuth (%s): the key that encrypts the refresh tokens kept in %sSTATE_BUCKET, %d random bytes in base64; %s",
				strings.Join(oauth, ", "), Prefix, secretsKeyLen, secretsKeyHowTo)
		}
		return
	}
	if _, err := decodeSecretsKey(c.SecretsKeyBase64.Reveal()); err != nil {
		p.add("SECRETS_KEY", "%v", err)
	}
}

func (c Config) checkHTTP(p *problems) {
	if err := checkBaseURL(c.PinterestBaseURL); err != nil {
		p.add("PINTEREST_BASE_URL", "%v", err)
	}
	if c.BatchSize < 1 || c.BatchSize > maxBatchSize {
		p.add("BATCH_SIZE", "must be between 1 and %d, got %d", maxBatchSize, c.BatchSize)
	}
	if positive(p, "BATCH_PERIOD", c.BatchPeriod) && c.BatchPeriod > maxBatchPeriod {
		p.add("BATCH_PERIOD", "must be at most %s, got %s", maxBatchPeriod, c.BatchPeriod)
	}
	if c.CallsPerMinute < 0 {
		p.add("PINTEREST_CALLS_PER_MINUTE", "must be 0 (no budget) or positive, got %d", c.CallsPerMinute)
	}
	if c.MaxInFlight < 1 || c.MaxInFlight > 16 {
		p.add("MAX_INFLIGHT", "must be between 1 and 16, got %d", c.MaxInFlight)
	}
	if c.HTTPRetryMax < 0 || c.HTTPRetryMax > maxHTTPRetries {
		p.add("HTTP_RETRY_MAX", "must be between 0 and %d, got %d", maxHTTPRetries, c.HTTPRetryMax)
	}
	if positive(p, "HTTP_RETRY_WAIT_MIN", c.HTTPRetryWaitMin) &&
		positive(p, "HTTP_RETRY_WAIT_MAX", c.HTTPRetryWaitMax) &&
		c.HTTPRetryWaitMax < c.HTTPRetryWaitMin {
		p.add("HTTP_RETRY_WAIT_MAX", "must be at least %sHTTP_RETRY_WAIT_MIN (%s), got %s", Prefix, c.HTTPRetryWaitMin, c.HTTPRetryWaitMax)
	}
	if positive(p, "HTTP_TIMEOUT", c.HTTPTimeout) && c.HTTPCallTimeout > 0 && c.HTTPTimeout > c.HTTPCallTimeout {
		p.add("HTTP_TIMEOUT", "must be at most %sHTTP_CALL_TIMEOUT (%s), got %s", Prefix, c.HTTPCallTimeout, c.HTTPTimeout)
	}
	// A call still running when AckWait expires gets its messages
	// redelivered to another consumer: duplicates at best. Written as a
	// subtraction so that huge values cannot overflow.
	if positive(p, "HTTP_CALL_TIMEOUT", c.HTTPCallTimeout) && c.BatchPeriod > 0 && c.AckWait > 0 &&
		c.HTTPCallTimeout >= c.AckWait-c.BatchPeriod {
		p.add("HTTP_CALL_TIMEOUT", "plus %sBATCH_PERIOD must be less than %sACK_WAIT, got %s + %s >= %s",
			Prefix, Prefix, c.HTTPCallTimeout, c.BatchPeriod, c.AckWait)
	}
}

func (c Config) checkRest(p *problems) {
	if positive(p, "RETRY_DELAY_MIN", c.RetryDelayMin) &&
		positive(p, "RETRY_DELAY_MAX", c.RetryDelayMax) &&
		c.RetryDelayMax < c.RetryDelayMin {
		p.add("RETRY_DELAY_MAX", "must be at least %sRETRY_DELAY_MIN (%s), got %s", Prefix, c.RetryDelayMin, c.RetryDelayMax)
	}
	positive(p, "AUTH_RETRY_DELAY", c.AuthRetryDelay)
	switch strings.ToLower(c.LogLevel) {
	case "trace", "debug", "info", "warn", "error":
	default:
		p.add("LOG_LEVEL", "must be one of trace, debug, info, warn, error, got %q", c.LogLevel)
	}
	if c.LogFormat != "json" && c.LogFormat != "console" {
		p.add("LOG_FORMAT", "must be json or console, got %q", c.LogFormat)
	}
	if c.ListenAddr != "" {
		if _, _, err := splitHostPort(c.ListenAddr); err != nil {
			p.add("LISTEN_ADDR", "%v, got %q", err, c.ListenAddr)
		}
	}
	positive(p, "SHUTDOWN_TIMEOUT", c.ShutdownTimeout)
	if c.AdminToken != "" {
		if len(c.AdminToken) < minAdminToken {
			p.add("ADMIN_TOKEN", "must be at least %d characters (make one: openssl rand -base64 24), got %d", minAdminToken, len(c.AdminToken))
		}
		checkSecretChars(p, "ADMIN_TOKEN", c.AdminToken)
	}
}

// minAdminToken is the shortest admin token accepted.
const minAdminToken = 16

// positive reports d <= 0 and returns whether d is positive.
func positive(p *problems, variable string, d time.Duration) bool {
	if d <= 0 {
		p.add(variable, "must be greater than 0, got %s", d)
		return false
	}
	return true
}

func validAccountName(name string) bool { return accountNameRe.MatchString(name) }

// badTokenRune returns the first character of a bearer token that is not
// printable ASCII other than space ('!' to '~'), and its 1-based position.
// White space around a value is trimmed by Load, so any found here is
// inside it (or the Config was built in code).
func badTokenRune(token string) (pos int, r rune, found bool) {
	for _, r := range token {
		pos++
		if r < '!' || r > '~' {
			return pos, r, true
		}
	}
	return 0, 0, false
}

func validTagID(t string) bool { return digitsRe.MatchString(t) && len(t) <= maxTagIDLen }

// checkStreamName applies JetStream's rules for stream and consumer names.
func checkStreamName(p *problems, variable, name string) {
	switch {
	case name == "":
		p.add(variable, "required: must not be empty")
	case len(name) > maxNameLen:
		p.add(variable, "must be at most %d characters, got %d", maxNameLen, len(name))
	case strings.ContainsFunc(name, func(r rune) bool {
		return unicode.IsSpace(r) || !unicode.IsPrint(r) || strings.ContainsRune(`.*>/\`, r)
	}):
		p.add(variable, "must not contain white space or any of . * > / \\, got %q", name)
	}
}

// checkSubject checks a NATS subject: non-empty tokens separated by '.',
// '*' and '>' only as whole tokens, '>' only last; no wildcards at all if
// literal.
func checkSubject(s string, literal bool) error {
	if s == "" {
		return errors.New("required: must not be empty")
	}
	if strings.ContainsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) {
		return fmt.Errorf("subject %q must not contain white space", s)
	}
	tokens := strings.Split(s, ".")
	for i, t := range tokens {
		switch {
		case t == "":
			return fmt.Errorf("subject %q has an empty token", s)
		case (t == "*" || t == ">") && literal:
			return fmt.Errorf("subject %q must not contain wildcards", s)
		case t == ">" && i != len(tokens)-1:
			return fmt.Errorf("subject %q: '>' must be the last token", s)
		case t != "*" && t != ">" && strings.ContainsAny(t, "*>"):
			return fmt.Errorf("subject %q: '*' and '>' must be whole tokens", s)
		}
	}
	return nil
}

// subjectsIntersect reports whether some subject matches both valid,
// tokenised subject patterns.
func subjectsIntersect(a, b []string) bool {
	for i := 0; ; i++ {
		switch {
		case i == len(a) && i == len(b):
			return true
		case i == len(a) || i == len(b):
			return false // '>' needs at least one more token
		case a[i] == ">" || b[i] == ">":
			return true
		case a[i] == "*" || b[i] == "*" || a[i] == b[i]:
			continue
		default:
			return false
		}
	}
}

// checkNATSURL accepts what nats.go accepts: a URL with scheme nats, tls, ws
// or wss (port optional), or host:port. Messages never echo the URL, which
// may carry credentials.
func checkNATSURL(s string) error {
	if s == "" {
		return errors.New("empty URL")
	}
	if !strings.Contains(s, "://") {
		host, _, err := splitHostPort(s)
		if err != nil {
			return fmt.Errorf("without a scheme: %w", err)
		}
		if host == "" {
			return errors.New("host is empty")
		}
		return nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a valid URL")
	}
	switch strings.ToLower(u.Scheme) {
	case "nats", "tls", "ws", "wss":
	default:
		return fmt.Errorf("scheme must be nats, tls, ws or wss, got %q", u.Scheme)
	}
	if u.Hostname() == "" {
		return errors.New("host is empty")
	}
	if port := u.Port(); port != "" {
		if _, err := parsePort(port); err != nil {
			return err
		}
	}
	return nil
}

// checkBaseURL wants https, or http on a loopback host (the simulator).
func checkBaseURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return fmt.Errorf("must be an absolute URL such as https://api.pinterest.com/v5, got %q", redactURL(s))
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("must not have user info, a query or a fragment, got %q", redactURL(s))
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if isLoopback(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("plain http is accepted only on a loopback host, got %q", u.Host)
	default:
		return fmt.Errorf("scheme must be https (or http on a loopback host), got %q", u.Scheme)
	}
}

// checkLoopbackAddr wants host:port with a loopback host.
func checkLoopbackAddr(addr string) error {
	host, _, err := splitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w, got %q", err, addr)
	}
	if !isLoopback(host) {
		return fmt.Errorf("host must be loopback (127.0.0.0/8, ::1 or localhost), got %q", host)
	}
	return nil
}

// splitHostPort is net.SplitHostPort with a numeric port 0..65535. Its
// errors do not repeat addr; callers add it where it cannot hold a secret.
func splitHostPort(addr string) (host string, port int, err error) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, errors.New("must be host:port")
	}
	port, err = parsePort(ps)
	return host, port, err
}

func parsePort(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 65535 {
		return 0, fmt.Errorf("port must be a number 0..65535, got %q", s)
	}
	return n, nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// redactURL hides the user info of every URL in a comma separated list (a
// NATS URL may carry a user and password or a token there). An entry that
// does not parse is replaced whole, since its secret cannot be located.
func redactURL(list string) string {
	parts := strings.Split(list, ",")
	for i, s := range parts {
		s = strings.TrimSpace(s)
		if !strings.Contains(s, "://") {
			if strings.Contains(s, "@") {
				s = redacted
			}
			parts[i] = s
			continue
		}
		u, err := url.Parse(s)
		switch {
		case err != nil:
			parts[i] = redacted
		case u.User != nil:
			u.User = nil
			parts[i] = strings.Replace(u.String(), "://", "://"+redacted+"@", 1)
		default:
			parts[i] = s
		}
	}
	return strings.Join(parts, ",")
}
