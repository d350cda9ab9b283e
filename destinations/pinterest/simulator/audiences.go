package simulator

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Audience types and statuses.
const (
	AudienceVisitor      = "VISITOR"
	AudienceCustomerList = "CUSTOMER_LIST"
	AudienceActalike     = "ACTALIKE"

	StatusReady        = "READY"
	StatusInitializing = "INITIALIZING"
	StatusTooSmall     = "TOO_SMALL"
)

// DefaultRetentionDays is a VISITOR rule's retention_days when omitted.
const DefaultRetentionDays = 180

// ActalikeUsersPerPercent is the (invented) size of an ACTALIKE audience per
// percentage point.
const ActalikeUsersPerPercent = 1_000_000 / 10

// audience is one audience of an account.
type audience struct {
	id, name, typ    string
	description      *string
	rule             audienceRule // as answered, defaults filled in
	visitor          visitorRule  // VISITOR only
	created, updated time.Time
	// The size snapshot, refreshed at most every AudienceDelay.
	snapped bool
	snapAt  time.Time
	size    int64
}

// AudienceInfo is an audience as the simulator holds it.
type AudienceInfo struct {
	ID, Name, Type string
	Rule           json.RawMessage // the rule as the API answers it
	CreatedAt      time.Time
}

// audienceCreate is AudienceCreateRequest.
type audienceCreate struct {
	AdAccountID  *string       `json:"ad_account_id"`
	AudienceType *string       `json:"audience_type"`
	Description  *string       `json:"description"`
	Name         *string       `json:"name"`
	Rule         *audienceRule `json:"rule"`
}

// audienceUpdate is AudienceUpdateRequest.
type audienceUpdate struct {
	AdAccountID   *string       `json:"ad_account_id"`
	Description   *string       `json:"description"`
	Name          *string       `json:"name"`
	OperationType *string       `json:"operation_type"`
	Rule          *audienceRule `json:"rule"`
}

// audienceRule is AudienceRule; every property of the spec is decoded so
// that strict decoding refuses only unknown ones.
type audienceRule struct {
	AdAccountID      *string                    `json:"ad_account_id,omitempty"`
	AdID             json.RawMessage            `json:"ad_id,omitempty"`
	CampaignID       json.RawMessage            `json:"campaign_id,omitempty"`
	Country          *string                    `json:"country,omitempty"`
	CustomerListID   *string                    `json:"customer_list_id,omitempty"`
	EngagementDomain json.RawMessage            `json:"engagement_domain,omitempty"`
	EngagementType   json.RawMessage            `json:"engagement_type,omitempty"`
	EngagerType      json.RawMessage            `json:"engager_type,omitempty"`
	Event            *string                    `json:"event,omitempty"`
	EventData        map[string]json.RawMessage `json:"event_data,omitempty"`
	EventSource      *opSet                     `json:"event_source,omitempty"`
	IngestionSource  *opSet                     `json:"ingestion_source,omitempty"`
	ObjectiveType    json.RawMessage            `json:"objective_type,omitempty"`
	Percentage       *int                       `json:"percentage,omitempty"`
	PinID            json.RawMessage            `json:"pin_id,omitempty"`
	Prefill          *bool                      `json:"prefill,omitempty"`
	RetentionDays    *int                       `json:"retention_days,omitempty"`
	SeedID           []string                   `json:"seed_id,omitempty"`
	URL              json.RawMessage            `json:"url,omitempty"`
	VisitorSourceID  *string                    `json:"visitor_source_id,omitempty"`
}

// opSet is the rule's {"=": [values]} form.
type opSet struct {
	Eq []string `json:"="`
}

// audienceAnswer is the spec's Audience.
type audienceAnswer struct {
	AdAccountID      string       `json:"ad_account_id"`
	AudienceType     string       `json:"audience_type"`
	CreatedTimestamp int64        `json:"created_timestamp"`
	Description      *string      `json:"description"`
	ID               string       `json:"id"`
	Name             string       `json:"name"`
	Rule             audienceRule `json:"rule"`
	Size             *int64       `json:"size"`
	Status           string       `json:"status"`
	Type             string       `json:"type"`
	UpdatedTimestamp int64        `json:"updated_timestamp"`
}

