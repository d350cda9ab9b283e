package connector

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/destinations"
)

// CheckAudiences is the readiness check of the AudienceManager: a warning
// (never a failure: events still flow) while some activation's audience
// cannot be managed.
const CheckAudiences = "audiences"

// ActiveAudience is one enabled activation whose audience is kept.
type ActiveAudience struct {
	Activation  cohorts.Activation
	AdAccountID string
	TagID       string
	// Members is, in customer_list mode, the cohort's current members
	// (enters minus exits): the denominator of its match rate; 0 when
	// unknown. Events mode counts the users sent with Sketches instead.
	Members uint64
}

// Wake makes Run do a pass now (say, after an activation was written)
// rather than at the next PollInterval. It never blocks.
func (m *AudienceManager) Wake() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// Run does a Poll at once, then every PollInterval and on Wake, until ctx
// is cancelled; it then returns nil. active returns the enabled
// activations; start Run only once the activations are loaded, as a
// recorded activation missing from active is forgotten.
func (m *AudienceManager) Run(ctx context.Context, active func() []ActiveAudience) error {
	retry := audienceRetryMin
	for {
		m.Poll(ctx, active())
		wait := m.o.PollInterval
		if m.troubled() {
			// An audience that could not be ensured or read (Pinterest or
			// its token endpoint down at startup, say) is tried again
			// soon, not at the next poll: a customer list's changes wait
			// for it.
			wait = min(wait, retry)
			retry = min(2*retry, audienceRetryMax)
		} else {
			retry = audienceRetryMin
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		case <-m.wake:
			t.Stop()
		}
	}
}

// How soon a troubled pass is tried again: doubling from min to max.
const (
	audienceRetryMin = 5 * time.Second
	audienceRetryMax = 5 * time.Minute
)

// troubled reports whether the last pass left some audience unmanaged for
// a reason other than a missing OAuth app (which a retry cannot fix).
func (m *AudienceManager) troubled() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range m.problems {
		if !strings.Contains(p, ErrNoOAuth.Error()) {
			return true
		}
	}
	return false
}

// Poll does one pass: Ensure and read back every active activation's
// audience (status and size into its record and the metrics), Forget the
// records of activations no longer active, and read the Event Quality
// Score of every OAuth account. Errors are logged once per change and
// shown by Checks.
func (m *AudienceManager) Poll(ctx context.Context, active []ActiveAudience) {
	ids := map[string]bool{}
	for _, aa := range active {
		ids[aa.Activation.ID] = true
		rec, err := m.Ensure(ctx, aa.Activation, aa.AdAccountID, aa.TagID)
		if err == nil {
			err = m.pollOne(ctx, rec, aa)
		}
		if ctx.Err() != nil {
			return
		}
		m.setProblem(aa.Activation.ID, err)
	}
	m.forgetInactive(ctx, ids)
	m.pollEventQuality(ctx)
}

// pollOne reads the audience, stores its status and size in the record
// and sets the metrics.
func (m *AudienceManager) pollOne(ctx context.Context, rec Record, aa ActiveAudience) error {
	au, err := m.o.API.GetAudience(ctx, rec.AdAccountID, rec.AudienceID)
	if err != nil {
		return fmt.Errorf("reading audience %s of activation %s: %w", rec.AudienceID, rec.ActivationID, err)
	}
	rec.Status, rec.Size, rec.SizeKnown, rec.PolledAt = au.Status, au.Size, au.SizeKnown, m.o.Now().UTC()
	if err := m.storePoll(ctx, rec); err != nil {
		return err
	}
	m.noteStatus(rec)
	users, known := aa.Members, aa.Members > 0
	if aa.Activation.Mode != cohorts.ModeCustomerList && m.o.Sketches != nil {
		if users, err = m.o.Sketches.Distinct(ctx, rec.ActivationID, aa.Activation.Retention()); err != nil {
			return err
		}
		known = true
	}
	m.metrics.set(rec, users, known)
	return nil
}

// storePoll writes the polled fields into the stored record if it still
// names the same audience. A conflict (another replica's poll, or a new
// record) leaves it to the next poll.
func (m *AudienceManager) storePoll(ctx context.Context, rec Record) error {
	key := audienceKey(rec.ActivationID)
	e, err := m.o.KV.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("reading record of activation %s: %w", rec.ActivationID, err)
	}
	var cur Record
	if json.Unmarshal(e.Value(), &cur) != nil || cur.State != recordReady || cur.AudienceID != rec.AudienceID {
		return nil
	}
	cur.Status, cur.Size, cur.SizeKnown, cur.PolledAt = rec.Status, rec.Size, rec.SizeKnown, rec.PolledAt
	b, _ := json.Marshal(cur)
	if _, err := m.o.KV.Update(ctx, key, b, e.Revision()); err != nil && !isConflict(err) {
		return fmt.Errorf("writing record of activation %s: %w", rec.ActivationID, err)
	}
	return nil
}

