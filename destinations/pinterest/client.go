// Package pinterest is the Pinterest API v5 destination: it turns batches of
// membership changes into conversion events and sends them with
// go-retryablehttp, one bearer token per ad account, and classifies every
// outcome into the destinations error vocabulary. HTTP to Pinterest appears
// nowhere else in the project.
package pinterest

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"maps"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/rs/zerolog"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/destinations"
)

// Config configures a Client. Zero durations and counts take the defaults
// documented on each field.
type Config struct {
	// BaseURL is the API root, e.g. "https://api.pinterest.com/v5".
	BaseURL string
	// Tokens maps ad account id → static conversion token, used for events.
	Tokens map[string]string
	// TokenSources maps ad account id → the source of its events token,
	// used when Tokens has none for the account. A batch with events for
	// an account in neither map is rejected with ReasonAuth before any
	// request is made.
	TokenSources map[string]destinations.TokenSource
	// AdsTokens maps ad account id → the source of its OAuth access token
	// (ads:read/ads:write), the only kind the audiences and customer-list
	// endpoints accept: every AudienceAPI call and every customer-list
	// operation of Send uses it. An account without one is rejected with
	// ReasonAuth before any request is made.
	AdsTokens map[string]destinations.TokenSource
	// AttemptTimeout bounds one HTTP attempt (default 10s).
	AttemptTimeout time.Duration
	// CallTimeout bounds one Send, all retries and waits included
	// (default 30s). It must stay below the JetStream AckWait so that no
	// message is redelivered while its call is still running.
	CallTimeout time.Duration
	// RetryMax is the number of retries inside one call (default 3; a
	// negative value disables retries).
	RetryMax int
	// RetryWaitMin and RetryWaitMax bound the exponential wait between
	// retries (defaults 250ms and 5s). RetryWaitMax also caps a Retry-After
	// honoured inside a call: a longer Retry-After ends the call, and the
	// wait is left to JetStream's delayed redelivery.
	RetryWaitMin, RetryWaitMax time.Duration
	// CallsPerMinute is the call budget per ad account (default
	// DefaultCallsPerMinute; negative disables it). Every HTTP attempt,
	// retries included, waits on it; a 429 halves it and pauses the
	// account for the Retry-After (at most MaxRetryAfter), answered calls
	// raise it back.
	CallsPerMinute int
	// MaxRetryAfter caps every Retry-After Pinterest (or a proxy) asks for
	// (default 15m): the pause of the ad account's call budget and the
	// RetryAfter of the returned *destinations.Error, which the connector
	// uses as its redelivery delay. Without it a single 429 with
	// "Retry-After: 86400" would stop the account for a day.
	MaxRetryAfter time.Duration
	// Test adds ?test=true: Pinterest validates without recording.
	Test bool
	// Logger receives retry logs at debug/warn level (never the token).
	Logger zerolog.Logger
	// OnAttempt, if set, is called after every HTTP attempt with the ad
	// account, the attempt's number within its call (1 for the first, more
	// for a retry), the status code (0 when no answer) and the attempt's
	// duration. Calls to the OAuth endpoint, which belong to no ad account,
	// are not reported.
	OnAttempt func(adAccountID string, attempt, status int, d time.Duration)
	// OnRateLimitWait, if set, is called when a call waited for the ad
	// account's call budget (or a 429's pause) at least a millisecond,
	// with how long.
	OnRateLimitWait func(adAccountID string, d time.Duration)
}

func (c *Config) setDefaults() {
	if c.AttemptTimeout <= 0 {
		c.AttemptTimeout = 10 * time.Second
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = 30 * time.Second
	}
	if c.RetryMax == 0 {
		c.RetryMax = 3
	} else if c.RetryMax < 0 {
		c.RetryMax = 0
	}
	if c.RetryWaitMin <= 0 {
		c.RetryWaitMin = 250 * time.Millisecond
	}
	if c.RetryWaitMax <= 0 {
		c.RetryWaitMax = 5 * time.Second
	}
	if c.MaxRetryAfter <= 0 {
		c.MaxRetryAfter = 15 * time.Minute
	}
}

