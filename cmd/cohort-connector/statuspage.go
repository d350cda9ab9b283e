package main

import (
	_ "embed"
	"fmt"
	"html/template"
	"net/http"
	"time"
)

//go:embed statuspage.html
var statusPageHTML string

// statusPage renders the report for people: plain HTML and CSS (no
// JavaScript), readable on a phone, refreshed every 10 seconds unless the
// visitor is signed in (a refresh would lose what they type).
var statusPage = template.Must(template.New("status").Funcs(template.FuncMap{
	"pct": func(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) },
	"ratePtr": func(f *float64) string {
		if f == nil {
			return "–"
		}
		return fmt.Sprintf("%.1f%%", 100**f)
	},
	"intPtr": func(n *int64) string {
		if n == nil {
			return "–"
		}
		return fmt.Sprint(*n)
	},
	"usersPtr": func(n *uint64) string {
		if n == nil {
			return "–"
		}
		return fmt.Sprint(*n)
	},
	"known": known,
	"when": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
}).Parse(statusPageHTML))

// pageData is what the page shows: the report, and what the visitor may
// do with it.
type pageData struct {
	statusReport
	CanChange  bool   // CONNECTOR_ADMIN_TOKEN is set
	SignedIn   bool   // with a valid session
	CSRF       string // the session's CSRF token, for the change forms
	Notice     string // what the last change did
	Refusal    string // why the request was refused
	DefaultTag string
}

// servePage answers / with the status page.
func (d *daemon) servePage(w http.ResponseWriter, r *http.Request) {
	d.renderPage(w, r, http.StatusOK, r.URL.Query().Get("notice"), "")
}

// renderPage writes the page with code, a notice or a refusal.
func (d *daemon) renderPage(w http.ResponseWriter, r *http.Request, code int, notice, refusal string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	// Forms post to this origin only; no script, no frame, no other source.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Referrer-Policy", "same-origin")
	data := pageData{statusReport: d.status(r.Context()), CanChange: d.admin.enabled(), Notice: notice, Refusal: refusal,
		DefaultTag: d.cfg.DefaultTagID}
	if s := d.admin.session(r); s != "" {
		data.SignedIn, data.CSRF = true, d.admin.csrf(s)
	}
	w.WriteHeader(code)
	if err := statusPage.Execute(w, data); err != nil {
		d.log.Warn().Err(err).Msg("status page not rendered")
	}
}

// maxFormBytes bounds a form posted to the page.
const maxFormBytes = 64 << 10

// limitForm bounds the body of the page's form posts.
func limitForm(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		h(w, r)
	}
}