// audienceTypes is the spec's AudienceType: true for the modelled ones.
var audienceTypes = map[string]bool{
	AudienceVisitor: true, AudienceCustomerList: true, AudienceActalike: true,
	"ENGAGEMENT": false, "PERSONA": false,
}

// ruleFields are the rule properties each modelled audience type takes.
var ruleFields = map[string][]string{
	AudienceVisitor: {"ad_account_id", "visitor_source_id", "retention_days", "event", "event_data",
		"event_source", "ingestion_source", "prefill", "url"},
	AudienceCustomerList: {"ad_account_id", "customer_list_id"},
	AudienceActalike:     {"ad_account_id", "seed_id", "country", "percentage"},
}

// serveCreateAudience answers POST audiences.
func (s *Simulator) serveCreateAudience(w http.ResponseWriter, r *http.Request, a *account, _ string, _ Fault) {
	var req audienceCreate
	if !decodeBody(w, r, a, &req) {
		return
	}
	msg := ""
	switch {
	case req.AudienceType == nil:
		msg = "audience_type is required."
	case !audienceTypes[*req.AudienceType]:
		msg = "audience_type " + strconv.Quote(*req.AudienceType) + " is not supported (VISITOR, CUSTOMER_LIST or ACTALIKE)."
	case req.Name == nil || strings.TrimSpace(*req.Name) == "":
		msg = "name is required."
	case req.Rule == nil:
		msg = "rule is required."
	case req.AdAccountID != nil && *req.AdAccountID != a.id:
		msg = "ad_account_id must be the ad account of the path."
	}
	if msg != "" {
		badRequest(w, a, msg)
		return
	}
	now := s.now()
	au := &audience{typ: *req.AudienceType, name: *req.Name, description: req.Description, created: now, updated: now}
	a.mu.Lock()
	if msg = s.setRule(a, au, *req.Rule); msg != "" {
		a.mu.Unlock()
		badRequest(w, a, msg)
		return
	}
	au.id = s.newID()
	a.audiences[au.id] = au
	ans := s.audienceAnswer(a, au, now)
	a.mu.Unlock()
	a.accepted.Add(1)
	writeJSON(w, http.StatusOK, ans)
}

// serveUpdateAudience answers PATCH audiences/{id}: UPDATE (the default)
// replaces the given name, description and rule; REMOVE deletes the
// audience.
func (s *Simulator) serveUpdateAudience(w http.ResponseWriter, r *http.Request, a *account, id string, _ Fault) {
	var req audienceUpdate
	if !decodeBody(w, r, a, &req) {
		return
	}
	op := "UPDATE"
	if req.OperationType != nil {
		op = *req.OperationType
	}
	msg := ""
	switch {
	case op != "UPDATE" && op != "REMOVE":
		msg = "operation_type must be UPDATE or REMOVE."
	case req.Name != nil && strings.TrimSpace(*req.Name) == "":
		msg = "name must not be empty."
	case req.AdAccountID != nil && *req.AdAccountID != a.id:
		msg = "ad_account_id must be the ad account of the path."
	}
	if msg != "" {
		badRequest(w, a, msg)
		return
	}
	now := s.now()
	a.mu.Lock()
	ans, status, msg := s.updateAudience(a, id, op, &req, now)
	a.mu.Unlock()
	switch status {
	case http.StatusNotFound:
		notFound(w, "Audience")
	case http.StatusBadRequest:
		badRequest(w, a, msg)
	default:
		a.accepted.Add(1)
		writeJSON(w, http.StatusOK, ans)
	}
}

