package simulator

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cohort-connector/cohort-connector/destinations/pinterest"
)

// Error messages of failed events (status "failed", answer still 200).
const (
	ErrEventNameMissing    = "event_name is required"
	ErrEventNameInvalid    = "event_name is not a valid event name"
	ErrActionSourceMissing = "action_source is required"
	ErrActionSourceInvalid = "action_source must be one of app_android, app_ios, web, offline"
	ErrEventTimeInvalid    = "event_time must be a positive Unix timestamp in seconds"
	ErrEventTimeFuture     = "event_time is more than 1 hour in the future"
	ErrEventIDMissing      = "event_id is required"
	ErrUserDataMissing     = "user_data requires em, hashed_maids, or client_ip_address and client_user_agent"
	ErrEmNotHex            = "em must be SHA-256 hex"
	ErrHashedMaidsNotHex   = "hashed_maids must be SHA-256 hex"
	ErrExternalIDNotHex    = "external_id must be SHA-256 hex"
)

// Error codes of non-200 answers (see the package comment).
const (
	CodeInvalidParameter = 1
	CodeAuthFailed       = 2
	CodeAccountNotFound  = 2
	CodeObjectNotFound   = 2
	CodeMethodNotAllowed = 5
	CodeRateLimited      = 8
	CodeForbidden        = 29
	CodeNotFound         = 404
	CodeInvalidRequest   = 4196
	CodeRampedDown       = 4197
)

const rateLimitMessage = "This request exceeded a rate limit. This can happen if the client exceeds one\nof the published rate limits within a short time window."

// eventNames is the spec's list of event_name values.
var eventNames = map[string]bool{
	"add_payment_info": true, "add_to_cart": true, "add_to_wishlist": true,
	"app_install": true, "checkout": true, "custom": true,
	"initiate_checkout": true, "lead": true, "page_visit": true,
	"search": true, "signup": true, "subscribe": true,
	"view_category": true, "view_content": true, "watch_video": true,
}

var jsonContentType = []string{"application/json"}

// ServeHTTP routes /v5/oauth/token and the ad account endpoints of routes.
func (s *Simulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.inFlight.Add(1)
	defer s.inFlight.Add(-1)

	if r.URL.Path == "/v5/oauth/token" {
		s.serveOAuth(w, r)
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/v5/ad_accounts/")
	if !ok {
		writeError(w, http.StatusNotFound, CodeNotFound, "Resource not found.")
		return
	}
	id, rest, _ := strings.Cut(rest, "/")
	res, sub := findResource(rest)
	if res == nil {
		writeError(w, http.StatusNotFound, CodeNotFound, "Resource not found.")
		return
	}
	op, ok := res.ops[r.Method]
	if !ok {
		methodNotAllowed(w, res.allow)
		return
	}

	if !validID(id) {
		writeError(w, http.StatusBadRequest, CodeInvalidParameter,
			"'ad_account_id' value '"+id+"' must match the pattern: ^\\d+$ and be at most 18 characters")
		return
	}
	a := s.account(id)
	if a == nil {
		writeError(w, http.StatusNotFound, CodeAccountNotFound, "AdAccount not found.")
		return
	}
	a.requests.Add(1)
	if res.subName != "" && !validID(sub) {
		a.badRequest.Add(1)
		writeError(w, http.StatusBadRequest, CodeInvalidParameter,
			"'"+res.subName+"' value '"+sub+"' must match the pattern: ^\\d+$ and be at most 18 characters")
		return
	}

	f, answered := s.applyFault(w, r, id, true)
	if answered {
		if f.Status != 0 {
			a.injected.Add(1)
		}
		return
	}
	if !s.allowed(a, r.Header.Get("Authorization"), op.access) {
		a.unauthorized.Add(1)
		writeError(w, http.StatusUnauthorized, CodeAuthFailed, "Authentication failed.")
		return
	}
	if ok, wait := a.window(op.access).allow(s.now()); !ok {
		a.rateLimited.Add(1)
		setRetryAfter(w, wait)
		writeError(w, http.StatusTooManyRequests, CodeRateLimited, rateLimitMessage)
		return
	}
	op.serve(s, w, r, a, sub, f)
}

// applyFault applies the fault of key (falling back to the global one when
// fallback is set): it waits its Latency and answers its Status. answered
// reports that the request is done (answered, or abandoned during the
// wait); f.Status != 0 then tells that the fault answered it.
func (s *Simulator) applyFault(w http.ResponseWriter, r *http.Request, key string, fallback bool) (f Fault, answered bool) {
	f, faulted := s.takeFault(key, fallback)
	if !faulted {
		return Fault{}, false
	}
	if f.Latency > 0 {
		// net/http notices a client hanging up only once the body has
		// been read to EOF, so buffer it before waiting.
		if r.Body != nil {
			b, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
			if err != nil {
				return Fault{}, true
			}
			r.Body = io.NopCloser(bytes.NewReader(b))
		}
		t := time.NewTimer(f.Latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return Fault{}, true
		case <-s.closing:
			t.Stop()
			return Fault{}, true
		}
	}
	if f.Status == 0 {
		return f, false
	}
	if f.RetryAfter > 0 {
		setRetryAfter(w, f.RetryAfter)
	}
	writeError(w, f.Status, faultCode(f.Status), faultMessage(f.Status))
	return f, true
}

// validID reports whether id matches the spec's ^\d+$ with maxLength 18.
func validID(id string) bool {
	if len(id) == 0 || len(id) > 18 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < '0' || id[i] > '9' {
			return false
		}
	}
	return true
}

