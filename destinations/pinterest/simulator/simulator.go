// Package simulator is a loopback stand-in for the Pinterest API v5
// endpoints the connector uses, for tests, the demo command and benchmarks:
//
//	POST       /v5/oauth/token                       (grant_type=refresh_token)
//	POST       /v5/ad_accounts/{ad_account_id}/events
//	GET, POST  /v5/ad_accounts/{ad_account_id}/customer_lists
//	GET, PATCH /v5/ad_accounts/{ad_account_id}/customer_lists/{customer_list_id}
//	GET, POST  /v5/ad_accounts/{ad_account_id}/audiences
//	GET, PATCH /v5/ad_accounts/{ad_account_id}/audiences/{audience_id}
//	GET        /v5/ad_accounts/{ad_account_id}/conversion_eqs
//	GET        /v5/ad_accounts/{ad_account_id}/conversion_tags
//
// Request and answer shapes follow shared/pinterest/openapi.json
// (ConversionEvents, ConversionApiResponse, OauthAccessTokenRequestRefresh,
// OauthAccessTokenResponseRefresh, CustomerListRequest,
// CustomerListUpdateRequest, CustomerList, AudienceCreateRequest,
// AudienceUpdateRequest, AudienceRule, Audience, Paginated,
// EventQualityScore, ConversionTag, Error): the events endpoint through the
// wire types of package pinterest, the others through private types here.
//
// Decisions where the spec is silent (all deterministic):
//
//   - Known users. An identifier value h is a known Pinterest user iff the
//     first two bytes of sha256(h), read big-endian as a uint16, are below
//     KnownUserShare*65536 (Known). An event's user is known if any em or
//     hashed_maids value is, or client_ip_address+"|"+client_user_agent
//     is. Whether a user is known never shows in the events answer: per the
//     spec a per-event "failed" means the event could not be processed
//     (invalid), and nothing per event says whether its user matched. A
//     valid event of an unknown user is "processed", as Pinterest answers.
//     Known users are what an audience's size is made of.
//   - Rate limit. "5,000 calls per minute per ad account" is modelled as an
//     exact sliding window: a call is accepted iff fewer than
//     RateLimitPerMinute calls were accepted in the preceding 60 s. A refused
//     call gets 429 {"code":8} with Retry-After = seconds (rounded up, ≥1)
//     until the oldest call in the window leaves it; refused calls do not
//     count. Each of the spec's x-ratelimit-category values has its own
//     window of that size per ad account: ads_conversions (events), ads_read
//     (every GET) and ads_write (POST and PATCH of customer lists and
//     audiences). The token endpoint (org_read) is not rate limited.
//   - Credentials. The events endpoint takes the account's conversion token
//     (SetToken) or an OAuth access token with ads:write; every other ad
//     account endpoint takes only an OAuth access token (pinterest_oauth2),
//     with ads:read for GET and ads:write for POST/PATCH, of an app
//     registered for that ad account (AddApp). An expired access token is
//     401. POST /v5/oauth/token takes the app id and secret as Basic auth
//     (else 401 code 2) and a url-encoded form with only grant_type,
//     refresh_token, scope and continuous_refresh, each once (else 400 code
//     4196). Only grant_type=refresh_token is modelled (others: 400 code
//     4196). The refresh token is rotated on every use: the answer carries a
//     new one and the used one stops working at once (the strict reading of
//     "continuous refresh"); an unknown, used, expired or other app's refresh
//     token is 400 code 1 "Invalid refresh token.". Access tokens are
//     "pina_" + 48 hex digits, valid for AccessTokenTTL; refreshing does not
//     revoke earlier access tokens. scope, when sent, must be a subset of
//     ads:read,ads:write (comma or space separated) and narrows the access
//     token only. SetFault(OAuthFaultKey, f) injects faults into the token
//     endpoint; the global fault does not apply to it.
//   - Customer lists. A list exists only once created by POST (PATCH or GET
//     of another id is 404 code 2). records is required but may be the empty
//     string on creation (the spec only says required), not in a PATCH.
//     Records are split at commas, trimmed of spaces, empty ones skipped; each
//     must be lowercase SHA-256, SHA1 or MD5 hex (64/40/32 digits) or a plain
//     lowercase email, else 400 naming it; at most MaxRecordsPerRequest
//     (100,000, an assumption: the spec gives no maximum) per request. A list
//     keeps its current member set, records as sent: ADD inserts, REMOVE
//     deletes; num_uploaded_user_records and num_removed_user_records count
//     every record sent (repeats and absent ones too, as the spec says),
//     num_batches counts creation and every PATCH. A hex record is a known
//     user iff Known(record); a plain email iff Known(sha256 hex of it), so
//     that it is the same user as an event's em. list_type is checked
//     against UserListType but does not restrict the records. A list is
//     PROCESSING for AudienceDelay after each change, then READY with at
//     least MinAudienceSize (100) known members, else TOO_SMALL.
//   - Audiences. audience_type VISITOR, CUSTOMER_LIST and ACTALIKE are
//     modelled; ENGAGEMENT and PERSONA (in the spec's enum) are refused with
//     400. A rule property of another audience type is refused (400), and so
//     are unknown ones. VISITOR: visitor_source_id (a string of digits, the
//     spec's type; its description's array example is not followed) must be
//     a tag of the ad account (SetTags); retention_days is an integer 1–540,
//     default 180 (filled in the answer); event_data requires event (the
//     spec's "must"); event_source and ingestion_source are {"=": [...]}
//     with the spec's values. CUSTOMER_LIST: customer_list_id must be a list
//     of the account. ACTALIKE: seed_id must name VISITOR or CUSTOMER_LIST
//     audiences of the account, country US, CA or GB, percentage 1–10. ids of
//     lists and audiences are numeric strings from one counter.
//   - Audience size and status. An audience is INITIALIZING, with size null,
//     for AudienceDelay after its creation; then its size is a snapshot
//     taken at a GET and refreshed once it is AudienceDelay old (0: always
//     current), and it is READY at MinAudienceSize or more, else TOO_SMALL.
//     CUSTOMER_LIST: the list's known members. VISITOR: the distinct known
//     users (each event's user being its first known em, else hashed_maids
//     value, else ip|ua) of processed, non-test events of the ad account
//     (all tags alike: events name no tag) whose event_time is within
//     retention_days of now (and, with prefill false, not before the
//     audience's creation), whose event_name equals rule.event when set
//     (underscores ignored: add_to_cart = addtocart), whose action_source
//     matches event_source when set (app_* = mobile), when ingestion_source
//     is absent or includes conversions_api, and whose custom_data matches
//     rule.event_data: each key names a custom_data field and its value is a
//     string, an array of strings (any of) or {"=": [strings]}; content_ids
//     matches if any of the event's ids does; a field the simulator does not
//     keep (anything but content_ids and content_name) matches nothing, and
//     so does a rule with url (event_source_url is not kept). Exits do not
//     remove a visitor: only retention does. The tally keeps, per event name,
//     source, content_name and content id, each known user's latest
//     event_time, whether or not events are recorded (SetRecord). ACTALIKE:
//     percentage × ActalikeUsersPerPercent (100,000, invented) once every
//     seed is READY, else 0. PATCH replaces name, description and a rule
//     (validated whole for the audience's type); operation_type REMOVE
//     deletes the audience. ownership_type=RECEIVED lists nothing.
//   - Paging. GET audiences and customer_lists answer Paginated pages by
//     ascending id (order=DESCENDING reverses), page_size 1–250 (default
//     25); the bookmark is opaque (base64 of the next page's first id).
//     Unknown query parameters are ignored everywhere.
//   - Event Quality Score. lookback_period (1d, 14d) is required;
//     source_platform and ingestion_source filter. The answer has one
//     EventQualityScore per source platform (action_source offline →
//     OFFLINE, web → WEB, app_android → MOBILE_ANDROID, app_ios →
//     MOBILE_IOS) with processed non-test events that arrived (Options.Now,
//     whole hours) in the last 24 or 336 hours, ingestion_source
//     CONVERSIONS_API; none without events. quality_components give per
//     event_name the share in percent (one decimal) of events with em
//     (hashed_email), hashed_maids (hashed_maid), client_ip_address
//     (ip_address), client_user_agent (user_agent), external_id
//     (advertiser_external_id), event_id (external_event_id, always 100) and
//     content_ids (product_id). overall_status (invented thresholds) is GOOD
//     when at least EQSGoodShare (80%) of the events have em, FAIR from
//     EQSFairShare (50%), else NEEDS_IMPROVEMENT.
//   - Conversion tags are those of SetTags, all ACTIVE, named "Tag <id>".
//   - Error codes: malformed ad account / customer list / audience id → 400
//     code 1 (the spec's "must match the pattern" example); unknown ad
//     account → 404 code 2 "AdAccount not found." (spec's Pinterest.Lib.Error
//     example), unknown customer list or audience → 404 code 2; bad token →
//     401 code 2; rate limited → 429 code 8; invalid body → 400 code 4196;
//     invalid query parameter → 400 code 1; body over 8 MiB → 413 code 4196;
//     unknown route → 404 code 404; wrong method → 405 code 5 (spec's
//     MethodNotAllowed example). Injected faults use 400→4196, 401→2,
//     403→29, 429→8, 503→4197 and the status itself as code otherwise.
//   - Strict decoding. Unknown fields are rejected everywhere (400), also in
//     user_data, in an audience rule and at the top level. Spec fields the
//     connector does not model (app_id, device_info, ph, value, ...) are
//     accepted as any JSON value and not type-checked.
package simulator

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cohort-connector/cohort-connector/destinations/pinterest"
)

