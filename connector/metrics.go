package connector

import (
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/destinations"
)

// Settlement reasons: the reason label of cohort_connector_messages_settled_total
// and of dead letters. Decode reasons (cohorts.DecodeReasons) and
// destination reasons (destinations.Reasons) are used as they are.
const (
	reasonOK            = "ok"
	reasonNotActivated  = "not_activated"
	reasonNoIdentifiers = "no_identifiers"
	reasonRejected      = "rejected_by_pinterest" // per-event failed, or 400/422 for the event alone
	reasonUnknownTag    = "unknown_tag"
	// reasonAudiencePending: a customer_list activation whose list is not
	// created yet; redelivered.
	reasonAudiencePending = "audience_pending"
	// reasonNoListIdentifiers: a customer_list target of a user with no
	// email or mobile ad id (what a customer list takes); not sent.
	reasonNoListIdentifiers = "no_list_identifiers"
	reasonMaxDeliveries     = "max_deliveries"
	reasonDLQFailed         = "dlq_publish_failed"
	// An earlier change of the same user and cohort is not settled yet.
	reasonWaitingForEarlier = "waiting_for_earlier"
	// A target was parked (see parking.go), the others accepted.
	reasonParked = "parked"
	// Parking a target failed: the whole delivery is redelivered.
	reasonParkingFailed = "parking_failed"
)

// settleReasons are the reasons of each settlement result: the label
// combinations of cohort_connector_messages_settled_total that can happen
// (a delivery is acked when done, nak'd to be retried, terminated once
// dead-lettered).
func settleReasons() map[string][]string {
	nak := []string{reasonUnknownTag, reasonAudiencePending, reasonWaitingForEarlier, reasonParkingFailed, reasonDLQFailed}
	for _, d := range destinations.Reasons {
		if !d.Permanent() {
			nak = append(nak, string(d))
		}
	}
	return map[string][]string{
		"ack":  {reasonOK, reasonNotActivated, reasonNoIdentifiers, reasonNoListIdentifiers, reasonParked},
		"nak":  nak,
		"term": DeadLetterReasons(),
	}
}

// DeadLetterReasons are the reasons a dead letter can carry (the last
// token of its subject, its Dlq-Reason header): a message that does not
// decode, one Pinterest rejected (the event alone, or the whole request as
// bad input), one at its last delivery still failing.
func DeadLetterReasons() []string {
	r := []string{reasonRejected, string(destinations.ReasonBadInput), reasonMaxDeliveries}
	for _, d := range cohorts.DecodeReasons {
		r = append(r, string(d))
	}
	return r
}

// Metrics are the connector's Prometheus metrics, registered on an injected
// registry with every fixed label pre-initialised so that dashboards and
// alerts see zeros rather than absent series.
type Metrics struct {
	received    prometheus.Counter
	redelivered prometheus.Counter     // deliveries after the first (main consumer)
	parked      *prometheus.CounterVec // ad_account_id
	latency     prometheus.Histogram   // ts → Pinterest accepted
	settled     *prometheus.CounterVec // result, reason
	deadLetters *prometheus.CounterVec // reason
	requests    *prometheus.CounterVec // ad_account_id, class, code
	retries     *prometheus.CounterVec // ad_account_id
	waits       *prometheus.CounterVec // ad_account_id
	waited      *prometheus.CounterVec // ad_account_id
	reqDuration *prometheus.HistogramVec
	batchSize   prometheus.Histogram
	accounts    *accountStates

	stats *Stats
}

