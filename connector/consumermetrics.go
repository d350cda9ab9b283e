package connector

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// The consumers' state, read from JetStream when /metrics is scraped: the
// backlog (pending: in the stream, not delivered yet), what is in flight
// (ack pending: delivered, not settled) and what came back (redelivered),
// for the main consumer and each ad account's parking consumer.
var (
	descConsumerPending = prometheus.NewDesc("cohort_connector_consumer_pending_messages",
		"Messages of the consumer's stream not delivered yet (JetStream NumPending), read at scrape time.",
		[]string{"stream", "consumer"}, nil)
	descConsumerAckPending = prometheus.NewDesc("cohort_connector_consumer_ack_pending_messages",
		"Messages delivered and not settled yet (JetStream NumAckPending), read at scrape time.",
		[]string{"stream", "consumer"}, nil)
	descConsumerRedelivered = prometheus.NewDesc("cohort_connector_consumer_redelivered_messages",
		"Messages delivered more than once and not settled yet (JetStream NumRedelivered), read at scrape time.",
		[]string{"stream", "consumer"}, nil)
)

// consumerInfoTimeout bounds each consumer's lookup during a scrape.
const consumerInfoTimeout = 2 * time.Second

// consumerCollector reads the consumers' info at scrape time. A consumer
// that cannot be read (deleted, NATS down) has no series in that scrape:
// /readyz says why.
type consumerCollector struct {
	js        jetstream.JetStream
	consumers [][2]string // stream, durable
}

// RegisterConsumerMetrics registers the consumer metrics on reg for the
// main consumer of t and, with parking, each ad account's parking consumer.
func RegisterConsumerMetrics(reg prometheus.Registerer, js jetstream.JetStream, t Topology, accounts []string) {
	c := consumerCollector{js: js, consumers: [][2]string{{t.Stream, t.Durable}}}
	if t.ParkingStream != "" {
		for _, a := range accounts {
			c.consumers = append(c.consumers, [2]string{t.ParkingStream, t.ParkingConsumerConfig(a).Durable})
		}
	}
	reg.MustRegister(c)
}

func (c consumerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descConsumerPending
	ch <- descConsumerAckPending
	ch <- descConsumerRedelivered
}

func (c consumerCollector) Collect(ch chan<- prometheus.Metric) {
	for _, sc := range c.consumers {
		ctx, cancel := context.WithTimeout(context.Background(), consumerInfoTimeout)
		cons, err := c.js.Consumer(ctx, sc[0], sc[1])
		cancel()
		if err != nil {
			continue
		}
		ci := cons.CachedInfo() // just fetched by Consumer
		ch <- prometheus.MustNewConstMetric(descConsumerPending, prometheus.GaugeValue, float64(ci.NumPending), sc[0], sc[1])
		ch <- prometheus.MustNewConstMetric(descConsumerAckPending, prometheus.GaugeValue, float64(ci.NumAckPending), sc[0], sc[1])
		ch <- prometheus.MustNewConstMetric(descConsumerRedelivered, prometheus.GaugeValue, float64(ci.NumRedelivered), sc[0], sc[1])
	}
}