// Defaults of Options.
const (
	DefaultKnownUserShare     = 0.7
	DefaultRateLimitPerMinute = 5000
	// MaxBodyBytes is the largest request body accepted (413 above).
	MaxBodyBytes = 8 << 20
)

// NoKnownUsers, as Options.KnownUserShare, makes every identifier unknown
// (0 would select the default).
const NoKnownUsers = -1.0

// Options configures a Simulator. The zero value of every field selects its
// default.
type Options struct {
	// Accounts maps ad account id → the bearer token it accepts. An empty
	// token accepts nothing. More accounts can be added with SetToken.
	Accounts map[string]string
	// KnownUserShare in (0,1] is the share of identifier values that are
	// known Pinterest users (see the package comment). 0 selects
	// DefaultKnownUserShare (0.7); a negative value (NoKnownUsers) means no
	// user is known; values above 1 mean 1.
	KnownUserShare float64
	// RateLimitPerMinute is the number of calls per ad account accepted in
	// any 60-second window, per endpoint. 0 selects 5000; negative disables
	// rate limiting.
	RateLimitPerMinute int
	// Addr is where Start listens (default "127.0.0.1:0", a free port).
	Addr string
	// Now is the clock for rate limiting, event_time validation, token
	// expiry, audience sizes and the Event Quality Score (default
	// time.Now). Injected latency always uses real time.
	Now func() time.Time
	// AccessTokenTTL and RefreshTokenTTL are the lifetimes of the OAuth
	// tokens POST /v5/oauth/token issues (defaults 30 and 60 days).
	AccessTokenTTL, RefreshTokenTTL time.Duration
	// AudienceDelay is Pinterest's processing delay: an audience or
	// customer list is INITIALIZING (PROCESSING) for this long after its
	// creation, and its size is a snapshot refreshed at most this often
	// (default 0: always current).
	AudienceDelay time.Duration
	// EventIDsRoom is how many event ids each ad account's EventIDs tally
	// has room for from the start: a large run (a benchmark) spares the
	// tally's growth, which costs the simulator's process CPU while the
	// daemon it measures shares its cores. Default 0: it grows as needed.
	EventIDsRoom int
}

