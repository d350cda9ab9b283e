package connector

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/destinations"
)

// Defaults of AudienceOptions.
const (
	DefaultAudiencePollInterval = time.Hour
	// DefaultAudienceTakeoverAge is how long a creation lock must be seen
	// unchanged before another replica takes it over. A creator's
	// Pinterest calls are cut off half of it after it took the lock, and a
	// waiter starts counting only once it sees the lock, so a live creator
	// is not overtaken while it is still calling Pinterest. (A call that
	// Pinterest completed but whose answer was cut off leaves an audience
	// without a record: the next holder adopts it by name.)
	DefaultAudienceTakeoverAge = 2 * time.Minute
	DefaultAudienceLockPoll    = 250 * time.Millisecond
)

// Record states.
const (
	recordCreating = "creating" // a creation lock: Owner is creating the audience
	recordReady    = "ready"    // the audience exists; its ids are recorded
	// recordLeft: the activation was disabled or deleted; its audience is
	// left in Pinterest (and adopted again if the activation comes back).
	recordLeft = "left"
)

// audienceKeyPrefix prefixes the state bucket's audience records:
// "audience.<activation_id>".
const audienceKeyPrefix = "audience."

func audienceKey(activationID string) string { return audienceKeyPrefix + activationID }

// maxAudienceNameRunes bounds the names the connector gives audiences and
// customer lists. The spec (Pinterest API 5.23.0) states no limit for
// either name; 100 is a guess on the safe side, kept well below the limits
// other Pinterest names have (180, 200, 500).
const maxAudienceNameRunes = 100

// ErrNoOAuth means an ad account has no OAuth app configured: Pinterest
// accepts audience calls only with an OAuth token, so the account's
// audiences are not managed (its events still flow).
var ErrNoOAuth = errors.New("no OAuth app configured")

// Record is what the state bucket holds for one activation's audience
// (key "audience.<activation_id>", JSON). While State is "creating" it is
// the creation lock and only the lock fields and the activation's fields
// are set.
type Record struct {
	State string    `json:"state"`
	Owner string    `json:"owner,omitempty"` // replica holding (or that held) the lock
	Since time.Time `json:"since,omitzero"`  // when the lock was taken; for people

	ActivationID string            `json:"activation_id"`
	CohortID     string            `json:"cohort_id"`
	AdAccountID  string            `json:"ad_account_id"`
	Mode         cohorts.Mode      `json:"mode"`
	Actalike     *cohorts.Actalike `json:"actalike,omitempty"` // as configured when created

	AudienceID         string `json:"audience_id,omitempty"`
	AudienceType       string `json:"audience_type,omitempty"`
	CustomerListID     string `json:"customer_list_id,omitempty"`     // customer_list mode
	ActalikeAudienceID string `json:"actalike_audience_id,omitempty"` // when Actalike is set

	// Status and Size of the main audience as Pinterest last reported them.
	Status    string    `json:"status,omitempty"`
	Size      int64     `json:"size"`
	SizeKnown bool      `json:"size_known"`
	PolledAt  time.Time `json:"polled_at,omitzero"`
	CreatedAt time.Time `json:"created_at,omitzero"`
}

// fits reports whether r is a finished record of what want describes: the
// same cohort, account, mode and actalike. A change of any of them needs
// another audience (the old one is left in Pinterest). Tag ID and
// retention are not compared: a VISITOR audience keeps the rule it was
// created with.
func (r Record) fits(want Record) bool {
	return r.State == recordReady && r.AudienceID != "" &&
		r.CohortID == want.CohortID && r.AdAccountID == want.AdAccountID && r.Mode == want.Mode &&
		sameActalike(r.Actalike, want.Actalike) && (want.Actalike == nil || r.ActalikeAudienceID != "")
}

func sameActalike(a, b *cohorts.Actalike) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// AudienceOptions configure an AudienceManager.
type AudienceOptions struct {
	// KV is the state bucket that holds the records (and sketches).
	KV  jetstream.KeyValue
	API destinations.AudienceAPI
	// Accounts maps every configured ad account id to whether it has an
	// OAuth app: audiences are managed only for those that have one.
	Accounts map[string]bool
	Logger   zerolog.Logger
	// Registerer receives the audience metrics.
	Registerer prometheus.Registerer
	// Sketches, when set, give the distinct users sent (events mode) for the
	// match rate.
	Sketches *Sketches
	// PollInterval between two reads of every audience (default 1h).
	PollInterval time.Duration
	// TakeoverAge: a creation lock seen unchanged this long is taken over
	// (default 2m).
	TakeoverAge time.Duration
	// LockPoll: how often a replica waiting for another one's creation
	// reads the record again (default 250ms).
	LockPoll time.Duration
	Now      func() time.Time // default time.Now
	// Owner names this replica in creation locks (the pod name, say); it
	// must differ between replicas running at once. A lock found with this
	// Owner is from a previous run of the replica and is taken over at once.
	Owner string
}