// Client sends conversion events and customer-list operations to Pinterest,
// manages audiences (destinations.AudienceAPI) and refreshes OAuth tokens
// (destinations.TokenRefresher). It is safe for concurrent use.
type Client struct {
	cfg     Config
	base    *url.URL
	http    *retryablehttp.Client
	budgets map[string]*budget // per ad account; nil when disabled
	secrets redactor           // scrubs the static tokens from what answers echo
}

var (
	_ destinations.Destination    = (*Client)(nil)
	_ destinations.AudienceAPI    = (*Client)(nil)
	_ destinations.TokenRefresher = (*Client)(nil)
)

// New returns a Client for cfg.
func New(cfg Config) (*Client, error) {
	cfg.setDefaults()
	base, err := url.Parse(strings.TrimRight(cfg.BaseURL, "/"))
	if err != nil || base.Host == "" || (base.Scheme != "https" && base.Scheme != "http") {
		return nil, fmt.Errorf("pinterest base URL %q: must be an absolute http(s) URL", cfg.BaseURL)
	}
	rc := retryablehttp.NewClient()
	rc.Logger = nil // retries are logged by checkRetry, once per change of error
	rc.HTTPClient = &http.Client{
		Timeout: cfg.AttemptTimeout,
		// Never follow a redirect: net/http would resend the Authorization
		// header (and, on 307/308, the events) to wherever Location points.
		// The 3xx itself is the answer, classified as ReasonRedirect.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ForceAttemptHTTP2:   true,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
			TLSHandshakeTimeout: 5 * time.Second,
		},
	}
	rc.RetryMax = cfg.RetryMax
	rc.RetryWaitMin = cfg.RetryWaitMin
	rc.RetryWaitMax = cfg.RetryWaitMax
	rc.Backoff = backoff
	// Keep the final response after the last retry: its status code is the
	// classification. The default handler would close it and return a
	// string error, losing the code.
	rc.ErrorHandler = retryablehttp.PassthroughErrorHandler
	c := &Client{cfg: cfg, base: base, http: rc, secrets: newRedactor(cfg.Tokens)}
	if cfg.CallsPerMinute >= 0 {
		c.budgets = make(map[string]*budget, len(cfg.Tokens))
		newBudgets := func(ids iter.Seq[string]) {
			for id := range ids {
				if c.budgets[id] == nil {
					c.budgets[id] = newBudget(cmp.Or(cfg.CallsPerMinute, DefaultCallsPerMinute), cfg.MaxRetryAfter)
				}
			}
		}
		// One budget per account, whichever token its calls carry: the
		// limit is Pinterest's per ad account.
		newBudgets(maps.Keys(cfg.Tokens))
		newBudgets(maps.Keys(cfg.TokenSources))
		newBudgets(maps.Keys(cfg.AdsTokens))
	}
	rc.CheckRetry = c.checkRetry
	// A retry is a call like any other: it waits for the account's budget.
	rc.PrepareRetry = func(r *http.Request) error {
		if st, ok := r.Context().Value(callStateKey{}).(*callState); ok && st.budget != nil {
			return c.timedWait(st.adAccountID, func() error { return st.budget.wait(r.Context()) })
		}
		return nil
	}
	// Called right before every attempt: the attempt's duration starts
	// here, not when the previous one ended (the retry wait is not latency).
	rc.RequestLogHook = func(_ retryablehttp.Logger, r *http.Request, _ int) {
		if st, ok := r.Context().Value(callStateKey{}).(*callState); ok {
			st.started.Store(time.Now().UnixNano())
		}
	}
	return c, nil
}

// CallsPerMinute is the ad account's current call budget (it adapts to
// 429s), 0 when budgets are disabled or the account is unknown.
func (c *Client) CallsPerMinute(adAccountID string) float64 {
	if b := c.budgets[adAccountID]; b != nil {
		return b.limit() * 60
	}
	return 0
}

// AwaitCall returns when the ad account may make a call, having taken
// that call's place in the budget (destinations.CallGate), or with ctx's
// error.
func (c *Client) AwaitCall(ctx context.Context, adAccountID string) error {
	if b := c.budgets[adAccountID]; b != nil {
		return c.timedWait(adAccountID, func() error { return b.reserve(ctx) })
	}
	return nil
}