// Fault is an injected failure or delay, see SetFault.
type Fault struct {
	// Status is answered instead of processing the request; 0 = none
	// (only Latency applies).
	Status int
	// RetryAfter is sent as Retry-After in whole seconds, rounded up, when
	// > 0 and Status != 0.
	RetryAfter time.Duration
	// Latency is waited before answering (or before processing normally when
	// Status is 0). The wait ends early, without an answer, when the client
	// gives up or the Simulator is closed.
	Latency time.Duration
	// Times is how many requests the fault applies to; 0 = until cleared.
	Times int
	// RejectEvents, when not empty (and Status is 0), answers every valid
	// event of the request "failed" with this error_message: Pinterest
	// refusing events for a rule the spec does not state.
	RejectEvents string
}

// Received is one event of a 200 answer, as decoded, with its outcome.
type Received struct {
	AdAccountID  string
	Event        pinterest.Event
	Status       string // pinterest.StatusProcessed or pinterest.StatusFailed
	ErrorMessage string
	Test         bool      // sent with ?test=true
	At           time.Time // when the request arrived (Options.Now)
}

// Stats are per-account counters. Requests counts every request routed to
// a known account on any ad account endpoint; the next five split them by
// answer (Injected = answered with a fault's Status; latency-only faults
// are not counted; a 404 for an unknown customer list or audience is in
// none of them). Events counts events in 200 answers of the events
// endpoint, test ones included; Processed and Failed count non-test events
// by status; TestEvents counts ?test=true events. ListUpdates counts 200
// answers of PATCH on a customer list.
type Stats struct {
	Requests, Accepted200, Unauthorized, RateLimited, BadRequest, Injected int64
	Events, Processed, Failed, TestEvents                                  int64
	ListUpdates                                                            int64
}