// AudienceManager keeps one Pinterest audience per activation: created
// exactly once across restarts and replicas (see Ensure), read back every
// PollInterval for its status and size (see Run).
type AudienceManager struct {
	o       AudienceOptions
	metrics *audienceMetrics
	wake    chan struct{}

	mu       sync.Mutex
	inflight map[string]chan struct{} // activation id → held while Ensure runs
	problems map[string]string        // activation id → why its audience is not managed
	statuses map[string]string        // activation id → last status seen
	eqs      map[string]string        // ad account id → last event quality error
	lists    map[string]string        // activation id → its customer list (customer_list mode)
}

// NewAudienceManager checks the options, applies defaults and registers
// the metrics.
func NewAudienceManager(o AudienceOptions) (*AudienceManager, error) {
	if o.KV == nil || o.API == nil || o.Registerer == nil || o.Owner == "" {
		return nil, errors.New("creating audience manager: KV, API, Registerer and Owner are required")
	}
	o.PollInterval = cmp.Or(o.PollInterval, DefaultAudiencePollInterval)
	o.TakeoverAge = cmp.Or(o.TakeoverAge, DefaultAudienceTakeoverAge)
	o.LockPoll = cmp.Or(o.LockPoll, DefaultAudienceLockPoll)
	if o.Now == nil {
		o.Now = time.Now
	}
	o.Accounts = maps.Clone(o.Accounts)
	m := &AudienceManager{
		o: o, wake: make(chan struct{}, 1),
		inflight: map[string]chan struct{}{}, problems: map[string]string{},
		statuses: map[string]string{}, eqs: map[string]string{}, lists: map[string]string{},
	}
	var oauth []string
	for acct, ok := range o.Accounts {
		if ok {
			oauth = append(oauth, acct)
		}
	}
	var err error
	if m.metrics, err = newAudienceMetrics(o.Registerer, oauth); err != nil {
		return nil, fmt.Errorf("creating audience manager: %w", err)
	}
	return m, nil
}

