package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/config"
)

// Changes from the status page. A publisher signs in with
// CONNECTOR_ADMIN_TOKEN (POST /login) and gets a session cookie; every
// change form carries a CSRF token bound to that session, and a change
// must come from the page's own origin. A change goes through the same
// function as the CLI's (changeActivation: the same checks, written to the
// activations bucket at the revision read), so every replica applies it.
// Without CONNECTOR_ADMIN_TOKEN the page is read-only and every POST is
// refused.
//
// Sessions and CSRF tokens are signed with a key derived from the admin
// token: every replica with the same token accepts them, and changing the
// token ends every session.

const (
	sessionCookie = "cohort_connector_session"
	sessionTTL    = 8 * time.Hour
)

// admin checks sign-ins, sessions and CSRF tokens.
type admin struct {
	token []byte // CONNECTOR_ADMIN_TOKEN; nil: the page is read-only
	key   []byte // signs sessions and CSRF tokens
	now   func() time.Time
}

func newAdmin(token config.Secret) *admin {
	a := &admin{now: time.Now}
	if token != "" {
		a.token = []byte(token.Reveal())
		k := sha256.Sum256(append([]byte("cohort-connector status page sessions\x00"), a.token...))
		a.key = k[:]
	}
	return a
}

// enabled reports whether the page may change activations at all.
func (a *admin) enabled() bool { return a.token != nil }

// signIn reports whether token is the admin token (in constant time).
func (a *admin) signIn(token string) bool {
	return a.enabled() && subtle.ConstantTimeCompare([]byte(token), a.token) == 1
}

func (a *admin) mac(parts ...string) string {
	m := hmac.New(sha256.New, a.key)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// newSession is a session value: its expiry and their signature.
func (a *admin) newSession() string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(a.now().Add(sessionTTL).Unix()))
	exp := base64.RawURLEncoding.EncodeToString(b[:])
	return exp + "." + a.mac("session", exp)
}

// session returns r's valid session value, "" when it has none.
func (a *admin) session(r *http.Request) string {
	if !a.enabled() {
		return ""
	}
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return ""
	}
	exp, sig, ok := strings.Cut(c.Value, ".")
	b, err := base64.RawURLEncoding.DecodeString(exp)
	if !ok || err != nil || len(b) != 8 || !hmac.Equal([]byte(sig), []byte(a.mac("session", exp))) {
		return ""
	}
	if a.now().Unix() > int64(binary.BigEndian.Uint64(b)) {
		return ""
	}
	return c.Value
}

// csrf is the CSRF token of a session.
func (a *admin) csrf(session string) string { return a.mac("csrf", session) }

// authorize checks a change request: a valid session, its CSRF token, and
// the page's own origin.
func (a *admin) authorize(r *http.Request) error {
	if !a.enabled() {
		return errors.New("the page is read-only: CONNECTOR_ADMIN_TOKEN is not set")
	}
	s := a.session(r)
	if s == "" {
		return errors.New("not signed in (or the session expired): sign in with the admin token")
	}
	if !sameOrigin(r) {
		return errors.New("the request does not come from this page (Origin or Referer of another site)")
	}
	if !hmac.Equal([]byte(r.PostFormValue("csrf")), []byte(a.csrf(s))) {
		return errors.New("the form's CSRF token is missing or wrong: reload the page")
	}
	return nil
}

// sameOrigin reports whether a POST comes from a page of this host: its
// Origin (or, without one, its Referer) names this host. A browser sends
// one of them with every form post.
func sameOrigin(r *http.Request) bool {
	from := r.Header.Get("Origin")
	if from == "" {
		from = r.Header.Get("Referer")
	}
	u, err := url.Parse(from)
	return err == nil && from != "" && u.Host == r.Host
}

// serveLogin checks the admin token and starts a session.
func (d *daemon) serveLogin(w http.ResponseWriter, r *http.Request) {
	if !d.admin.enabled() {
		d.refuse(w, r, http.StatusForbidden, "the page is read-only: CONNECTOR_ADMIN_TOKEN is not set")
		return
	}
	if !sameOrigin(r) {
		d.refuse(w, r, http.StatusForbidden, "the sign-in does not come from this page")
		return
	}
	if !d.admin.signIn(r.PostFormValue("token")) {
		d.refuse(w, r, http.StatusForbidden, "admin token refused: nothing was changed")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: d.admin.newSession(), Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil, MaxAge: int(sessionTTL.Seconds())})
	d.log.Info().Str("remote_addr", r.RemoteAddr).Msg("status page: signed in with the admin token")
	http.Redirect(w, r, "/?notice="+url.QueryEscape("signed in: you can change activations"), http.StatusSeeOther)
}

// serveLogout ends the session.
func (d *daemon) serveLogout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// serveChange applies one change to an activation: op enable, disable,
// tag (tag_id; blank: the default Tag ID) or mode (mode).
func (d *daemon) serveChange(w http.ResponseWriter, r *http.Request) {
	if err := d.admin.authorize(r); err != nil {
		d.refuse(w, r, http.StatusForbidden, err.Error())
		return
	}
	id := r.PathValue("id")
	var change func(*cohorts.Activation)
	var what string
	switch op := r.PostFormValue("op"); op {
	case "enable", "disable":
		change, what = func(a *cohorts.Activation) { a.Enabled = op == "enable" }, op+"d"
	case "tag":
		tag := strings.TrimSpace(r.PostFormValue("tag_id"))
		change, what = func(a *cohorts.Activation) { a.TagID = tag }, "Tag ID set to "+tag
		if tag == "" {
			what = "Tag ID cleared: the default Tag ID"
		}
	case "mode":
		mode := cohorts.Mode(r.PostFormValue("mode"))
		change, what = func(a *cohorts.Activation) { a.Mode = mode }, "mode set to "+string(mode)
	default:
		d.refuse(w, r, http.StatusBadRequest, fmt.Sprintf("unknown change %q", op))
		return
	}
	if _, err := changeActivation(r.Context(), d.objs.Activations, d.cfg, d.resolver, id, change); err != nil {
		d.refuse(w, r, http.StatusBadRequest, err.Error())
		return
	}
	d.log.Info().Str("activation_id", id).Str("change", what).Str("remote_addr", r.RemoteAddr).Msg("status page: activation changed")
	http.Redirect(w, r, "/?notice="+url.QueryEscape(id+": "+what)+"#activation-"+id, http.StatusSeeOther)
}

// refuse answers a refused request with the page and the reason.
func (d *daemon) refuse(w http.ResponseWriter, r *http.Request, code int, reason string) {
	d.log.Warn().Str("path", r.URL.Path).Str("remote_addr", r.RemoteAddr).Str("reason", reason).Msg("status page: request refused")
	d.renderPage(w, r, code, "", reason)
}