// Simulator is the fake API. Use New for an http.Handler (mount it so that
// paths start with /v5/) or Start for a loopback server.
type Simulator struct {
	now       func() time.Time
	threshold uint32 // identifier known iff first two hash bytes < threshold
	limit     int
	idsRoom   int // Options.EventIDsRoom

	accessTTL, refreshTTL, audienceDelay time.Duration
	lastID                               atomic.Int64 // ids of lists and audiences

	authMu        sync.Mutex // guards the OAuth maps
	apps          map[string]*app
	refreshTokens map[string]*grant
	accessTokens  map[string]*grant

	mu       sync.RWMutex
	accounts map[string]*account

	faultMu     sync.Mutex
	faults      map[string]*faultState
	faultsCount atomic.Int32 // len(faults), read without faultMu

	record      atomic.Bool
	recordIDs   atomic.Bool
	arrivalHook atomic.Pointer[ArrivalHook]
	listHook    atomic.Pointer[ListArrivalHook]
	inFlight    atomic.Int64

	closing   chan struct{}
	closeOnce sync.Once
	closeErr  error
	srv       *http.Server
	served    chan struct{}
	url       string
}

type faultState struct {
	f         Fault
	remaining int // meaningful when f.Times > 0
}

type account struct {
	id    string
	token atomic.Pointer[string]

	requests, accepted, unauthorized, rateLimited, badRequest, injected atomic.Int64
	events, processed, failed, testEvents, listUpdates                  atomic.Int64

	// Windows of the spec's rate-limit categories ads_conversions,
	// ads_read and ads_write.
	eventsWindow, readsWindow, writesWindow window

	mu        sync.Mutex // guards the fields below
	received  []Received
	eventIDs  map[string]idTally
	arrivals  int64 // events tallied in eventIDs so far, duplicates included
	lists     map[string]*customerList
	audiences map[string]*audience
	tags      []string
	visitors  map[visitorKey]map[string]int64 // known user → latest event_time
	quality   map[qualityKey]*qualityTally
	// qualityHour is the hour of the last quality tally (older ones are
	// pruned when it changes).
	qualityHour int64
}

// idTally is what the simulator keeps per event id: how often it was
// received, and the position of its first arrival.
type idTally struct {
	n     int
	first int64
}

// New returns a Simulator that serves through ServeHTTP.
func New(opts Options) *Simulator {
	s := &Simulator{
		now:      opts.Now,
		accounts: make(map[string]*account, len(opts.Accounts)),
		faults:   make(map[string]*faultState),
		closing:  make(chan struct{}),

		accessTTL:     orDefault(opts.AccessTokenTTL, DefaultAccessTokenTTL),
		refreshTTL:    orDefault(opts.RefreshTokenTTL, DefaultRefreshTokenTTL),
		audienceDelay: opts.AudienceDelay,
		apps:          make(map[string]*app),
		refreshTokens: make(map[string]*grant),
		accessTokens:  make(map[string]*grant),
	}
	s.lastID.Store(firstID - 1)
	if s.now == nil {
		s.now = time.Now
	}
	share := opts.KnownUserShare
	switch {
	case share == 0:
		share = DefaultKnownUserShare
	case share < 0:
		share = 0
	case share > 1:
		share = 1
	}
	s.threshold = uint32(share * 65536)
	s.idsRoom = max(opts.EventIDsRoom, 0)
	s.limit = opts.RateLimitPerMinute
	if s.limit == 0 {
		s.limit = DefaultRateLimitPerMinute
	}
	s.record.Store(true)
	s.recordIDs.Store(true)
	for id, tok := range opts.Accounts {
		s.SetToken(id, tok)
	}
	return s
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Start listens on opts.Addr (default 127.0.0.1:0) and serves until Close.
func Start(opts Options) (*Simulator, error) {
	addr := opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	if err := checkLoopback(addr); err != nil {
		return nil, err
	}
	s := New(opts)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s.url = "http://" + ln.Addr().String() + "/v5"
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	s.served = make(chan struct{})
	go func() {
		defer close(s.served)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

// checkLoopback refuses an address the simulator must not listen on: it
// answers as Pinterest would to anyone who reaches it, with tokens anyone
// can read in its command line, so it stays on this machine (127.0.0.0/8,
// ::1 or localhost).
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("simulator address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); !strings.EqualFold(host, "localhost") && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("simulator address %q: the host must be loopback (127.0.0.0/8, ::1 or localhost): the simulator is a stand-in for tests and demos, not a service", addr)
	}
	return nil
}

// URL is the API root of a started Simulator, "http://127.0.0.1:PORT/v5";
// "" for one made with New.
func (s *Simulator) URL() string { return s.url }

// Close ends injected latencies in progress, then shuts the server down
// gracefully (waiting up to 5 s for running requests) and waits for its
// goroutine. It is idempotent and also valid on a Simulator made with New.
func (s *Simulator) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		if s.srv == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.srv.Shutdown(ctx); err != nil {
			// Shutdown counts a pooled connection that never sent a
			// request as active: after the grace period close it hard.
			// That is not an error of the simulator.
			s.closeErr = s.srv.Close()
			if !errors.Is(err, context.DeadlineExceeded) {
				s.closeErr = errors.Join(err, s.closeErr)
			}
		}
		<-s.served
	})
	return s.closeErr
}