// lockLocal serialises Ensure per activation within this process, so that
// a lock carrying this replica's Owner is never one of this process's
// calls in progress.
func (m *AudienceManager) lockLocal(ctx context.Context, id string) (func(), error) {
	for {
		m.mu.Lock()
		ch, busy := m.inflight[id]
		if !busy {
			ch = make(chan struct{})
			m.inflight[id] = ch
			m.mu.Unlock()
			return func() {
				m.mu.Lock()
				delete(m.inflight, id)
				m.mu.Unlock()
				close(ch)
			}, nil
		}
		m.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Ensure makes sure the activation's audience exists in Pinterest, created
// exactly once across restarts and replicas, and returns its record.
//
// The protocol, on the state bucket key "audience.<activation_id>":
//  1. A record that fits the activation is returned as it is.
//  2. Absent: kv.Create of a "creating" record is the lock; one replica
//     wins, the others wait, reading the key every LockPoll, until the
//     winner writes the finished record (or ctx ends).
//  3. A lock seen unchanged for TakeoverAge (its creator died), a lock of
//     this replica's own previous run, or a record that no longer fits
//     the activation (cohort, account, mode or actalike changed) is taken
//     over with kv.Update on its revision: again only one replica wins.
//  4. The lock holder lists the account's audiences (and customer lists)
//     and adopts the one whose name is exactly the activation's
//     deterministic name before creating anything, so a crash between a
//     creation and its record never leaves a second audience; then it
//     writes the record with kv.Update on the lock's revision.
//
// An account without OAuth returns an error wrapping ErrNoOAuth.
func (m *AudienceManager) Ensure(ctx context.Context, a cohorts.Activation, adAccountID, tagID string) (Record, error) {
	if !m.o.Accounts[adAccountID] {
		return Record{}, fmt.Errorf("ad account %s has %w (CONNECTOR_ACCOUNT_<NAME>_APP_ID…): audiences are not managed", adAccountID, ErrNoOAuth)
	}
	unlock, err := m.lockLocal(ctx, a.ID)
	if err != nil {
		return Record{}, fmt.Errorf("ensuring audience of activation %s: %w", a.ID, err)
	}
	defer unlock()
	want := Record{ActivationID: a.ID, CohortID: a.CohortID, AdAccountID: adAccountID, Mode: a.Mode, Actalike: a.Actalike}
	w := lockWatch{}
	for {
		rec, done, err := m.ensureStep(ctx, a, tagID, want, &w)
		if done || err != nil {
			if err != nil {
				return rec, fmt.Errorf("ensuring audience of activation %s: %w", a.ID, err)
			}
			m.mu.Lock()
			m.lists[a.ID] = rec.CustomerListID
			m.mu.Unlock()
			return rec, nil
		}
	}
}

// lockWatch remembers which lock revision a waiting replica saw and since
// when (by its own clock, so clocks of replicas need not agree).
type lockWatch struct {
	rev  uint64
	seen time.Time
}

// ensureStep reads the key once and acts on it: returns the record (done),
// takes the lock and creates, or waits one LockPoll (not done).
func (m *AudienceManager) ensureStep(ctx context.Context, a cohorts.Activation, tagID string, want Record, w *lockWatch) (Record, bool, error) {
	key := audienceKey(a.ID)
	e, err := m.o.KV.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		rev, err := m.o.KV.Create(ctx, key, m.lockValue(want))
		if errors.Is(err, jetstream.ErrKeyExists) {
			return Record{}, false, nil // another replica won
		}
		if err != nil {
			return Record{}, false, fmt.Errorf("taking creation lock: %w", err)
		}
		return m.createLocked(ctx, a, tagID, want, rev, Record{})
	}
	if err != nil {
		return Record{}, false, fmt.Errorf("reading record: %w", err)
	}
	var cur Record
	decodeErr := json.Unmarshal(e.Value(), &cur)
	if decodeErr == nil && cur.fits(want) {
		return cur, true, nil
	}
	if decodeErr == nil && cur.State == recordCreating && !m.canTakeOver(cur, e.Revision(), w) {
		return Record{}, false, m.waitLockPoll(ctx)
	}
	rev, err := m.o.KV.Update(ctx, key, m.lockValue(want), e.Revision())
	if isConflict(err) {
		return Record{}, false, nil
	}
	if err != nil {
		return Record{}, false, fmt.Errorf("taking over creation lock: %w", err)
	}
	m.o.Logger.Info().Str("activation_id", a.ID).Str("previous_state", cur.State).Str("previous_owner", cur.Owner).
		Msg("audience record taken over: creating or adopting the audience")
	return m.createLocked(ctx, a, tagID, want, rev, cur)
}

// canTakeOver: a lock of this replica's previous run, or one seen
// unchanged for TakeoverAge.
func (m *AudienceManager) canTakeOver(cur Record, rev uint64, w *lockWatch) bool {
	if cur.Owner == m.o.Owner {
		return true // lockLocal guarantees no call of this process holds it
	}
	now := m.o.Now()
	if w.rev != rev {
		w.rev, w.seen = rev, now
		return false
	}
	return now.Sub(w.seen) >= m.o.TakeoverAge
}

func (m *AudienceManager) waitLockPoll(ctx context.Context) error {
	t := time.NewTimer(m.o.LockPoll)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("waiting for another replica's creation: %w", ctx.Err())
	case <-t.C:
		return nil
	}
}

func (m *AudienceManager) lockValue(want Record) []byte {
	l := want
	l.State, l.Owner, l.Since = recordCreating, m.o.Owner, m.o.Now().UTC()
	b, _ := json.Marshal(l) // a Record always marshals
	return b
}

// isConflict reports a failed compare-and-set: the key changed (or was
// created) since the revision read.
func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) ||
		(errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence)
}

// createLocked runs with the lock at revision lockRev: it adopts or creates
// the Pinterest objects and writes the record. prev is the record it
// replaces (zero if none). Pinterest calls are bounded by half the
// takeover age. On a Pinterest error the lock is released.
func (m *AudienceManager) createLocked(ctx context.Context, a cohorts.Activation, tagID string, want Record, lockRev uint64, prev Record) (Record, bool, error) {
	cctx, cancel := context.WithTimeout(ctx, m.o.TakeoverAge/2)
	defer cancel()
	rec, err := m.adoptOrCreate(cctx, a, tagID, want)
	key := audienceKey(a.ID)
	if err != nil {
		// Release the lock so that the next attempt need not wait for a
		// takeover; if someone took it over meanwhile, this fails, harmlessly.
		_ = m.o.KV.Delete(ctx, key, jetstream.LastRevision(lockRev))
		return Record{}, false, err
	}
	rec.State, rec.CreatedAt = recordReady, m.o.Now().UTC()
	b, _ := json.Marshal(rec)
	if _, err := m.o.KV.Update(ctx, key, b, lockRev); err != nil {
		if isConflict(err) {
			// Taken over: the new holder adopts what was made here by name.
			return Record{}, false, nil
		}
		return Record{}, false, fmt.Errorf("writing record: %w", err)
	}
	m.logLeft(prev, rec)
	return rec, true, nil
}