// noteStatus logs a change of an audience's status: a warning when it
// becomes TOO_SMALL (it does not serve), info otherwise.
func (m *AudienceManager) noteStatus(rec Record) {
	m.mu.Lock()
	prev, seen := m.statuses[rec.ActivationID]
	m.statuses[rec.ActivationID] = rec.Status
	m.mu.Unlock()
	if seen && prev == rec.Status {
		return
	}
	ev := m.o.Logger.Info()
	msg := "audience status"
	if rec.Status == destinations.AudienceTooSmall {
		ev, msg = m.o.Logger.Warn(), "audience too small: it does not serve until Pinterest matches at least 100 users"
	}
	ev.Str("activation_id", rec.ActivationID).Str("ad_account_id", rec.AdAccountID).Str("audience_id", rec.AudienceID).
		Str("status", rec.Status).Str("previous_status", prev).Int64("size", rec.Size).Msg(msg)
}

// setProblem records (err != nil) or clears why an activation's audience
// is not managed, logging each change once.
func (m *AudienceManager) setProblem(activationID string, err error) {
	m.mu.Lock()
	prev, had := m.problems[activationID]
	if err == nil {
		delete(m.problems, activationID)
	} else {
		m.problems[activationID] = err.Error()
	}
	m.mu.Unlock()
	switch {
	case err != nil && prev != err.Error():
		m.o.Logger.Warn().Err(err).Str("activation_id", activationID).Msg("audience not managed")
	case err == nil && had:
		m.o.Logger.Info().Str("activation_id", activationID).Msg("audience managed again")
	}
}

// Problem is why the activation's audience is not managed, "" when it
// is (or nothing is known yet). Safe for concurrent use.
func (m *AudienceManager) Problem(activationID string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.problems[activationID]
}

// Checks reports the audiences check: a warning naming every activation
// whose audience is not managed, and why. Safe for concurrent use.
func (m *AudienceManager) Checks() []Check {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := Check{Name: CheckAudiences, State: CheckOK}
	if len(m.problems) > 0 {
		var parts []string
		for _, id := range slices.Sorted(maps.Keys(m.problems)) {
			parts = append(parts, id+": "+m.problems[id])
		}
		c.State, c.Detail = CheckWarn, strings.Join(parts, " | ")
	}
	return []Check{c}
}

// Forget drops the record of a disabled or deleted activation; its
// audience is left in Pinterest (never deleted: ads may use it) and
// adopted again by name if the activation comes back. A creation lock is
// left alone.
func (m *AudienceManager) Forget(ctx context.Context, activationID string) error {
	key := audienceKey(activationID)
	e, err := m.o.KV.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("forgetting audience of activation %s: %w", activationID, err)
	}
	var rec Record
	if json.Unmarshal(e.Value(), &rec) != nil || rec.State != recordReady {
		return nil // a creation lock, or already left
	}
	left := rec
	left.State = recordLeft
	b, _ := json.Marshal(left)
	if _, err := m.o.KV.Update(ctx, key, b, e.Revision()); err != nil && !isConflict(err) {
		return fmt.Errorf("forgetting audience of activation %s: %w", activationID, err)
	}
	m.metrics.forget(activationID)
	m.mu.Lock()
	delete(m.statuses, activationID)
	delete(m.problems, activationID)
	delete(m.lists, activationID)
	m.mu.Unlock()
	m.o.Logger.Info().Str("activation_id", activationID).Str("audience_id", rec.AudienceID).Str("ad_account_id", rec.AdAccountID).
		Msgf("audience %s of activation %s left in Pinterest: the activation is disabled or deleted", rec.AudienceID, activationID)
	return nil
}

func (m *AudienceManager) forgetInactive(ctx context.Context, active map[string]bool) {
	recs, err := m.Records(ctx)
	if err != nil {
		m.o.Logger.Warn().Err(err).Msg("listing audience records")
		return
	}
	for _, r := range recs {
		if !active[r.ActivationID] {
			if err := m.Forget(ctx, r.ActivationID); err != nil {
				m.o.Logger.Warn().Err(err).Str("activation_id", r.ActivationID).Msg("forgetting audience record")
			}
		}
	}
}

// Records returns every stored record (creation locks included), sorted
// by activation id: for the CLI and the demo.
func (m *AudienceManager) Records(ctx context.Context) ([]Record, error) {
	return ReadAudienceRecords(ctx, m.o.KV)
}

