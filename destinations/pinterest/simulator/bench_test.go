package simulator_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/cohort-connector/cohort-connector/destinations/pinterest"
	"github.com/cohort-connector/cohort-connector/destinations/pinterest/simulator"
)

func benchSim(b *testing.B) (*simulator.Simulator, []byte) {
	s := newSim(simulator.Options{RateLimitPerMinute: -1})
	s.SetRecord(false)
	return s, body(b, events(pinterest.MaxEventsPerRequest))
}

func serveOnce(b *testing.B, s *simulator.Simulator, payload []byte) {
	req := httptest.NewRequest(http.MethodPost, "/v5/ad_accounts/"+acct+"/events", bytes.NewReader(payload))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		b.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
}

// BenchmarkServeHTTP measures one 1000-event batch through ServeHTTP.
func BenchmarkServeHTTP(b *testing.B) {
	s, payload := benchSim(b)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		serveOnce(b, s, payload)
	}
	b.ReportMetric(float64(b.N)*pinterest.MaxEventsPerRequest/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkServeHTTPParallel is the same with GOMAXPROCS concurrent callers
// on one ad account.
func BenchmarkServeHTTPParallel(b *testing.B) {
	s, payload := benchSim(b)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			serveOnce(b, s, payload)
		}
	})
	b.ReportMetric(float64(b.N)*pinterest.MaxEventsPerRequest/b.Elapsed().Seconds(), "events/s")
}
