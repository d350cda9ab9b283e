package main

import (
	"sync"
	"time"

	"github.com/cohort-connector/cohort-connector/destinations/pinterest/simulator"
)

// callSample is the simulator's request count for the ad account at a time.
type callSample struct {
	at       time.Time
	requests int64
}

// callSampler reads the simulator's request counter once a second.
type callSampler struct {
	stopc   chan struct{}
	wg      sync.WaitGroup
	samples []callSample // written by the sampling goroutine until stop
}

func startCallSampler(sim *simulator.Simulator) *callSampler {
	c := &callSampler{stopc: make(chan struct{})}
	take := func() { c.samples = append(c.samples, callSample{time.Now(), sim.Stats(adAccountID).Requests}) }
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

// stop ends the sampling and returns the samples.
func (c *callSampler) stop() []callSample {
	close(c.stopc)
	c.wg.Wait()
	return c.samples
}

// callFigures is the highest call rate per minute seen, and how it was
// obtained.
type callFigures struct {
	perMinute float64
	scaled    bool // the phase was shorter than a minute: a 1-s rate × 60
}

// callsPerMinute is the highest count of calls in any 60-second window of
// the samples (1-s steps), or, when they span less than a minute, the
// highest rate between two consecutive samples (at least half a second
// apart) scaled to a minute.
func callsPerMinute(samples []callSample) *callFigures {
	if len(samples) < 2 {
		return &callFigures{scaled: true}
	}
	if samples[len(samples)-1].at.Sub(samples[0].at) < time.Minute {
		f := &callFigures{scaled: true}
		for i := 1; i < len(samples); i++ {
			// The last interval (ended by stop) may be a fraction of a
			// second: too short to give a rate.
			dt := samples[i].at.Sub(samples[i-1].at).Seconds()
			if dt >= 0.5 {
				f.perMinute = max(f.perMinute, float64(samples[i].requests-samples[i-1].requests)/dt*60)
			}
		}
		return f
	}
	f := &callFigures{}
	j := 0
	for i := range samples {
		// j: the last sample at most a minute after sample i.
		for j+1 < len(samples) && samples[j+1].at.Sub(samples[i].at) <= time.Minute {
			j++
		}
		f.perMinute = max(f.perMinute, float64(samples[j].requests-samples[i].requests))
	}
	return f
}