// SetToken sets the bearer token an ad account accepts, adding the account
// if it is new.
func (s *Simulator) SetToken(adAccountID, token string) {
	s.ensureAccount(adAccountID).token.Store(&token)
}

// ensureAccount returns the ad account, adding it if it is new.
func (s *Simulator) ensureAccount(adAccountID string) *account {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.accounts[adAccountID]
	if a == nil {
		a = &account{
			id:        adAccountID,
			eventIDs:  make(map[string]idTally, s.idsRoom),
			lists:     make(map[string]*customerList),
			audiences: make(map[string]*audience),
			visitors:  make(map[visitorKey]map[string]int64),
			quality:   make(map[qualityKey]*qualityTally),
		}
		a.eventsWindow.limit = s.limit
		a.readsWindow.limit = s.limit
		a.writesWindow.limit = s.limit
		s.accounts[adAccountID] = a
	}
	return a
}

// SetFault injects f for one ad account, or for all with "". An account's
// own fault takes precedence over the global one; setting replaces the
// previous fault of the same key. A zero Fault clears the key.
func (s *Simulator) SetFault(adAccountID string, f Fault) {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	if f == (Fault{}) {
		delete(s.faults, adAccountID)
	} else {
		s.faults[adAccountID] = &faultState{f: f, remaining: f.Times}
	}
	s.faultsCount.Store(int32(len(s.faults)))
}

// ClearFaults removes every injected fault.
func (s *Simulator) ClearFaults() {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	clear(s.faults)
	s.faultsCount.Store(0)
}

// takeFault returns the fault that applies to the next request of key (an
// ad account, or OAuthFaultKey), consuming one of its Times; the global
// fault applies when key has none and fallback is set.
func (s *Simulator) takeFault(key string, fallback bool) (Fault, bool) {
	if s.faultsCount.Load() == 0 {
		return Fault{}, false
	}
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	fs := s.faults[key]
	if fs == nil && fallback {
		key = ""
		fs = s.faults[key]
	}
	if fs == nil {
		return Fault{}, false
	}
	if fs.f.Times > 0 {
		fs.remaining--
		if fs.remaining <= 0 {
			delete(s.faults, key)
			s.faultsCount.Store(int32(len(s.faults)))
		}
	}
	return fs.f, true
}

// SetRecord turns recording of full events (Received) on or off; it is on
// by default. Counters and EventIDs are kept either way (see
// SetRecordEventIDs).
func (s *Simulator) SetRecord(on bool) { s.record.Store(on) }

// SetRecordEventIDs turns the EventIDs tally (and FirstArrivals) on or off
// (on by default).
func (s *Simulator) SetRecordEventIDs(on bool) { s.recordIDs.Store(on) }

// ArrivalHook is told of an event the simulator tallies (see
// SetArrivalHook): its ad account, its event_id and when its request
// arrived (Options.Now).
type ArrivalHook func(adAccountID, eventID string, at time.Time)

// SetArrivalHook sets a function called once per event of every 200 answer
// of the events endpoint, test events excluded, failed ones included (the
// events EventIDs counts, whether or not that tally is on); nil, the
// default, removes it. It is called on the request's goroutine before the
// answer is written, outside the simulator's locks, concurrently for
// concurrent requests: it must be safe for concurrent use and quick, since
// the client waits for it. Benchmarks use it for per-event arrival times
// without recording whole events (SetRecord).
func (s *Simulator) SetArrivalHook(h ArrivalHook) {
	if h == nil {
		s.arrivalHook.Store(nil)
		return
	}
	s.arrivalHook.Store(&h)
}