// timedWait runs wait, a wait on a budget, and reports one of at least a
// millisecond to OnRateLimitWait.
func (c *Client) timedWait(adAccountID string, wait func() error) error {
	if c.cfg.OnRateLimitWait == nil {
		return wait()
	}
	start := time.Now()
	err := wait()
	if d := time.Since(start); d >= time.Millisecond {
		c.cfg.OnRateLimitWait(adAccountID, d)
	}
	return err
}

// CloseIdleConnections releases pooled connections (on shutdown).
func (c *Client) CloseIdleConnections() { c.http.HTTPClient.CloseIdleConnections() }

// NewEvent is the wire form of one item: a custom offline event whose
// content_ids name the cohort and content_name says enter or exit.
func NewEvent(it destinations.Item) Event {
	m := it.Membership
	name := ContentNameEnter
	if m.Action == cohorts.ActionExit {
		name = ContentNameExit
	}
	ev := Event{
		EventName:    EventNameCustom,
		ActionSource: ActionSourceOffline,
		EventTime:    m.TS.Unix(),
		EventID:      it.EventID,
		UserData: UserData{
			ClientIPAddress: it.Hashed.ClientIP,
			ClientUserAgent: it.Hashed.UserAgent,
		},
		CustomData: &CustomData{ContentIDs: []string{m.CohortID}, ContentName: name},
	}
	if it.Hashed.Em != "" {
		ev.UserData.Em = []string{it.Hashed.Em}
	}
	if it.Hashed.HashedMAID != "" {
		ev.UserData.HashedMaids = []string{it.Hashed.HashedMAID}
	}
	if it.Hashed.ExternalID != "" {
		ev.UserData.ExternalID = []string{it.Hashed.ExternalID}
	}
	return ev
}

// Send delivers b: a conversion event per item (except ListsOnly items)
// to /ad_accounts/{id}/events in calls of at most MaxEventsPerRequest, then
// the customer-list operations of the items (see sendLists). See
// destinations.Destination for the meaning of the result. A 400/422 answer
// for several events or records is bisected until the bad ones are
// isolated, so one bad item does not condemn its batch. An item is
// processed only when its event (if any) and every list operation of it
// succeeded.
func (c *Client) Send(ctx context.Context, b destinations.Batch) (destinations.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	plan := planBatch(b.Items)
	var evCred, listCred credential
	var err error
	// Both credentials are had before any request: a missing one fails the
	// batch without sending half of it.
	if len(plan.events) > 0 {
		if evCred, err = c.eventsCredential(ctx, b.AdAccountID); err != nil {
			return destinations.Result{}, err
		}
	}
	if len(plan.runs) > 0 {
		if listCred, err = c.adsCredential(ctx, b.AdAccountID); err != nil {
			return destinations.Result{}, err
		}
	}
	res := destinations.Result{Items: make([]destinations.ItemResult, len(b.Items))}
	// A Result is all or nothing: when a call fails, earlier calls were
	// accepted, but the whole batch is retried (Pinterest deduplicates
	// events on event_id; an ADD or REMOVE repeated changes no membership).
	if err := c.sendEvents(ctx, b.AdAccountID, evCred, b.Items, plan.events, res.Items); err != nil {
		return destinations.Result{}, err
	}
	listErrs, err := c.sendLists(ctx, b.AdAccountID, listCred, b.Items, plan.runs)
	if err != nil {
		return destinations.Result{}, err
	}
	plan.settle(res.Items, listErrs)
	res.Answered = len(plan.events) > 0 || len(plan.runs) > 0
	return res, nil
}

// sendEvents sends the events of items[idx...] and writes each verdict to
// out at the item's index.
func (c *Client) sendEvents(ctx context.Context, adAccountID string, cred credential, items []destinations.Item, idx []int, out []destinations.ItemResult) error {
	enc := encodeEvents(items, idx)
	verdicts := make([]destinations.ItemResult, len(idx))
	for start := 0; start < len(idx); start += MaxEventsPerRequest {
		end := min(start+MaxEventsPerRequest, len(idx))
		vs := verdicts[start:end]
		err := bisect(end-start, func(lo, hi int) error {
			return c.postEvents(ctx, adAccountID, cred, enc.body(start+lo, start+hi), vs[lo:hi])
		}, func(k int, de *destinations.Error) {
			vs[k] = destinations.ItemResult{Error: de.Error()}
		})
		if err != nil {
			return err
		}
	}
	for k, i := range idx {
		out[i] = verdicts[k]
	}
	return nil
}

