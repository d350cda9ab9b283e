package simulator

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cohort-connector/cohort-connector/destinations/pinterest"
)

// visitorRule is a VISITOR rule, parsed for matching.
type visitorRule struct {
	event     string              // normalized event name; "" = any
	data      map[string][]string // event_data field → accepted values
	sources   []string            // event_source values; nil = any
	capi      bool                // ingestion_source admits conversions_api
	url       bool                // a url filter: matches no CAPI event here
	retention int64               // seconds
	prefill   bool
}

// visitorKey is what the visitor tally keeps apart: one content id of the
// events of one name, source and content_name.
type visitorKey struct {
	event, source, contentName, contentID string
}

var eventSources = []string{"web", "mobile", "offline"}

var ingestionSources = []string{"tag", "mmp", "file_upload", "conversions_api"}

// checkVisitorRule validates a VISITOR rule, filling in retention_days.
func (a *account) checkVisitorRule(rule *audienceRule) (visitorRule, string) {
	v := visitorRule{capi: true, prefill: rule.Prefill == nil || *rule.Prefill, url: len(rule.URL) > 0}
	switch id := rule.VisitorSourceID; {
	case id == nil:
		return v, "rule.visitor_source_id is required for VISITOR audiences."
	case !slices.Contains(a.tags, *id):
		return v, "rule.visitor_source_id " + strconv.Quote(*id) + " is not a conversion tag of ad account " + a.id + "."
	}
	if rule.RetentionDays == nil {
		days := DefaultRetentionDays
		rule.RetentionDays = &days
	}
	if d := *rule.RetentionDays; d < 1 || d > 540 {
		return v, "rule.retention_days must be 1-540."
	}
	v.retention = int64(*rule.RetentionDays) * 86400
	if rule.Event != nil {
		if v.event = normalizeEvent(*rule.Event); v.event == "" {
			return v, "rule.event must not be empty."
		}
	}
	if msg := checkOpSet("rule.event_source", rule.EventSource, eventSources); msg != "" {
		return v, msg
	}
	if msg := checkOpSet("rule.ingestion_source", rule.IngestionSource, ingestionSources); msg != "" {
		return v, msg
	}
	if rule.EventSource != nil {
		v.sources = rule.EventSource.Eq
	}
	if rule.IngestionSource != nil {
		v.capi = slices.Contains(rule.IngestionSource.Eq, "conversions_api")
	}
	if len(rule.EventData) > 0 && rule.Event == nil {
		return v, "rule.event_data requires rule.event."
	}
	var msg string
	v.data, msg = parseEventData(rule.EventData)
	return v, msg
}

func checkOpSet(name string, set *opSet, allowed []string) string {
	if set == nil {
		return ""
	}
	if len(set.Eq) == 0 {
		return name + ` must be {"=": [values]}.`
	}
	for _, v := range set.Eq {
		if !slices.Contains(allowed, v) {
			return name + " value " + strconv.Quote(v) + " is not one of " + strings.Join(allowed, ", ") + "."
		}
	}
	return ""
}

// parseEventData reads each event_data value: a string, an array of
// strings (any of), or {"=": [strings]}.
func parseEventData(data map[string]json.RawMessage) (map[string][]string, string) {
	out := make(map[string][]string, len(data))
	for k, raw := range data {
		var one string
		var set opSet
		var vals []string
		switch {
		case string(raw) == "null":
		case json.Unmarshal(raw, &one) == nil:
			vals = []string{one}
		case json.Unmarshal(raw, &vals) == nil:
		case decodeStrict(raw, &set) == nil:
			vals = set.Eq
		}
		if len(vals) == 0 {
			return nil, "rule.event_data." + k + ` must be a string, an array of strings or {"=": [strings]}.`
		}
		out[k] = vals
	}
	return out, ""
}

// normalizeEvent maps a tag event name and a Conversions API event_name to
// one form: addtocart = add_to_cart.
func normalizeEvent(name string) string { return strings.ReplaceAll(name, "_", "") }

// eventSource maps an action_source to the rule's event_source values.
func eventSource(actionSource string) string {
	switch actionSource {
	case "web", "offline":
		return actionSource
	}
	return "mobile"
}

// matches reports whether the events tallied under k pass the rule's
// filters (the time filter aside).
func (v *visitorRule) matches(k visitorKey) bool {
	if v.event != "" && v.event != k.event {
		return false
	}
	if v.sources != nil && !slices.Contains(v.sources, k.source) {
		return false
	}
	for field, vals := range v.data {
		var got string
		switch field {
		case "content_name":
			got = k.contentName
		case "content_ids":
			got = k.contentID
		default:
			return false // a field the simulator does not keep
		}
		if !slices.Contains(vals, got) {
			return false
		}
	}
	return true
}

// visitorSize counts the distinct known users of the matching events
// within retention (and, without prefill, since the audience's creation).
func (a *account) visitorSize(v *visitorRule, created, now time.Time) int64 {
	if !v.capi || v.url {
		return 0
	}
	since := now.Unix() - v.retention
	if !v.prefill && created.Unix() > since {
		since = created.Unix()
	}
	users := make(map[string]struct{})
	for k, latest := range a.visitors {
		if !v.matches(k) {
			continue
		}
		for u, t := range latest {
			if t >= since {
				users[u] = struct{}{}
			}
		}
	}
	return int64(len(users))
}

// knownUser is the identifier an event's user is known by: the first known
// em, else hashed_maids value, else client_ip_address|client_user_agent;
// "" when none is known.
func (s *Simulator) knownUser(u *pinterest.UserData) string {
	for _, ids := range [][]string{u.Em, u.HashedMaids} {
		for _, id := range ids {
			if s.Known(id) {
				return id
			}
		}
	}
	if u.ClientIPAddress != "" && u.ClientUserAgent != "" {
		if id := u.ClientIPAddress + "|" + u.ClientUserAgent; s.Known(id) {
			return id
		}
	}
	return ""
}

// tallyVisitor records a processed event for VISITOR audiences (a.mu
// held): per content id, the latest event_time of its known user.
func (s *Simulator) tallyVisitor(a *account, we *wireEvent) {
	user := s.knownUser(&we.UserData.UserData)
	if user == "" {
		return
	}
	k := visitorKey{event: normalizeEvent(we.EventName), source: eventSource(we.ActionSource)}
	var ids []string
	if cd := we.CustomData; cd != nil {
		k.contentName, ids = cd.ContentName, cd.ContentIDs
	}
	if len(ids) == 0 {
		ids = []string{""}
	}
	for _, id := range ids {
		k.contentID = id
		latest := a.visitors[k]
		if latest == nil {
			latest = make(map[string]int64)
			a.visitors[k] = latest
		}
		if t, ok := latest[user]; !ok || we.EventTime > t {
			latest[user] = we.EventTime
		}
	}
}