// logLeft logs the audiences of a replaced record that the new one does
// not use: they are left in Pinterest, never deleted.
func (m *AudienceManager) logLeft(prev, rec Record) {
	for _, id := range []string{prev.AudienceID, prev.ActalikeAudienceID} {
		if id != "" && id != rec.AudienceID && id != rec.ActalikeAudienceID {
			m.o.Logger.Info().Str("activation_id", prev.ActivationID).Str("ad_account_id", prev.AdAccountID).Str("audience_id", id).
				Msgf("audience %s of activation %s left in Pinterest: the activation changed (cohort, account, mode or actalike)", id, prev.ActivationID)
		}
	}
}

// adoptOrCreate makes the customer list (customer_list mode), the main
// audience and the actalike (if configured), adopting each by name.
func (m *AudienceManager) adoptOrCreate(ctx context.Context, a cohorts.Activation, tagID string, want Record) (Record, error) {
	rec := want
	acct := want.AdAccountID
	var spec destinations.Audience
	switch a.Mode {
	case cohorts.ModeCustomerList:
		cl, err := m.ensureCustomerList(ctx, acct, AudienceName(a.ID, a.CohortID))
		if err != nil {
			return Record{}, err
		}
		rec.CustomerListID = cl.ID
		spec = customerListAudience(a, cl.ID)
	default:
		spec = visitorAudience(a, tagID)
	}
	main, err := m.ensureAudience(ctx, acct, a.ID, spec)
	if err != nil {
		return Record{}, err
	}
	rec.AudienceID, rec.AudienceType = main.ID, main.Type
	rec.Status, rec.Size, rec.SizeKnown = main.Status, main.Size, main.SizeKnown
	if a.Actalike != nil {
		act, err := m.ensureAudience(ctx, acct, a.ID, actalikeAudience(a, main.ID))
		if err != nil {
			return Record{}, err
		}
		rec.ActalikeAudienceID = act.ID
	}
	return rec, nil
}

// ensureAudience adopts the account's audience of spec's name and type, or
// creates it. Of several (made by hand, or before this protocol), the
// oldest (lowest id) is adopted.
func (m *AudienceManager) ensureAudience(ctx context.Context, acct, activationID string, spec destinations.Audience) (destinations.Audience, error) {
	all, err := m.o.API.ListAudiences(ctx, acct)
	if err != nil {
		return destinations.Audience{}, fmt.Errorf("listing audiences of ad account %s: %w", acct, err)
	}
	var same []destinations.Audience
	for _, au := range all {
		if au.Name == spec.Name && au.Type == spec.Type {
			same = append(same, au)
		}
	}
	log := m.o.Logger.Info().Str("activation_id", activationID).Str("ad_account_id", acct).Str("audience_type", spec.Type)
	if len(same) > 0 {
		slices.SortFunc(same, func(x, y destinations.Audience) int { return compareIDs(x.ID, y.ID) })
		log.Str("audience_id", same[0].ID).Int("same_name", len(same)).Msgf("audience %q adopted", spec.Name)
		return same[0], nil
	}
	created, err := m.o.API.CreateAudience(ctx, acct, spec)
	if err != nil {
		return destinations.Audience{}, fmt.Errorf("creating %s audience in ad account %s: %w", spec.Type, acct, err)
	}
	log.Str("audience_id", created.ID).Msgf("audience %q created", spec.Name)
	return created, nil
}