// bisect calls send(0, n); on a whole-request bad-input answer it splits
// the range in two and tries each half, in order, until the bad units are
// isolated: reject is then called with each one's index and error. Any
// other error ends it. Events and customer-list records are both sent this
// way.
func bisect(n int, send func(lo, hi int) error, reject func(i int, de *destinations.Error)) error {
	var run func(lo, hi int) error
	run = func(lo, hi int) error {
		err := send(lo, hi)
		var de *destinations.Error
		if err == nil || !errors.As(err, &de) || de.Reason != destinations.ReasonBadInput {
			return err
		}
		if hi-lo == 1 {
			reject(lo, de)
			return nil
		}
		mid := lo + (hi-lo)/2
		if err := run(lo, mid); err != nil {
			return err
		}
		return run(mid, hi)
	}
	if n == 0 {
		return nil
	}
	return run(0, n)
}

// callState is what checkRetry learns about one call; it travels in the
// request context so the shared retryablehttp.Client stays stateless.
type callState struct {
	adAccountID string
	budget      *budget // nil when budgets are disabled
	lastStatus  atomic.Int64
	retryAfter  atomic.Int64 // nanoseconds
	lastErr     atomic.Pointer[string]
	attempts    atomic.Int64
	started     atomic.Int64 // unix nanos of the current attempt
}

type callStateKey struct{}

// credential is the Authorization header of one call and the redactor
// that scrubs everything the answer echoes, this call's secret included.
type credential struct {
	auth    string
	secrets redactor
	// rejected, if set, tells the token's source that Pinterest refused
	// it (401).
	rejected func()
}

// apiCall is one request to Pinterest, sent by Client.do.
type apiCall struct {
	// adAccountID selects the call budget and labels OnAttempt; "" (the
	// OAuth endpoint) has no budget and is not reported to OnAttempt.
	adAccountID string
	method      string
	url         *url.URL
	cred        credential
	contentType string // of body; "" when there is none
	body        []byte
}

// do is the one HTTP path to Pinterest: it sends call with retries, under
// the account's call budget, never following a redirect, and decodes a 2xx
// JSON answer into out (when out is not nil). It returns the final status
// (0 when no answer) and a classified *destinations.Error for any other
// outcome, scrubbed by call.cred.secrets.
func (c *Client) do(ctx context.Context, call apiCall, out any) (int, error) {
	st := &callState{adAccountID: call.adAccountID, budget: c.budgets[call.adAccountID]}
	req, err := retryablehttp.NewRequestWithContext(context.WithValue(ctx, callStateKey{}, st), call.method, call.url.String(), call.body)
	if err != nil {
		return 0, &destinations.Error{Reason: destinations.ReasonBadInput, Err: fmt.Errorf("building request: %w", err)}
	}
	req.Header.Set("Authorization", call.cred.auth)
	if call.contentType != "" {
		req.Header.Set("Content-Type", call.contentType)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "cohort-connector")
	if st.budget != nil {
		if err := c.timedWait(call.adAccountID, func() error { return st.budget.wait(ctx) }); err != nil {
			return 0, c.transportError(ctx, st, err)
		}
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, c.transportError(ctx, st, err)
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
	}()
	if resp.StatusCode == http.StatusUnauthorized && call.cred.rejected != nil {
		call.cred.rejected()
	}
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		return resp.StatusCode, c.classifyStatus(resp, call.cred.secrets)
	}
	if out != nil {
		if err := decodeAnswer(io.LimitReader(resp.Body, 64<<20), out); err != nil {
			return resp.StatusCode, &destinations.Error{Reason: destinations.ReasonServer, StatusCode: resp.StatusCode,
				Err: fmt.Errorf("decoding answer: %w", err)}
		}
	}
	return resp.StatusCode, nil
}

