package connector_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/connector"
	"github.com/cohort-connector/cohort-connector/destinations/pinterest"
	"github.com/cohort-connector/cohort-connector/destinations/pinterest/simulator"
)

// Figures, not assertions: run with
//
//	go test -run XXX -bench . -benchtime 1x ./connector/
//
// BenchmarkDrain measures how fast a backlog drains end to end: JetStream →
// decode → route → hash → batch → HTTP to the simulator → ack.
// BenchmarkIsolation measures account B while account A is healthy,
// answering 503, or hanging past the HTTP timeout.

func benchMembership(cohort string, i int, ts time.Time) []byte {
	m := cohorts.Membership{UserID: "bench-" + strconv.Itoa(i), CohortID: cohort, Action: cohorts.ActionEnter, TS: ts,
		Identifiers: cohorts.Identifiers{Email: fmt.Sprintf("Bench.User%d@Example.com", i)}}
	if i%2 == 1 {
		m.Action = cohorts.ActionExit
	}
	data, _ := json.Marshal(m)
	return data
}

// drainFromBacklog stops the run, publishes n memberships of cohort, and
// starts a fresh run on the backlog; it returns when that run started.
func (h *harness) drainFromBacklog(b *testing.B, cohort string, n int) time.Time {
	h.stopRun(waitFor)
	ts := time.Now().Add(-time.Minute)
	for i := range n {
		_, err := h.js.PublishAsync(subjectPrefix+cohort, benchMembership(cohort, i, ts.Add(time.Duration(i))))
		require.NoError(b, err)
	}
	<-h.js.PublishAsyncComplete()
	start := time.Now()
	h.startRun()
	return start
}

func BenchmarkDrain(b *testing.B) {
	const n = 100_000
	for range b.N {
		h := newHarness(b, harnessConfig{
			quiet:         true,
			maxDeliver:    50,
			maxAckPending: 20_000,
			options: func(o *connector.Options) {
				o.BatchPeriod = 100 * time.Millisecond // the default
				o.BatchSize = 1000
			},
			activations: []cohorts.Activation{activation("drain-a", "c-drain", "")},
		})
		h.sim.SetRecord(false) // keep only event id counts
		start := h.drainFromBacklog(b, "c-drain", n)
		// Poll cheap counters; copying the event id map would cost more
		// CPU than the pipeline under test.
		require.Eventually(b, func() bool { return h.sim.Stats(acctA).Events >= n && h.consumerPending() == 0 }, 5*time.Minute, 20*time.Millisecond)
		took := time.Since(start)
		require.Len(b, h.sim.EventIDs(acctA), n, "every message delivered")
		st := h.sim.Stats(acctA)
		b.ReportMetric(float64(n)/took.Seconds(), "msgs/s")
		b.ReportMetric(float64(st.Requests), "calls")
		b.Logf("%d messages drained in %s: %.0f msgs/s, %d calls to Pinterest, %d events", n, took.Round(time.Millisecond),
			float64(n)/took.Seconds(), st.Requests, st.Events)
	}
}

// tsOf reads the publish time back from an event_id (it ends with
// ":<ts as Unix nanoseconds>").
func tsOf(eventID string) time.Time {
	i := strings.LastIndexByte(eventID, ':')
	ns, _ := strconv.ParseInt(eventID[i+1:], 10, 64)
	return time.Unix(0, ns)
}