// decodeBody checks the content type and decodes the body strictly into v,
// answering 400/413 itself when it fails.
func decodeBody(w http.ResponseWriter, r *http.Request, a *account, v any) bool {
	ct := r.Header.Get("Content-Type")
	if ct != "application/json" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			a.badRequest.Add(1)
			writeError(w, http.StatusBadRequest, CodeInvalidRequest, "Content-Type must be application/json.")
			return false
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err == nil {
		err = strictDecode(body, v)
	}
	if err != nil {
		a.badRequest.Add(1)
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, CodeInvalidRequest, "Request entity too large.")
			return false
		}
		writeError(w, http.StatusBadRequest, CodeInvalidRequest, "The request was invalid. "+err.Error())
		return false
	}
	return true
}

var requestPool = sync.Pool{New: func() any { return new(wireRequest) }}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// serveEvents answers an events request; reject, when not empty, fails
// every valid event with that message (Fault.RejectEvents).
func (s *Simulator) serveEvents(w http.ResponseWriter, r *http.Request, a *account, _ string, f Fault) {
	reject := f.RejectEvents
	test := false
	if q := r.URL.RawQuery; q != "" {
		if v := r.URL.Query()["test"]; len(v) > 0 {
			b, err := strconv.ParseBool(v[0])
			if err != nil {
				a.badRequest.Add(1)
				writeError(w, http.StatusBadRequest, CodeInvalidParameter, "Parameter 'test' is not a boolean.")
				return
			}
			test = b
		}
	}

	req := requestPool.Get().(*wireRequest)
	defer func() {
		clear(req.Data[:cap(req.Data)])
		req.Data = req.Data[:0]
		clear(req.msgs[:cap(req.msgs)])
		req.msgs = req.msgs[:0]
		requestPool.Put(req)
	}()
	if !decodeBody(w, r, a, req) {
		return
	}
	n := len(req.Data)
	if n == 0 {
		a.badRequest.Add(1)
		writeError(w, http.StatusBadRequest, CodeInvalidRequest, "The request was invalid. data must contain at least one event.")
		return
	}
	if n > pinterest.MaxEventsPerRequest {
		a.badRequest.Add(1)
		writeError(w, http.StatusBadRequest, CodeInvalidRequest,
			"The request was invalid. data must contain at most "+strconv.Itoa(pinterest.MaxEventsPerRequest)+" events.")
		return
	}

	now := s.now().Unix()
	msgs := req.msgs[:0]
	processed := 0
	for i := range req.Data {
		msg := s.check(&req.Data[i], now)
		if msg == "" {
			msg = reject
		}
		if msg == "" {
			processed++
		}
		msgs = append(msgs, msg)
	}
	req.msgs = msgs

	at := s.now()
	record, recordIDs := s.record.Load(), s.recordIDs.Load() && !test
	if record || recordIDs || !test && processed > 0 {
		a.mu.Lock()
		for i := range req.Data {
			we, msg := &req.Data[i], msgs[i]
			if !test && msg == "" {
				s.tallyVisitor(a, we)
				a.tallyQuality(we, at)
			}
			if recordIDs {
				t := a.eventIDs[we.EventID]
				if t.n == 0 {
					t.first = a.arrivals
				}
				t.n++
				a.eventIDs[we.EventID] = t
				a.arrivals++
			}
			if !record {
				continue
			}
			ev := we.Event
			ev.UserData = we.UserData.UserData
			if we.CustomData != nil {
				ev.CustomData = &we.CustomData.CustomData
			}
			st := pinterest.StatusProcessed
			if msg != "" {
				st = pinterest.StatusFailed
			}
			a.received = append(a.received, Received{
				AdAccountID: a.id, Event: ev, Status: st, ErrorMessage: msg, Test: test, At: at,
			})
		}
		a.mu.Unlock()
	}
	if hook := s.arrivalHook.Load(); hook != nil && !test {
		for i := range req.Data {
			(*hook)(a.id, req.Data[i].EventID, at)
		}
	}

	bp := bufPool.Get().(*[]byte)
	out := append((*bp)[:0], `{"num_events_received":`...)
	out = strconv.AppendInt(out, int64(n), 10)
	out = append(out, `,"num_events_processed":`...)
	out = strconv.AppendInt(out, int64(processed), 10)
	out = append(out, `,"events":[`...)
	for i, msg := range msgs {
		if i > 0 {
			out = append(out, ',')
		}
		if msg == "" {
			out = append(out, `{"status":"processed"}`...)
		} else {
			out = append(out, `{"status":"failed","error_message":`...)
			out = appendJSONString(out, msg)
			out = append(out, '}')
		}
	}
	out = append(out, "]}"...)

	a.accepted.Add(1)
	a.events.Add(int64(n))
	if test {
		a.testEvents.Add(int64(n))
	} else {
		a.processed.Add(int64(processed))
		a.failed.Add(int64(n - processed))
	}

	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Content-Length"] = []string{strconv.Itoa(len(out))}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
	*bp = out
	bufPool.Put(bp)
}