// updateAudience applies a valid update (a.mu held).
func (s *Simulator) updateAudience(a *account, id, op string, req *audienceUpdate, now time.Time) (audienceAnswer, int, string) {
	au := a.audiences[id]
	if au == nil {
		return audienceAnswer{}, http.StatusNotFound, ""
	}
	if req.Rule != nil {
		next := *au
		if msg := s.setRule(a, &next, *req.Rule); msg != "" {
			return audienceAnswer{}, http.StatusBadRequest, msg
		}
		au.rule, au.visitor = next.rule, next.visitor
	}
	if req.Name != nil {
		au.name = *req.Name
	}
	if req.Description != nil {
		au.description = req.Description
	}
	au.updated = now
	ans := s.audienceAnswer(a, au, now)
	if op == "REMOVE" {
		delete(a.audiences, id)
	}
	return ans, http.StatusOK, ""
}

// serveGetAudience answers GET audiences/{id}.
func (s *Simulator) serveGetAudience(w http.ResponseWriter, _ *http.Request, a *account, id string, _ Fault) {
	a.mu.Lock()
	au := a.audiences[id]
	var ans audienceAnswer
	if au != nil {
		ans = s.audienceAnswer(a, au, s.now())
	}
	a.mu.Unlock()
	if au == nil {
		notFound(w, "Audience")
		return
	}
	a.accepted.Add(1)
	writeJSON(w, http.StatusOK, ans)
}

// serveListAudiences answers GET audiences. RECEIVED (shared) audiences are
// not modelled: that list is empty.
func (s *Simulator) serveListAudiences(w http.ResponseWriter, r *http.Request, a *account, _ string, _ Fault) {
	owned := true
	switch r.URL.Query().Get("ownership_type") {
	case "", "OWNED":
	case "RECEIVED":
		owned = false
	default:
		a.badRequest.Add(1)
		writeError(w, http.StatusBadRequest, CodeInvalidParameter, "ownership_type must be OWNED or RECEIVED.")
		return
	}
	now := s.now()
	items := []audienceAnswer{}
	a.mu.Lock()
	for _, au := range a.audiences {
		if owned {
			items = append(items, s.audienceAnswer(a, au, now))
		}
	}
	a.mu.Unlock()
	pageOf(w, r, a, items, func(x *audienceAnswer) string { return x.ID })
}

// audienceAnswer is au as the API shows it (a.mu held).
func (s *Simulator) audienceAnswer(a *account, au *audience, now time.Time) audienceAnswer {
	status, size := s.audienceState(a, au, now)
	return audienceAnswer{
		AdAccountID: a.id, AudienceType: au.typ, CreatedTimestamp: au.created.Unix(),
		Description: au.description, ID: au.id, Name: au.name, Rule: au.rule,
		Size: size, Status: status, Type: "audience", UpdatedTimestamp: au.updated.Unix(),
	}
}

// audienceState is the status and size of au (a.mu held): INITIALIZING
// (size null) for AudienceDelay after creation, then the size snapshot,
// refreshed when it is AudienceDelay old, decides READY or TOO_SMALL.
func (s *Simulator) audienceState(a *account, au *audience, now time.Time) (string, *int64) {
	if now.Before(au.created.Add(s.audienceDelay)) {
		return StatusInitializing, nil
	}
	if !au.snapped || now.Sub(au.snapAt) >= s.audienceDelay {
		au.size, au.snapAt, au.snapped = s.audienceSize(a, au, now), now, true
	}
	size := au.size
	if size < MinAudienceSize {
		return StatusTooSmall, &size
	}
	return StatusReady, &size
}

// audienceSize computes the current size of au (a.mu held).
func (s *Simulator) audienceSize(a *account, au *audience, now time.Time) int64 {
	switch au.typ {
	case AudienceCustomerList:
		if l := a.lists[*au.rule.CustomerListID]; l != nil {
			return int64(l.known)
		}
	case AudienceVisitor:
		return a.visitorSize(&au.visitor, au.created, now)
	case AudienceActalike:
		for _, id := range au.rule.SeedID {
			seed := a.audiences[id]
			if seed == nil {
				return 0
			}
			if st, _ := s.audienceState(a, seed, now); st != StatusReady {
				return 0
			}
		}
		return int64(*au.rule.Percentage) * ActalikeUsersPerPercent
	}
	return 0
}

