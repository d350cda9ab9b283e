package simulator_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/destinations/pinterest"
	"github.com/cohort-connector/cohort-connector/destinations/pinterest/simulator"
)

// eqsAnswer is the spec's EventQualityScore.
type eqsAnswer struct {
	IngestionSource   string                                   `json:"ingestion_source"`
	LookbackPeriod    string                                   `json:"lookback_period"`
	OverallStatus     string                                   `json:"overall_status"`
	QualityComponents map[string]map[string]map[string]float64 `json:"quality_components"`
	SourcePlatform    string                                   `json:"source_platform"`
}

// qualityEvents returns n events, the first withEm of them with a hashed
// email and the others with only an IP address and user agent.
func qualityEvents(n, withEm int, now time.Time, tag string) []pinterest.Event {
	evs := make([]pinterest.Event, n)
	for i := range evs {
		evs[i] = pinterest.Event{
			EventName: pinterest.EventNameCustom, ActionSource: pinterest.ActionSourceOffline,
			EventTime: now.Unix(), EventID: fmt.Sprint(tag, i),
			UserData: pinterest.UserData{ClientIPAddress: "10.0.0.1", ClientUserAgent: "ua"},
		}
		if i < withEm {
			evs[i].UserData = pinterest.UserData{Em: []string{sha(fmt.Sprint(tag, i))}}
		}
	}
	return evs
}

func TestEventQualityScore(t *testing.T) {
	s, clk, tok := adsSim(t, simulator.Options{})
	eqs := func(query string) []eqsAnswer {
		var out []eqsAnswer
		decodeAs(t, do(t, s, http.MethodGet, "/v5/ad_accounts/"+acct+"/conversion_eqs?"+query, tok, "", nil), &out)
		return out
	}
	assert.Empty(t, eqs("lookback_period=1d"), "no events, no score")

	decodeOK(t, postEvents(t, s, body(t, qualityEvents(10, 2, clk.Now(), "a"))))
	failed := qualityEvents(5, 0, clk.Now(), "f")
	for i := range failed {
		failed[i].UserData = pinterest.UserData{Em: []string{"bad"}}
	}
	decodeOK(t, postEvents(t, s, body(t, failed)))
	got := eqs("lookback_period=1d")
	require.Len(t, got, 1)
	assert.Equal(t, "CONVERSIONS_API", got[0].IngestionSource)
	assert.Equal(t, "OFFLINE", got[0].SourcePlatform)
	assert.Equal(t, "1d", got[0].LookbackPeriod)
	assert.Equal(t, "NEEDS_IMPROVEMENT", got[0].OverallStatus, "2 of 10 processed events have an email")
	assert.Equal(t, 20.0, got[0].QualityComponents["hashed_email"]["custom"]["coverage"])
	assert.Equal(t, 80.0, got[0].QualityComponents["ip_address"]["custom"]["coverage"])

	clk.Advance(48 * time.Hour)
	decodeOK(t, postEvents(t, s, body(t, qualityEvents(10, 10, clk.Now(), "b"))))
	assert.Equal(t, "GOOD", eqs("lookback_period=1d")[0].OverallStatus)
	got = eqs("lookback_period=14d")
	assert.Equal(t, "FAIR", got[0].OverallStatus, "12 of 20")
	assert.Equal(t, 60.0, got[0].QualityComponents["hashed_email"]["custom"]["coverage"])
	assert.Empty(t, eqs("lookback_period=14d&ingestion_source=TAG"))
	assert.Empty(t, eqs("lookback_period=14d&source_platform=WEB"))
	assert.Len(t, eqs("lookback_period=14d&source_platform=OFFLINE&ingestion_source=CONVERSIONS_API"), 1)

	clk.Advance(14 * 24 * time.Hour)
	assert.Empty(t, eqs("lookback_period=14d"))

	for _, q := range []string{"", "lookback_period=7d", "lookback_period=1d&source_platform=TV", "lookback_period=1d&ingestion_source=X"} {
		a := do(t, s, http.MethodGet, "/v5/ad_accounts/"+acct+"/conversion_eqs?"+q, tok, "", nil)
		assert.Equal(t, 400, a.status, q)
	}
	assert.Equal(t, 401, do(t, s, http.MethodGet, "/v5/ad_accounts/"+acct+"/conversion_eqs?lookback_period=1d", token, "", nil).status)
}

func TestConversionTagsAreListed(t *testing.T) {
	s, _, tok := adsSim(t, simulator.Options{})
	var ans struct {
		Items []map[string]string `json:"items"`
	}
	decodeAs(t, do(t, s, http.MethodGet, "/v5/ad_accounts/"+acct+"/conversion_tags", tok, "", nil), &ans)
	assert.Empty(t, ans.Items)
	s.SetTags(acct, tagID, "2617998078213")
	decodeAs(t, do(t, s, http.MethodGet, "/v5/ad_accounts/"+acct+"/conversion_tags?filter_deleted=true", tok, "", nil), &ans)
	require.Len(t, ans.Items, 2)
	assert.Equal(t, map[string]string{"ad_account_id": acct, "id": tagID, "name": "Tag " + tagID, "status": "ACTIVE", "version": "3"}, ans.Items[0])
	assert.Equal(t, 400, do(t, s, http.MethodGet, "/v5/ad_accounts/"+acct+"/conversion_tags?filter_deleted=maybe", tok, "", nil).status)
}