// NewMetrics creates the metrics and registers them (and the per-activation
// collector over stats) on reg. accounts lists every configured ad account.
func NewMetrics(reg prometheus.Registerer, stats *Stats, accounts []string) *Metrics {
	m := &Metrics{
		received: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cohort_connector_messages_received_total",
			Help: "Membership messages delivered by JetStream, redeliveries included.",
		}),
		redelivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cohort_connector_messages_redelivered_total",
			Help: "Deliveries of the main consumer after a message's first (a nak, an AckWait expired, a restart).",
		}),
		parked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cohort_connector_messages_parked_total",
			Help: "Shares of messages copied to an ad account's parking stream (the account failing or congested), by ad account.",
		}, []string{"ad_account_id"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "cohort_connector_delivery_latency_seconds",
			Help:    "From a membership's ts to Pinterest accepting its event or list change, per ad account that accepted it.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600},
		}),
		settled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cohort_connector_messages_settled_total",
			Help: "Messages settled, by result (ack, nak, term) and reason.",
		}, []string{"result", "reason"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cohort_connector_dead_letters_total",
			Help: "Messages copied to the dead-letter stream, by reason.",
		}, []string{"reason"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cohort_connector_pinterest_requests_total",
			Help: "HTTP attempts to Pinterest by ad account, status class (2xx, 3xx, 4xx, 5xx; none: no answer) and status code (0: no answer).",
		}, []string{"ad_account_id", "class", "code"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cohort_connector_pinterest_retries_total",
			Help: "HTTP attempts to Pinterest after the first of their call (a 429, 5xx, 408, timeout or network error retried within the call), by ad account.",
		}, []string{"ad_account_id"}),
		waits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cohort_connector_pinterest_rate_limit_waits_total",
			Help: "Calls to Pinterest that waited at least 1 ms for the ad account's call budget or a 429's pause, by ad account.",
		}, []string{"ad_account_id"}),
		waited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cohort_connector_pinterest_rate_limit_wait_seconds_total",
			Help: "Time calls to Pinterest waited for the ad account's call budget or a 429's pause, by ad account.",
		}, []string{"ad_account_id"}),
		reqDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cohort_connector_pinterest_request_duration_seconds",
			Help:    "Duration of one HTTP attempt to Pinterest.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"ad_account_id"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "cohort_connector_batch_events",
			Help:    "Events per batch sent to Pinterest.",
			Buckets: []float64{1, 10, 50, 100, 250, 500, 750, 1000},
		}),
		accounts: newAccountStates(accounts),
		stats:    stats,
	}
	for res, reasons := range settleReasons() {
		for _, r := range reasons {
			m.settled.WithLabelValues(res, r)
		}
	}
	for _, r := range DeadLetterReasons() {
		m.deadLetters.WithLabelValues(r)
	}
	for _, a := range accounts {
		m.reqDuration.WithLabelValues(a)
		m.parked.WithLabelValues(a)
		m.retries.WithLabelValues(a)
		m.waits.WithLabelValues(a)
		m.waited.WithLabelValues(a)
	}
	reg.MustRegister(m.received, m.redelivered, m.parked, m.latency, m.settled, m.deadLetters, m.requests, m.retries,
		m.waits, m.waited, m.reqDuration, m.batchSize, m.accounts, activationCollector{stats})
	return m
}

// setAccountState records the state of an ad account's calls (a lane's
// report).
func (m *Metrics) setAccountState(adAccountID string, state AccountState) {
	m.accounts.set(adAccountID, state)
}

// DeadLetter counts a message dead-lettered outside the pipeline (the
// max-deliveries advisory watcher).
func (m *Metrics) DeadLetter(reason string) { m.deadLetters.WithLabelValues(reason).Inc() }

// ObserveAttempt records one HTTP attempt (pinterest.Config.OnAttempt).
func (m *Metrics) ObserveAttempt(adAccountID string, attempt, status int, d time.Duration) {
	m.requests.WithLabelValues(adAccountID, statusClass(status), strconv.Itoa(status)).Inc()
	m.reqDuration.WithLabelValues(adAccountID).Observe(d.Seconds())
	if attempt > 1 {
		m.retries.WithLabelValues(adAccountID).Inc()
	}
}