// setRule validates rule for au's type against the account's tags, lists
// and audiences (a.mu held) and stores it; msg names what is wrong.
func (s *Simulator) setRule(a *account, au *audience, rule audienceRule) (msg string) {
	if msg := checkRuleFields(au.typ, &rule); msg != "" {
		return msg
	}
	if rule.AdAccountID != nil && *rule.AdAccountID != a.id {
		return "rule.ad_account_id must be the ad account of the path."
	}
	switch au.typ {
	case AudienceVisitor:
		v, msg := a.checkVisitorRule(&rule)
		if msg != "" {
			return msg
		}
		au.visitor = v
	case AudienceCustomerList:
		if msg := a.checkCustomerListRule(&rule); msg != "" {
			return msg
		}
	case AudienceActalike:
		if msg := a.checkActalikeRule(&rule, au.id); msg != "" {
			return msg
		}
	}
	au.rule = rule
	return ""
}

// checkRuleFields refuses a rule property the audience type does not take.
func checkRuleFields(typ string, rule *audienceRule) string {
	b, err := json.Marshal(rule)
	if err != nil {
		return "rule: " + err.Error()
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return "rule: " + err.Error()
	}
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		if !slices.Contains(ruleFields[typ], k) {
			return "rule." + k + " is not valid for " + typ + " audiences."
		}
	}
	return ""
}

func (a *account) checkCustomerListRule(rule *audienceRule) string {
	switch id := rule.CustomerListID; {
	case id == nil:
		return "rule.customer_list_id is required for CUSTOMER_LIST audiences."
	case a.lists[*id] == nil:
		return "rule.customer_list_id " + strconv.Quote(*id) + " is not a customer list of ad account " + a.id + "."
	}
	return ""
}

// checkActalikeRule checks seed_id, country and percentage; self is the
// audience's own id ("" on creation), which cannot be its own seed.
func (a *account) checkActalikeRule(rule *audienceRule, self string) string {
	if len(rule.SeedID) == 0 {
		return "rule.seed_id is required for ACTALIKE audiences."
	}
	for _, id := range rule.SeedID {
		if seed := a.audiences[id]; id == self || seed == nil || seed.typ == AudienceActalike {
			return "rule.seed_id " + strconv.Quote(id) + " is not a VISITOR or CUSTOMER_LIST audience of ad account " + a.id + "."
		}
	}
	switch {
	case rule.Country == nil:
		return "rule.country is required for ACTALIKE audiences."
	case *rule.Country != "US" && *rule.Country != "CA" && *rule.Country != "GB":
		return "rule.country must be US, CA or GB."
	case rule.Percentage == nil:
		return "rule.percentage is required for ACTALIKE audiences."
	case *rule.Percentage < 1 || *rule.Percentage > 10:
		return "rule.percentage must be 1-10."
	}
	return ""
}

// SetTags sets the conversion tag ids of an ad account (adding the account
// if it is new); a VISITOR rule's visitor_source_id must be one of them.
func (s *Simulator) SetTags(adAccountID string, tagIDs ...string) {
	a := s.ensureAccount(adAccountID)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.tags = append([]string(nil), tagIDs...)
}

// Audiences returns the audiences of an ad account, by id.
func (s *Simulator) Audiences(adAccountID string) []AudienceInfo {
	a := s.account(adAccountID)
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]AudienceInfo, 0, len(a.audiences))
	for _, au := range a.audiences {
		var rule bytes.Buffer
		_ = json.NewEncoder(&rule).Encode(au.rule)
		out = append(out, AudienceInfo{
			ID: au.id, Name: au.name, Type: au.typ,
			Rule: bytes.TrimSpace(rule.Bytes()), CreatedAt: au.created,
		})
	}
	slices.SortFunc(out, func(x, y AudienceInfo) int { return compareIDs(x.ID, y.ID) })
	return out
}
