package simulator_test

import (
	"bytes"
	"fmt"
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

// BenchmarkServeHTTPNewIDs is BenchmarkServeHTTP with a new event id for
// every event, as in a drain: the EventIDs tally grows by 1,000 ids a
// call, unless EventIDsRoom reserved room for them. Run it for as many
// calls as there are batches, or ids repeat:
//
//	go test -run XXX -bench NewIDs -benchtime 250x ./destinations/pinterest/simulator/
func BenchmarkServeHTTPNewIDs(b *testing.B) {
	const calls = 250
	payloads := make([][]byte, calls)
	for c := range payloads {
		evs := events(pinterest.MaxEventsPerRequest)
		for i := range evs {
			evs[i].EventID = fmt.Sprintf("%s-%d", evs[i].EventID, c)
		}
		payloads[c] = body(b, evs)
	}
	for _, room := range []int{0, calls * pinterest.MaxEventsPerRequest} {
		b.Run(fmt.Sprintf("room=%d", room), func(b *testing.B) {
			s := newSim(simulator.Options{RateLimitPerMinute: -1, EventIDsRoom: room})
			s.SetRecord(false)
			n := 0
			for b.Loop() {
				serveOnce(b, s, payloads[n%calls])
				n++
			}
			b.ReportMetric(float64(n)*pinterest.MaxEventsPerRequest/b.Elapsed().Seconds(), "events/s")
		})
	}
}