func BenchmarkIsolation(b *testing.B) {
	const (
		rate     = 2000 // messages a second, half for A, half for B
		duration = 10 * time.Second
	)
	scenarios := []struct {
		name          string
		fault         simulator.Fault
		maxAckPending int
		parking       bool
	}{
		// The daemon's defaults: MaxAckPending 20,000, parking on.
		{"A healthy", simulator.Fault{}, 20_000, true},
		{"A answers 503", simulator.Fault{Status: 503}, 20_000, true},
		{"A hangs past the HTTP timeout", simulator.Fault{Latency: time.Minute}, 20_000, true},
		// The ceiling without parking: A's held messages stay
		// unacknowledged in the main consumer; once they fill
		// MaxAckPending (here after ~5 s), B stalls too.
		{"A answers 503, MaxAckPending 5000", simulator.Fault{Status: 503}, 5_000, false},
		// With parking, A's messages wait on A's own parking consumer.
		{"A answers 503, MaxAckPending 5000, parking", simulator.Fault{Status: 503}, 5_000, true},
		{"A hangs, MaxAckPending 5000, parking", simulator.Fault{Latency: time.Minute}, 5_000, true},
	}
	for _, sc := range scenarios {
		b.Run(sc.name, func(b *testing.B) {
			for range b.N {
				h := newHarness(b, harnessConfig{
					quiet:         true,
					maxDeliver:    50,
					maxAckPending: sc.maxAckPending,
					parking:       sc.parking,
					options: func(o *connector.Options) {
						o.BatchPeriod = 100 * time.Millisecond
						o.RetryDelayMin = time.Second
						o.RetryDelayMax = 15 * time.Second
						o.AuthRetryDelay = 15 * time.Second
					},
					client: func(c *pinterest.Config) {
						c.AttemptTimeout = time.Second
						c.CallTimeout = 3 * time.Second
					},
					activations: []cohorts.Activation{activation("iso-a", "c-iso-a", ""), activation("iso-b", "c-iso-b", tagB)},
				})
				if sc.fault != (simulator.Fault{}) {
					h.sim.SetFault(acctA, sc.fault)
				}
				start := time.Now()
				tick := time.NewTicker(10 * time.Millisecond)
				sent := 0
				for time.Since(start) < duration {
					<-tick.C
					due := int(time.Since(start).Seconds()*rate) - sent
					for range due {
						cohort := "c-iso-a"
						if sent%2 == 1 {
							cohort = "c-iso-b"
						}
						_, err := h.js.PublishAsync(subjectPrefix+cohort, benchMembership(cohort, sent, time.Now()))
						require.NoError(b, err)
						sent++
					}
				}
				tick.Stop()
				<-h.js.PublishAsyncComplete()
				wantB := sent / 2
				// B's backlog may be stuck behind A's held messages (the
				// ceiling case): measure what arrived within a minute.
				deadline := time.Now().Add(time.Minute)
				for h.sim.Stats(acctB).Events < int64(wantB) && time.Now().Before(deadline) {
					<-time.After(20 * time.Millisecond)
				}

				var lat []time.Duration
				var last time.Time
				for _, r := range h.sim.Received(acctB) {
					lat = append(lat, r.At.Sub(tsOf(r.Event.EventID)))
					if r.At.After(last) {
						last = r.At
					}
				}
				slices.Sort(lat)
				p := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) / 1000 }
				thr := float64(len(lat)) / last.Sub(start).Seconds()
				b.ReportMetric(thr, "B_msgs/s")
				b.ReportMetric(p(0.5), "B_p50_ms")
				b.ReportMetric(p(0.99), "B_p99_ms")
				b.Logf("%s: B received %d of %d events at %.0f msgs/s, latency p50 %.1f ms p99 %.1f ms; A received %d, held %d deliveries, consumer in flight %d",
					sc.name, len(lat), wantB, thr, p(0.5), p(0.99), len(h.sim.EventIDs(acctA)), h.stats.Snapshot()["iso-a"].Held, h.consumerInfo().NumAckPending)
				h.sim.ClearFaults()
			}
		})
	}
}

// BenchmarkBurstUnderTheRateLimit sends a 100,000-message burst to one ad
// account in batches of 10, so that Pinterest's 5,000 calls a minute (the
// simulator enforces it, with 429s) is the binding limit: 10,000 calls,
// about two minutes. It reports the most calls seen in any 60-second window
// and the 429s received.
func BenchmarkBurstUnderTheRateLimit(b *testing.B) {
	const n = 100_000
	for range b.N {
		h := newHarness(b, harnessConfig{
			quiet:         true,
			maxDeliver:    50,
			maxAckPending: 20_000,
			simRateLimit:  pinterest.DefaultCallsPerMinute,
			options: func(o *connector.Options) {
				o.BatchSize = 10
				o.MaxInFlight = 4
			},
			client: func(c *pinterest.Config) {
				c.CallsPerMinute = pinterest.DefaultCallsPerMinute
				c.CallTimeout = 4 * time.Second
			},
			activations: []cohorts.Activation{activation("burst-a", "c-burst", "")},
		})
		start := h.drainFromBacklog(b, "c-burst", n)
		require.Eventually(b, func() bool { return h.sim.Stats(acctA).Events >= n && h.consumerPending() == 0 }, 10*time.Minute, 100*time.Millisecond)
		took := time.Since(start)

		// One arrival time per request: every event of a request has it.
		var calls []time.Time
		for _, r := range h.sim.Received(acctA) {
			if len(calls) == 0 || !r.At.Equal(calls[len(calls)-1]) {
				calls = append(calls, r.At)
			}
		}
		slices.SortFunc(calls, func(x, y time.Time) int { return x.Compare(y) })
		most := 0
		for i, j := 0, 0; j < len(calls); j++ {
			for calls[j].Sub(calls[i]) >= time.Minute {
				i++
			}
			most = max(most, j-i+1)
		}
		st := h.sim.Stats(acctA)
		b.ReportMetric(float64(most), "max_calls/60s")
		b.ReportMetric(float64(st.RateLimited), "429s")
		b.Logf("%d messages, %d calls accepted in %s; at most %d calls in any 60 s window (limit %d); %d answered 429; %d distinct events",
			n, st.Accepted200, took.Round(time.Second), most, pinterest.DefaultCallsPerMinute, st.RateLimited, len(h.sim.EventIDs(acctA)))
	}
}