// answerBuffers recycles the buffers answers are read into.
var answerBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// decodeAnswer decodes the JSON answer in body into out: as a
// json.Decoder would, by the fast path for the events endpoint's answer.
func decodeAnswer(body io.Reader, out any) error {
	buf := answerBuffers.Get().(*bytes.Buffer)
	defer answerBuffers.Put(buf)
	buf.Reset()
	if _, err := buf.ReadFrom(body); err != nil {
		return err
	}
	if r, ok := out.(*EventsResponse); ok {
		return decodeEventsResponse(buf.Bytes(), r)
	}
	return json.NewDecoder(buf).Decode(out)
}

// postEvents posts body, the EventsRequest of len(out) events, and fills
// out with Pinterest's verdict on each.
func (c *Client) postEvents(ctx context.Context, adAccountID string, cred credential, body []byte, out []destinations.ItemResult) error {
	return c.postEventsTo(ctx, adAccountID, cred, body, out, c.cfg.Test)
}

// postEventsTo is postEvents, with ?test=true when test is set.
func (c *Client) postEventsTo(ctx context.Context, adAccountID string, cred credential, body []byte, out []destinations.ItemResult, test bool) error {
	u := c.base.JoinPath("ad_accounts", adAccountID, "events")
	if test {
		u.RawQuery = "test=true"
	}
	var er EventsResponse
	status, err := c.do(ctx, apiCall{adAccountID: adAccountID, method: http.MethodPost, url: u,
		cred: cred, contentType: "application/json", body: body}, &er)
	if err != nil {
		return err
	}
	if len(er.Events) != len(out) {
		return &destinations.Error{Reason: destinations.ReasonServer, StatusCode: status,
			Message: fmt.Sprintf("answer lists %d events for %d sent", len(er.Events), len(out))}
	}
	red := cred.secrets
	for i, e := range er.Events {
		out[i] = destinations.ItemResult{Processed: e.Status == StatusProcessed,
			Error: red.redact(e.ErrorMessage), Warning: red.redact(e.WarningMessage)}
		if !out[i].Processed && out[i].Error == "" {
			out[i].Error = "status " + strconv.Quote(red.redact(e.Status))
		}
	}
	return nil
}

// transportError classifies a call that ended without a usable answer.
func (c *Client) transportError(ctx context.Context, st *callState, err error) error {
	var budgetErr *destinations.Error
	if errors.As(err, &budgetErr) { // the call budget refused to wait that long
		return budgetErr
	}
	de := &destinations.Error{Err: err, StatusCode: int(st.lastStatus.Load()), RetryAfter: time.Duration(st.retryAfter.Load())}
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		de.Reason = destinations.ReasonShutdown
	case de.StatusCode != 0:
		// The call ran out of time while waiting to retry an answered
		// attempt: the last answer's class is the honest verdict.
		de.Reason = reasonForStatus(de.StatusCode)
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		de.Reason = destinations.ReasonTimeout
	default:
		de.Reason = destinations.ReasonServer // connection refused, reset, DNS
	}
	return de
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func reasonForStatus(code int) destinations.Reason {
	switch {
	case code == http.StatusUnauthorized, code == http.StatusForbidden:
		return destinations.ReasonAuth
	case code == http.StatusNotFound:
		return destinations.ReasonNotFound
	case code == http.StatusTooManyRequests:
		return destinations.ReasonRateLimited
	case code == http.StatusRequestTimeout:
		return destinations.ReasonTimeout
	case code >= 300 && code < 400:
		return destinations.ReasonRedirect
	case code >= 500:
		return destinations.ReasonServer
	case code >= 400:
		return destinations.ReasonBadInput
	default:
		return destinations.ReasonServer
	}
}

// classifyStatus turns a final non-2xx answer into a *destinations.Error
// carrying the status, Pinterest's message and any Retry-After (capped).
func (c *Client) classifyStatus(resp *http.Response, secrets redactor) error {
	de := &destinations.Error{Reason: reasonForStatus(resp.StatusCode), StatusCode: resp.StatusCode}
	if d, ok := c.retryAfter(resp); ok {
		de.RetryAfter = d
	}
	if de.Reason == destinations.ReasonRedirect {
		de.Message = "redirect not followed (it would carry the token elsewhere); check the base URL and any proxy"
		if loc := truncate(secrets.redact(redirectTarget(resp)), 200); loc != "" {
			de.Message = "redirect to " + loc + " not followed (it would carry the token elsewhere); check the base URL and any proxy"
		}
		return de
	}
	var er ErrorResponse
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(raw, &er) == nil && er.Message != "" {
		de.Message = secrets.redact(er.Message)
		if er.Code != 0 {
			de.Message = fmt.Sprintf("%s (code %d)", de.Message, er.Code)
		}
	} else if s := strings.TrimSpace(string(raw)); s != "" {
		// Redacted before it is cut, so that no part of a token survives.
		de.Message = truncate(secrets.redact(s), 200)
	}
	return de
}