// ensureCustomerList adopts the account's customer list of this name, or
// creates it.
func (m *AudienceManager) ensureCustomerList(ctx context.Context, acct, name string) (destinations.CustomerList, error) {
	all, err := m.o.API.ListCustomerLists(ctx, acct)
	if err != nil {
		return destinations.CustomerList{}, fmt.Errorf("listing customer lists of ad account %s: %w", acct, err)
	}
	var same []destinations.CustomerList
	for _, cl := range all {
		if cl.Name == name {
			same = append(same, cl)
		}
	}
	if len(same) > 0 {
		slices.SortFunc(same, func(x, y destinations.CustomerList) int { return compareIDs(x.ID, y.ID) })
		return same[0], nil
	}
	cl, err := m.o.API.CreateCustomerList(ctx, acct, name)
	if err != nil {
		return destinations.CustomerList{}, fmt.Errorf("creating customer list in ad account %s: %w", acct, err)
	}
	return cl, nil
}

// compareIDs orders Pinterest ids (digits) numerically.
func compareIDs(x, y string) int {
	return cmp.Or(cmp.Compare(len(x), len(y)), strings.Compare(x, y))
}

// AudienceName is the deterministic name of an activation's main audience
// (and, in customer_list mode, of its customer list).
func AudienceName(activationID, cohortID string) string {
	return audienceName(activationID, "cohort "+cohortID)
}

// audienceName is the deterministic, readable name of an activation's
// Pinterest object: "cohort-connector · <activation_id> · <detail>". A
// name over maxAudienceNameRunes is cut and ends with a hash of the whole,
// so that it stays unique and deterministic.
func audienceName(activationID, detail string) string {
	name := "cohort-connector · " + activationID + " · " + detail
	if utf8.RuneCountInString(name) <= maxAudienceNameRunes {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	suffix := "… #" + hex.EncodeToString(sum[:6])
	keep := maxAudienceNameRunes - utf8.RuneCountInString(suffix)
	return string([]rune(name)[:keep]) + suffix
}

// visitorAudience is the events mode audience: the users whose
// cohort_enter events for the cohort reached the activation's Tag.
//
// Confirmed by the spec (AudienceRule, Pinterest API 5.23.0): the field
// names and types: visitor_source_id (a Tag ID), retention_days (1–540,
// default 180), event ("custom" is a listed value), event_data (an object
// of event data fields; an event must be given for it to be evaluated),
// ingestion_source ({"=": [...]}, "conversions_api" a listed value).
//
// Assumptions to verify with a real account: that Conversions API events
// are attributed to the Tag's visitor source when the Tag ID is the
// visitor_source_id; that event_data matches the events' custom_data
// (content_ids, content_name) and accepts the {"=": [...]} operator there
// as ingestion_source does. A user who exits stays until retention ends:
// a VISITOR audience cannot be told to remove anyone.
func visitorAudience(a cohorts.Activation, tagID string) destinations.Audience {
	return destinations.Audience{
		Name:        AudienceName(a.ID, a.CohortID),
		Description: "Users sent by cohort-connector as entering cohort " + a.CohortID,
		Type:        destinations.AudienceVisitor,
		Rule: destinations.AudienceRule{
			VisitorSourceID: tagID,
			RetentionDays:   a.Retention(),
			Event:           "custom",
			IngestionSource: []string{"conversions_api"},
			EventData: map[string]any{
				"content_ids":  map[string]any{"=": []string{a.CohortID}},
				"content_name": map[string]any{"=": []string{"cohort_enter"}},
			},
		},
	}
}

// customerListAudience is the customer_list mode audience over the list.
func customerListAudience(a cohorts.Activation, listID string) destinations.Audience {
	return destinations.Audience{
		Name:        AudienceName(a.ID, a.CohortID),
		Description: "Current members of cohort " + a.CohortID + ", mirrored by cohort-connector",
		Type:        destinations.AudienceCustomerList,
		Rule:        destinations.AudienceRule{CustomerListID: listID},
	}
}

// actalikeAudience is seeded with the main audience; its name carries the
// cohort, country and percentage, so that changing them makes another one.
func actalikeAudience(a cohorts.Activation, seedID string) destinations.Audience {
	return destinations.Audience{
		Name:        audienceName(a.ID, fmt.Sprintf("cohort %s · actalike %s %d%%", a.CohortID, a.Actalike.Country, a.Actalike.Percentage)),
		Description: "Users like those of cohort " + a.CohortID,
		Type:        destinations.AudienceActalike,
		Rule: destinations.AudienceRule{
			SeedIDs: []string{seedID}, Country: a.Actalike.Country, Percentage: a.Actalike.Percentage,
		},
	}
}

// CustomerListID is the customer list of an activation in customer_list
// mode, "" until Ensure has made sure it exists (its changes wait for it).
// It is read for every change routed to such an activation: memory only.
func (m *AudienceManager) CustomerListID(activationID string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lists[activationID]
}
