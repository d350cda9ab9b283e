package main

import (
	"sync"
	"time"

	"github.com/cohort-connector/cohort-connector/destinations/pinterest/simulator"
)

// callSample is the simulator's request count of each ad account at a time.
type callSample struct {
	at       time.Time
	requests []int64 // per ad account, in the sampler's order
}

// callSampler reads the simulator's request counter of each ad account once
// a second, from its start until stop.
type callSampler struct {
	stopc   chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
	samples []callSample // written by the sampling goroutine until stop
}

// startCallSampler takes a first sample at once, then one a second.
func startCallSampler(sim *simulator.Simulator, adAccountIDs []string) *callSampler {
	c := &callSampler{stopc: make(chan struct{})}
	take := func() {
		s := callSample{at: time.Now(), requests: make([]int64, len(adAccountIDs))}
		for i, id := range adAccountIDs {
			s.requests[i] = sim.Stats(id).Requests
		}
		c.samples = append(c.samples, s)
	}
	take()
	c.wg.Go(func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				take()
			case <-c.stopc:
				take()
				return
			}
		}
	})
	return c
}

// stop ends the sampling with a last sample and returns the samples; it
// may be called again (an aborted run), and returns the same samples.
func (c *callSampler) stop() []callSample {
	c.once.Do(func() { close(c.stopc) })
	c.wg.Wait()
	return c.samples
}

// callFigures are the most calls one ad account received in any 60-second
// window of the samples.
type callFigures struct {
	calls   int64         // the busiest account's count
	account int           // the busiest account (index in the samples)
	window  time.Duration // the span the count covers: a minute, or run when shorter
	run     time.Duration // from the first sample to the last
}

// shortRun reports whether the samples span less than a minute: then the
// count is all of the account's calls during the run, an upper bound for
// any 60-second window that overlaps it.
func (f *callFigures) shortRun() bool { return f.run < time.Minute }

// callsInAnyMinute is, for the account with the most, the highest number of
// calls between two samples at most 60 s apart: at the samples' 1-s
// resolution, the most calls in any 60-second window of the run. When the
// samples span less than a minute, that is the calls between the first and
// the last sample.
func callsInAnyMinute(samples []callSample) *callFigures {
	f := &callFigures{}
	if len(samples) == 0 {
		return f
	}
	last := len(samples) - 1
	f.run = samples[last].at.Sub(samples[0].at)
	f.window = min(f.run, time.Minute)
	for acct := range samples[0].requests {
		j := 0
		for i := range samples {
			// j: the last sample at most a minute after sample i.
			j = max(j, i)
			for j < last && samples[j+1].at.Sub(samples[i].at) <= time.Minute {
				j++
			}
			if n := samples[j].requests[acct] - samples[i].requests[acct]; n > f.calls {
				f.calls, f.account = n, acct
			}
		}
	}
	return f
}