// ReadAudienceRecords reads every audience record of the state bucket kv,
// sorted by activation id.
func ReadAudienceRecords(ctx context.Context, kv jetstream.KeyValue) ([]Record, error) {
	lister, err := kv.ListKeysFiltered(ctx, audienceKeyPrefix+">")
	if err != nil {
		return nil, fmt.Errorf("listing audience records: %w", err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	var out []Record
	for _, k := range keys {
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading audience record %s: %w", k, err)
		}
		var r Record
		if err := json.Unmarshal(e.Value(), &r); err != nil {
			return nil, fmt.Errorf("decoding audience record %s: %w", k, err)
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Record) int { return cmp.Compare(a.ActivationID, b.ActivationID) })
	return out, nil
}

// pollEventQuality reads every OAuth account's Event Quality Score.
func (m *AudienceManager) pollEventQuality(ctx context.Context) {
	for _, acct := range slices.Sorted(maps.Keys(m.o.Accounts)) {
		if !m.o.Accounts[acct] {
			continue
		}
		eq, err := m.o.API.EventQuality(ctx, acct)
		if ctx.Err() != nil {
			return
		}
		m.mu.Lock()
		prev := m.eqs[acct]
		m.eqs[acct] = errText(err)
		m.mu.Unlock()
		if err != nil {
			if prev != err.Error() {
				m.o.Logger.Warn().Err(err).Str("ad_account_id", acct).Msg("reading event quality score")
			}
			continue
		}
		m.metrics.setEventQuality(acct, eq.OverallStatus)
	}
}

// Event Quality Score statuses (EventQuality.OverallStatus).
var eventQualityStatuses = []string{"NEEDS_IMPROVEMENT", "FAIR", "GOOD"}

var audienceStatuses = []string{destinations.AudienceReady, destinations.AudienceInitializing, destinations.AudienceTooSmall}

// audienceMetrics are labelled by activation id and ad account id only:
// bounded by configuration, never by users.
type audienceMetrics struct {
	size, users, ratio *prometheus.GaugeVec // activation_id
	status             *prometheus.GaugeVec // activation_id, status
	eq                 *prometheus.GaugeVec // ad_account_id, status
}

func newAudienceMetrics(reg prometheus.Registerer, oauthAccounts []string) (*audienceMetrics, error) {
	gauge := func(name, help string, labels ...string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	}
	m := &audienceMetrics{
		size:   gauge("cohort_connector_audience_size", "Matched users Pinterest last reported for the activation's audience (lags 24-48h).", "activation_id"),
		users:  gauge("cohort_connector_audience_users_sent", "Distinct users with matchable identifiers put into the audience (estimate): within retention (events mode) or current members (customer_list mode).", "activation_id"),
		ratio:  gauge("cohort_connector_match_rate_ratio", "Match rate: audience size / users sent.", "activation_id"),
		status: gauge("cohort_connector_audience_status", "1 for the audience's current status (READY, INITIALIZING, TOO_SMALL), else 0.", "activation_id", "status"),
		eq:     gauge("cohort_connector_event_quality", "1 for the ad account's current Event Quality Score overall status, else 0.", "ad_account_id", "status"),
	}
	for _, acct := range oauthAccounts {
		for _, s := range eventQualityStatuses {
			m.eq.WithLabelValues(acct, s)
		}
	}
	for _, c := range []prometheus.Collector{m.size, m.users, m.ratio, m.status, m.eq} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering audience metrics: %w", err)
		}
	}
	return m, nil
}

func (m *audienceMetrics) set(rec Record, users uint64, usersKnown bool) {
	id := rec.ActivationID
	m.status.DeletePartialMatch(prometheus.Labels{"activation_id": id})
	for _, s := range audienceStatuses {
		m.status.WithLabelValues(id, s).Set(0)
	}
	if rec.Status != "" {
		m.status.WithLabelValues(id, rec.Status).Set(1)
	}
	if rec.SizeKnown {
		m.size.WithLabelValues(id).Set(float64(rec.Size))
	}
	if usersKnown {
		m.users.WithLabelValues(id).Set(float64(users))
	}
	if rec.SizeKnown && usersKnown && users > 0 {
		m.ratio.WithLabelValues(id).Set(float64(rec.Size) / float64(users))
	}
}

func (m *audienceMetrics) setEventQuality(acct, status string) {
	m.eq.DeletePartialMatch(prometheus.Labels{"ad_account_id": acct})
	for _, s := range eventQualityStatuses {
		m.eq.WithLabelValues(acct, s).Set(0)
	}
	if status != "" {
		m.eq.WithLabelValues(acct, status).Set(1)
	}
}

func (m *audienceMetrics) forget(activationID string) {
	for _, g := range []*prometheus.GaugeVec{m.size, m.users, m.ratio, m.status} {
		g.DeletePartialMatch(prometheus.Labels{"activation_id": activationID})
	}
}