// ObserveRateLimitWait records a call's wait for its ad account's call
// budget (pinterest.Config.OnRateLimitWait).
func (m *Metrics) ObserveRateLimitWait(adAccountID string, d time.Duration) {
	m.waits.WithLabelValues(adAccountID).Inc()
	m.waited.WithLabelValues(adAccountID).Add(d.Seconds())
}

// statusClass is the class label of an HTTP status: "2xx" … "5xx", "none"
// for no answer (0).
func statusClass(status int) string {
	if status < 100 || status > 599 {
		return "none"
	}
	return strconv.Itoa(status/100) + "xx"
}

// ActivationCounts are one activation's delivery counters, counted from
// what the connector saw, never estimated. They hold no match rate: per
// event, Pinterest says only whether it accepted the event (processed) or
// refused it as invalid (failed), never whether its user matched; the match
// rate comes from the size Pinterest reports for an audience.
type ActivationCounts struct {
	// Received: first deliveries of memberships routed to the activation.
	Received int64
	// WithIdentifiers: of those, the ones carrying a matchable identifier set.
	WithIdentifiers int64
	// Sent: events Pinterest gave a verdict on (Processed + Failed).
	Sent int64
	// Processed / Failed: Pinterest's per-event verdict.
	Processed, Failed int64
	// Held: deliveries not sent as they arrived: parked or redelivered
	// later, because the activation's Tag ID has no account or its account
	// is failing or congested.
	Held int64
	// NotActivated: first deliveries of memberships of the activation's
	// cohort that came while it was disabled (not sent).
	NotActivated int64
	// NoListIdentifiers: in customer_list mode, first deliveries with
	// identifiers Pinterest matches, but no email or mobile ad id, which a
	// list takes (not sent).
	NoListIdentifiers int64
	// LastError is the latest event Pinterest refused or delivery held
	// back; nil when there was none.
	LastError *ActivationError
}

// ActivationError is what last went wrong for an activation: the
// settlement reason (rejected_by_pinterest, server_error, unknown_tag, …),
// what was said, and when.
type ActivationError struct {
	Reason string    `json:"reason"`
	Detail string    `json:"detail"`
	At     time.Time `json:"at"`
}

// Acceptance is Processed / Sent, 0 when nothing was sent: a health figure
// (Pinterest refused the rest as invalid), about 1 when all is well.
func (c ActivationCounts) Acceptance() float64 {
	if c.Sent == 0 {
		return 0
	}
	return float64(c.Processed) / float64(c.Sent)
}

// Coverage is WithIdentifiers / Received, 0 when nothing was received.
func (c ActivationCounts) Coverage() float64 {
	if c.Received == 0 {
		return 0
	}
	return float64(c.WithIdentifiers) / float64(c.Received)
}

type activationCounters struct {
	id                                         string // the activation's
	received, withIDs, processed, failed, held atomic.Int64
	notActivated, noListIDs                    atomic.Int64
	lastError                                  atomic.Pointer[ActivationError] // shared, never written through
}

// Stats holds per-activation counters. Counters of a deleted activation are
// kept (counters never go down).
type Stats struct {
	mu   sync.RWMutex
	byID map[string]*activationCounters
}

// NewStats returns empty Stats.
func NewStats() *Stats { return &Stats{byID: map[string]*activationCounters{}} }

func (s *Stats) counters(id string) *activationCounters {
	s.mu.RLock()
	c := s.byID[id]
	s.mu.RUnlock()
	if c != nil {
		return c
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c = s.byID[id]; c == nil {
		c = &activationCounters{id: id}
		s.byID[id] = c
	}
	return c
}

// Snapshot returns the counters of every activation seen so far.
func (s *Stats) Snapshot() map[string]ActivationCounts {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]ActivationCounts, len(s.byID))
	for id, c := range s.byID {
		p, f := c.processed.Load(), c.failed.Load()
		out[id] = ActivationCounts{Received: c.received.Load(), WithIdentifiers: c.withIDs.Load(),
			Sent: p + f, Processed: p, Failed: f, Held: c.held.Load(), LastError: c.lastError.Load(),
			NotActivated: c.notActivated.Load(), NoListIdentifiers: c.noListIDs.Load()}
	}
	return out
}

