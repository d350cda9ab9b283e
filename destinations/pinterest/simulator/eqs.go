package simulator

import (
	"bytes"
	"encoding/json"
	"math"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// Event Quality Score thresholds (invented): the share of processed events
// in the lookback that carry a hashed email.
const (
	EQSGoodShare = 0.80
	EQSFairShare = 0.50
)

// qualityKey groups processed events for the Event Quality Score: the hour
// they arrived in (Unix hours of Options.Now), their source platform and
// event_name.
type qualityKey struct {
	hour                int64
	platform, eventName string
}

// qualityTally counts processed events and those carrying each field.
type qualityTally struct {
	events, em, maid, ip, ua, externalID, productID int64
}

func (t *qualityTally) add(o *qualityTally) {
	t.events += o.events
	t.em += o.em
	t.maid += o.maid
	t.ip += o.ip
	t.ua += o.ua
	t.externalID += o.externalID
	t.productID += o.productID
}

// maxLookbackHours is the longest lookback (14d); older tallies are dropped.
const maxLookbackHours = 14 * 24

// sourcePlatform maps an action_source to the spec's SourcePlatformOptions.
func sourcePlatform(actionSource string) string {
	switch actionSource {
	case "web":
		return "WEB"
	case "app_android":
		return "MOBILE_ANDROID"
	case "app_ios":
		return "MOBILE_IOS"
	}
	return "OFFLINE"
}

// tallyQuality records a processed event for the Event Quality Score (a.mu
// held), dropping tallies older than the longest lookback.
func (a *account) tallyQuality(we *wireEvent, at time.Time) {
	hour := at.Unix() / 3600
	if hour != a.qualityHour {
		a.qualityHour = hour
		for k := range a.quality {
			if k.hour <= hour-maxLookbackHours {
				delete(a.quality, k)
			}
		}
	}
	k := qualityKey{hour: hour, platform: sourcePlatform(we.ActionSource), eventName: we.EventName}
	t := a.quality[k]
	if t == nil {
		t = &qualityTally{}
		a.quality[k] = t
	}
	u := &we.UserData.UserData
	t.add(&qualityTally{
		events: 1, em: b2i(len(u.Em) > 0), maid: b2i(len(u.HashedMaids) > 0),
		ip: b2i(u.ClientIPAddress != ""), ua: b2i(u.ClientUserAgent != ""),
		externalID: b2i(len(u.ExternalID) > 0),
		productID:  b2i(we.CustomData != nil && len(we.CustomData.ContentIDs) > 0),
	})
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// eqsAnswer is the spec's EventQualityScore.
type eqsAnswer struct {
	IngestionSource   string                               `json:"ingestion_source"`
	LookbackPeriod    string                               `json:"lookback_period"`
	OverallStatus     string                               `json:"overall_status"`
	QualityComponents map[string]map[string]qualityDetails `json:"quality_components"`
	SourcePlatform    string                               `json:"source_platform"`
}

// qualityDetails is QualityComponentDetails.
type qualityDetails struct {
	Coverage float64 `json:"coverage"`
}

var sourcePlatforms = []string{"WEB", "MOBILE", "MOBILE_ANDROID", "MOBILE_IOS", "OFFLINE",
	"PINTEREST_WEB", "PINTEREST_ANDROID", "PINTEREST_IOS", "POINT_OF_SALE"}

var eqsIngestionSources = []string{"TAG", "MMP", "FILE_UPLOAD", "CONVERSIONS_API", "NATIVE"}

// serveEQS answers GET conversion_eqs: one EventQualityScore per source
// platform with processed events in the lookback (all CONVERSIONS_API).
func (s *Simulator) serveEQS(w http.ResponseWriter, r *http.Request, a *account, _ string, _ Fault) {
	q := r.URL.Query()
	lookback, platform, ingestion := q.Get("lookback_period"), q.Get("source_platform"), q.Get("ingestion_source")
	msg := ""
	switch {
	case lookback != "1d" && lookback != "14d":
		msg = "lookback_period is required and must be 1d or 14d."
	case platform != "" && !slices.Contains(sourcePlatforms, platform):
		msg = "source_platform " + strconv.Quote(platform) + " is not a SourcePlatformOptions value."
	case ingestion != "" && !slices.Contains(eqsIngestionSources, ingestion):
		msg = "ingestion_source " + strconv.Quote(ingestion) + " is not an IngestionSourceOptions value."
	}
	if msg != "" {
		a.badRequest.Add(1)
		writeError(w, http.StatusBadRequest, CodeInvalidParameter, msg)
		return
	}
	hours := int64(24)
	if lookback == "14d" {
		hours = maxLookbackHours
	}
	byPlatform := a.qualitySince(s.now().Unix()/3600-hours, platform)
	out := []eqsAnswer{}
	if ingestion == "" || ingestion == "CONVERSIONS_API" {
		for _, p := range sourcePlatforms {
			if byName := byPlatform[p]; byName != nil {
				out = append(out, eqsOf(p, lookback, byName))
			}
		}
	}
	a.accepted.Add(1)
	writeJSON(w, http.StatusOK, out)
}

// qualitySince sums the tallies of hours after since, by platform (only
// platform when not "") and event name.
func (a *account) qualitySince(since int64, platform string) map[string]map[string]*qualityTally {
	out := make(map[string]map[string]*qualityTally)
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, t := range a.quality {
		if k.hour <= since || platform != "" && k.platform != platform {
			continue
		}
		if out[k.platform] == nil {
			out[k.platform] = make(map[string]*qualityTally)
		}
		sum := out[k.platform][k.eventName]
		if sum == nil {
			sum = &qualityTally{}
			out[k.platform][k.eventName] = sum
		}
		sum.add(t)
	}
	return out
}

// eqsOf grades one platform's tallies by event name.
func eqsOf(platform, lookback string, byName map[string]*qualityTally) eqsAnswer {
	comps := map[string]map[string]qualityDetails{}
	set := func(comp, name string, n, of int64) {
		if comps[comp] == nil {
			comps[comp] = map[string]qualityDetails{}
		}
		comps[comp][name] = qualityDetails{Coverage: math.Round(1000*float64(n)/float64(of)) / 10}
	}
	var all qualityTally
	for name, t := range byName {
		all.add(t)
		set("hashed_email", name, t.em, t.events)
		set("hashed_maid", name, t.maid, t.events)
		set("ip_address", name, t.ip, t.events)
		set("user_agent", name, t.ua, t.events)
		set("advertiser_external_id", name, t.externalID, t.events)
		set("external_event_id", name, t.events, t.events)
		set("product_id", name, t.productID, t.events)
	}
	status := "NEEDS_IMPROVEMENT"
	switch share := float64(all.em) / float64(all.events); {
	case share >= EQSGoodShare:
		status = "GOOD"
	case share >= EQSFairShare:
		status = "FAIR"
	}
	return eqsAnswer{
		IngestionSource: "CONVERSIONS_API", LookbackPeriod: lookback, OverallStatus: status,
		QualityComponents: comps, SourcePlatform: platform,
	}
}

// tagAnswer is the spec's ConversionTag (the modelled fields).
type tagAnswer struct {
	AdAccountID string `json:"ad_account_id"`
	ID          string `json:"id"`
	Name        string `json:"name"`
	Status      string `json:"status"`
	Version     string `json:"version"`
}

// serveTags answers GET conversion_tags: the tags of SetTags, all ACTIVE.
func (s *Simulator) serveTags(w http.ResponseWriter, r *http.Request, a *account, _ string, _ Fault) {
	if v := r.URL.Query().Get("filter_deleted"); v != "" {
		if _, err := strconv.ParseBool(v); err != nil {
			a.badRequest.Add(1)
			writeError(w, http.StatusBadRequest, CodeInvalidParameter, "Parameter 'filter_deleted' is not a boolean.")
			return
		}
	}
	a.mu.Lock()
	items := make([]tagAnswer, 0, len(a.tags))
	for _, id := range a.tags {
		items = append(items, tagAnswer{AdAccountID: a.id, ID: id, Name: "Tag " + id, Status: "ACTIVE", Version: "3"})
	}
	a.mu.Unlock()
	a.accepted.Add(1)
	writeJSON(w, http.StatusOK, struct {
		Items []tagAnswer `json:"items"`
	}{items})
}

// decodeStrict decodes one JSON value refusing unknown fields.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}