// check validates one event; "" means processed. Whether its user is known
// does not matter here (see the package comment).
func (s *Simulator) check(we *wireEvent, now int64) string {
	switch {
	case we.EventName == "":
		return ErrEventNameMissing
	case !eventNames[we.EventName]:
		return ErrEventNameInvalid
	}
	switch we.ActionSource {
	case "app_android", "app_ios", "web", "offline":
	case "":
		return ErrActionSourceMissing
	default:
		return ErrActionSourceInvalid
	}
	if we.EventTime <= 0 {
		return ErrEventTimeInvalid
	}
	if we.EventTime > now+3600 {
		return ErrEventTimeFuture
	}
	if we.EventID == "" {
		return ErrEventIDMissing
	}
	u := &we.UserData.UserData
	pair := u.ClientIPAddress != "" && u.ClientUserAgent != ""
	if len(u.Em) == 0 && len(u.HashedMaids) == 0 && !pair {
		return ErrUserDataMissing
	}
	if !allSHA256Hex(u.Em) {
		return ErrEmNotHex
	}
	if !allSHA256Hex(u.HashedMaids) {
		return ErrHashedMaidsNotHex
	}
	if !allSHA256Hex(u.ExternalID) {
		return ErrExternalIDNotHex
	}
	return ""
}

func allSHA256Hex(vs []string) bool {
	for _, v := range vs {
		if len(v) != 64 {
			return false
		}
		for i := 0; i < 64; i++ {
			c := v[i]
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return false
			}
		}
	}
	return true
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeError(w, http.StatusMethodNotAllowed, CodeMethodNotAllowed, "Method not allowed")
}

func setRetryAfter(w http.ResponseWriter, d time.Duration) {
	secs := int64((d + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
}

func faultCode(status int) int {
	switch status {
	case http.StatusBadRequest:
		return CodeInvalidRequest
	case http.StatusUnauthorized:
		return CodeAuthFailed
	case http.StatusForbidden:
		return CodeForbidden
	case http.StatusTooManyRequests:
		return CodeRateLimited
	case http.StatusServiceUnavailable:
		return CodeRampedDown
	}
	return status
}

func faultMessage(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "The request was invalid."
	case http.StatusUnauthorized:
		return "Authentication failed."
	case http.StatusForbidden:
		return "You are not permitted to access that resource."
	case http.StatusTooManyRequests:
		return rateLimitMessage
	case http.StatusServiceUnavailable:
		return "The endpoint has been ramped down and is currently not accepting any traffic."
	}
	if t := http.StatusText(status); t != "" {
		return t + "."
	}
	return "Injected fault."
}

func writeError(w http.ResponseWriter, status, code int, msg string) {
	writeJSON(w, status, pinterest.ErrorResponse{Code: code, Message: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"code":500,"message":"Internal error."}`)
	}
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// appendJSONString appends s as a JSON string.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c == '\n':
			dst = append(dst, '\\', 'n')
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}