// Known reports whether an identifier value (a hashed em or hashed_maids
// value, or client_ip_address+"|"+client_user_agent) is a known user.
func (s *Simulator) Known(identifier string) bool {
	var buf [256]byte
	var sum [32]byte
	if len(identifier) <= len(buf) {
		n := copy(buf[:], identifier)
		sum = sha256.Sum256(buf[:n])
	} else {
		sum = sha256.Sum256([]byte(identifier))
	}
	return uint32(binary.BigEndian.Uint16(sum[:2])) < s.threshold
}

// sha256Hex is the lowercase hex SHA-256 of v.
func sha256Hex(v string) string {
	sum := sha256.Sum256([]byte(v))
	return hex.EncodeToString(sum[:])
}

func (s *Simulator) account(id string) *account {
	s.mu.RLock()
	a := s.accounts[id]
	s.mu.RUnlock()
	return a
}

func (s *Simulator) allAccounts() []*account {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*account, 0, len(s.accounts))
	for _, a := range s.accounts {
		out = append(out, a)
	}
	return out
}

// Received returns a copy of every event of every 200 answer for the
// account, in arrival order (nil when recording is off or the account is
// unknown). The copy is shallow: slices inside events are shared.
func (s *Simulator) Received(adAccountID string) []Received {
	a := s.account(adAccountID)
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.received) == 0 {
		return nil
	}
	return append([]Received(nil), a.received...)
}

// EventIDs returns event_id → times received in 200 answers for the
// account, test events excluded, failed ones included: a count above 1 is
// a duplicate delivery.
func (s *Simulator) EventIDs(adAccountID string) map[string]int {
	out := make(map[string]int)
	a := s.account(adAccountID)
	if a == nil {
		return out
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, v := range a.eventIDs {
		out[k] = v.n
	}
	return out
}

// FirstArrivals returns event_id → the position of its first arrival among
// the events tallied for the account (the ones EventIDs counts: 200
// answers, test events excluded, failed ones included), counting from 0
// and counting duplicates: of two ids, the one with the smaller position
// reached the account first. Events of one request are numbered in request
// order. It is kept whenever EventIDs is, so order can be checked without
// recording whole events (SetRecord).
func (s *Simulator) FirstArrivals(adAccountID string) map[string]int64 {
	out := make(map[string]int64)
	a := s.account(adAccountID)
	if a == nil {
		return out
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, v := range a.eventIDs {
		out[k] = v.first
	}
	return out
}

// Stats returns the counters of one ad account, or their sums over all
// accounts for "".
func (s *Simulator) Stats(adAccountID string) Stats {
	var st Stats
	var accts []*account
	if adAccountID == "" {
		accts = s.allAccounts()
	} else if a := s.account(adAccountID); a != nil {
		accts = []*account{a}
	}
	for _, a := range accts {
		st.Requests += a.requests.Load()
		st.Accepted200 += a.accepted.Load()
		st.Unauthorized += a.unauthorized.Load()
		st.RateLimited += a.rateLimited.Load()
		st.BadRequest += a.badRequest.Load()
		st.Injected += a.injected.Load()
		st.Events += a.events.Load()
		st.Processed += a.processed.Load()
		st.Failed += a.failed.Load()
		st.TestEvents += a.testEvents.Load()
		st.ListUpdates += a.listUpdates.Load()
	}
	return st
}

// InFlight is the number of requests being handled right now.
func (s *Simulator) InFlight() int64 { return s.inFlight.Load() }

// window is an exact sliding one-minute window: ts holds the times of the
// last accepted calls (at most limit), head indexes the oldest once full.
type window struct {
	mu    sync.Mutex
	limit int // < 0: unlimited
	ts    []int64
	head  int
}

// allow records a call at now if fewer than limit calls were accepted in the
// minute before; otherwise it returns how long until one leaves the window.
func (w *window) allow(now time.Time) (bool, time.Duration) {
	if w.limit < 0 {
		return true, 0
	}
	n := now.UnixNano()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.ts) < w.limit {
		w.ts = append(w.ts, n)
		return true, 0
	}
	oldest := w.ts[w.head]
	if wait := oldest + int64(time.Minute) - n; wait > 0 {
		return false, time.Duration(wait)
	}
	w.ts[w.head] = n
	w.head++
	if w.head == w.limit {
		w.head = 0
	}
	return true, 0
}
