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
// JavaScript), readable on a phone, refreshed every 10 seconds.
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
	"ago": func(t time.Time, now time.Time) string { return now.Sub(t).Round(time.Second).String() },
}).Parse(statusPageHTML))

// servePage answers / with the status page.
func (d *daemon) servePage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Frame-Options", "DENY")
	if err := statusPage.Execute(w, d.status(r.Context())); err != nil {
		d.log.Warn().Err(err).Msg("status page not rendered")
	}
}