// redirectTarget is the Location of a 3xx answer without user info, query
// or fragment (where a credential could be), resolved against the request's
// URL; "" when there is none.
func redirectTarget(resp *http.Response) string {
	loc, err := resp.Location()
	if err != nil {
		return ""
	}
	loc.User, loc.RawQuery, loc.ForceQuery, loc.Fragment, loc.RawFragment = nil, "", false, "", ""
	return loc.String()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// retryAfter is the answer's Retry-After, at most MaxRetryAfter.
func (c *Client) retryAfter(resp *http.Response) (time.Duration, bool) {
	d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	return min(d, c.cfg.MaxRetryAfter), ok
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date.
// Delay-seconds are capped at a day only to keep the conversion in range;
// Client.retryAfter applies the real cap.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s < 0 {
			return 0, false
		}
		return time.Duration(min(s, int64(24*time.Hour/time.Second))) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// checkRetry retries 429, 5xx except 501, 408 and network errors. It stops
// when the context is done, and when Pinterest asks for a wait longer than
// RetryWaitMax (that wait belongs to JetStream's delayed redelivery, not to
// an HTTP call that must end before AckWait). It also records the outcome
// of each attempt in the call's state, and logs a retry only when its cause
// differs from the previous attempt's.
func (c *Client) checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	st, _ := ctx.Value(callStateKey{}).(*callState)
	if st == nil {
		return false, errors.New("pinterest: request without call state")
	}
	attempt := int(st.attempts.Add(1))
	status := 0
	if resp != nil {
		status = resp.StatusCode
	}
	if c.cfg.OnAttempt != nil && st.adAccountID != "" {
		c.cfg.OnAttempt(st.adAccountID, attempt, status, time.Duration(time.Now().UnixNano()-st.started.Load()))
	}
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	var cause string
	retry := false
	if err != nil {
		var certErr *tls.CertificateVerificationError
		// A certificate that does not verify would fail the same way again.
		retry = !errors.As(err, &certErr)
		cause = err.Error()
		// This attempt got no answer: an earlier one's status is no
		// longer the call's outcome.
		st.lastStatus.Store(0)
		st.retryAfter.Store(0)
	} else {
		st.lastStatus.Store(int64(status))
		retryAfter, hasRetryAfter := c.retryAfter(resp)
		st.retryAfter.Store(int64(retryAfter)) // 0 when absent
		if st.budget != nil {
			if status == http.StatusTooManyRequests {
				st.budget.throttled(retryAfter)
			} else {
				st.budget.answered()
			}
		}
		cause = "HTTP " + strconv.Itoa(status)
		switch {
		case status == http.StatusTooManyRequests, status == http.StatusRequestTimeout:
			retry = true
		case status >= 500 && status != http.StatusNotImplemented:
			retry = true
		}
		if hasRetryAfter && retryAfter > c.cfg.RetryWaitMax {
			retry = false // the long wait is left to redelivery
		}
	}
	if retry && attempt <= c.cfg.RetryMax {
		if prev := st.lastErr.Swap(&cause); prev == nil || *prev != cause {
			c.cfg.Logger.Debug().Str("ad_account_id", st.adAccountID).Int("attempt", attempt).
				Str("reason", cause).Msg("retrying Pinterest call")
		}
	}
	return retry, nil
}

// backoff is exponential between min and max; a Retry-After (already known
// to be at most max by checkRetry) replaces it.
func backoff(minWait, maxWait time.Duration, attemptNum int, resp *http.Response) time.Duration {
	if resp != nil {
		if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			return min(d, maxWait)
		}
	}
	d := minWait << min(attemptNum, 20)
	if d <= 0 || d > maxWait {
		d = maxWait
	}
	return d
}
