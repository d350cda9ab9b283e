package connector

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// The default redelivery schedule must carry a message through a 6-hour
// Pinterest outage before MaxDeliver (50, deploy/nats/consumer.json) sends
// it to the dead-letter stream.
func TestTheDefaultRetryScheduleOutlastsASixHourOutage(t *testing.T) {
	o := Options{}
	o.setDefaults()
	c := &Connector{o: o}
	const maxDeliver = 50
	var total time.Duration
	var delays []time.Duration
	for n := uint64(1); n < maxDeliver; n++ { // the nak after delivery n
		d := c.backoff(n, 0)
		delays = append(delays, d)
		total += d
	}
	assert.Equal(t, 5*time.Second, delays[0])
	assert.Equal(t, 10*time.Second, delays[1])
	assert.Equal(t, 15*time.Minute, delays[len(delays)-1], "capped at RetryDelayMax")
	assert.Greater(t, total, 6*time.Hour)
	t.Logf("first delays %v … capped at %v; %d redeliveries span %v before dead-lettering", delays[:9], delays[len(delays)-1], len(delays), total)

	// A Retry-After longer than the schedule wins, up to RetryDelayMax:
	// one answer of "Retry-After: 86400" must not park a message for a day.
	assert.Equal(t, time.Minute, c.backoff(1, time.Minute))
	assert.Equal(t, 15*time.Minute, c.backoff(1, 24*time.Hour))
}