var (
	descActReceived   = prometheus.NewDesc("cohort_connector_activation_received_total", "Memberships routed to the activation (first deliveries).", []string{"activation_id"}, nil)
	descActWithIDs    = prometheus.NewDesc("cohort_connector_activation_with_identifiers_total", "Of those, memberships carrying a matchable identifier set.", []string{"activation_id"}, nil)
	descActVerdicts   = prometheus.NewDesc("cohort_connector_activation_events_total", "Events Pinterest answered for, by verdict: processed (accepted) or failed (refused as invalid).", []string{"activation_id", "verdict"}, nil)
	descActHeld       = prometheus.NewDesc("cohort_connector_activation_held_total", "Deliveries not sent as they arrived: parked or redelivered later (unknown Tag ID, failing or congested account).", []string{"activation_id"}, nil)
	descActAcceptance = prometheus.NewDesc("cohort_connector_activation_acceptance_ratio", "Acceptance: processed / sent since start (a health figure, not a match rate).", []string{"activation_id"}, nil)
	descActNotActive  = prometheus.NewDesc("cohort_connector_activation_not_activated_total", "Memberships of the activation's cohort that came while it was disabled (first deliveries; not sent).", []string{"activation_id"}, nil)
	descActRejected   = prometheus.NewDesc("cohort_connector_activation_rejected_total",
		"Memberships routed to the activation that will never reach it, by reason: rejected_by_pinterest (Pinterest refused the event as invalid: dead-lettered); no_identifiers (no email, mobile ad id or IP with user agent: nothing to match, not sent); no_list_identifiers (customer_list mode: no email or mobile ad id, not sent).",
		[]string{"activation_id", "reason"}, nil)
)

// activationCollector exposes Stats; activation ids are not known up front,
// so these series are produced at scrape time rather than pre-registered.
type activationCollector struct{ s *Stats }

func (c activationCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descActReceived, descActWithIDs, descActVerdicts, descActHeld, descActAcceptance, descActNotActive, descActRejected} {
		ch <- d
	}
}

func (c activationCollector) Collect(ch chan<- prometheus.Metric) {
	snap := c.s.Snapshot()
	ids := make([]string, 0, len(snap))
	for id := range snap {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		v := snap[id]
		ch <- prometheus.MustNewConstMetric(descActReceived, prometheus.CounterValue, float64(v.Received), id)
		ch <- prometheus.MustNewConstMetric(descActWithIDs, prometheus.CounterValue, float64(v.WithIdentifiers), id)
		ch <- prometheus.MustNewConstMetric(descActVerdicts, prometheus.CounterValue, float64(v.Processed), id, "processed")
		ch <- prometheus.MustNewConstMetric(descActVerdicts, prometheus.CounterValue, float64(v.Failed), id, "failed")
		ch <- prometheus.MustNewConstMetric(descActHeld, prometheus.CounterValue, float64(v.Held), id)
		ch <- prometheus.MustNewConstMetric(descActAcceptance, prometheus.GaugeValue, v.Acceptance(), id)
		ch <- prometheus.MustNewConstMetric(descActNotActive, prometheus.CounterValue, float64(v.NotActivated), id)
		ch <- prometheus.MustNewConstMetric(descActRejected, prometheus.CounterValue, float64(v.Failed), id, reasonRejected)
		ch <- prometheus.MustNewConstMetric(descActRejected, prometheus.CounterValue, float64(v.Received-v.WithIdentifiers), id, reasonNoIdentifiers)
		ch <- prometheus.MustNewConstMetric(descActRejected, prometheus.CounterValue, float64(v.NoListIdentifiers), id, reasonNoListIdentifiers)
	}
}
