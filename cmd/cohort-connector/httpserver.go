package main

import (
	"net/http"
	"time"
)

// httpTimeouts bound how long a client may hold a connection of the
// metrics listener. Without them a client that opens connections and
// leaves them idle keeps them (and their goroutines and buffers) for as
// long as it likes.
type httpTimeouts struct {
	ReadHeader time.Duration // from accepting a connection, or from the first bytes of its next request, to the end of the request headers
	Read       time.Duration // the whole request; the endpoints take GETs without a body
	Write      time.Duration // from the end of the request headers to the end of the response
	Idle       time.Duration // a keep-alive connection waiting for its next request
}

// metricsTimeouts are the timeouts of the daemon's metrics listener
// (/metrics, /healthz, /readyz):
//   - ReadHeader 5s and Read 10s: scrapers and probes send a short GET at
//     once, so a client that trickles or sends nothing is dropped;
//   - Write 30s: a /metrics answer with many series to a slow scraper;
//   - Idle 60s: a scraper (Prometheus scrapes every 15s to 1m) or a probe
//     keeps reusing its connection, while connections left idle are closed.
var metricsTimeouts = httpTimeouts{
	ReadHeader: 5 * time.Second,
	Read:       10 * time.Second,
	Write:      30 * time.Second,
	Idle:       60 * time.Second,
}

// newHTTPServer is the metrics listener's server: h with timeouts t.
func newHTTPServer(h http.Handler, t httpTimeouts) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: t.ReadHeader,
		ReadTimeout:       t.Read,
		WriteTimeout:      t.Write,
		IdleTimeout:       t.Idle,
	}
}
