package pinterest_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/destinations"
	"github.com/cohort-connector/cohort-connector/destinations/pinterest"
)

// The field names and JSON types below are those of openapi.json
// (AudienceCreateRequest, AudienceRule, CustomerListRequest).

func TestCreateAudienceWireFormat(t *testing.T) {
	for _, tc := range []struct {
		name     string
		audience destinations.Audience
		wantRule map[string]any
	}{
		{"a VISITOR rule has a string tag id, integer retention and an ingestion_source set",
			destinations.Audience{Name: "cohort c1", Description: "d", Type: destinations.AudienceVisitor,
				Rule: destinations.AudienceRule{VisitorSourceID: "2612345678901", RetentionDays: 30, Event: "custom",
					EventData: map[string]any{"content_name": "cohort_enter"}, IngestionSource: []string{"conversions_api"}}},
			map[string]any{"visitor_source_id": "2612345678901", "retention_days": float64(30), "event": "custom",
				"event_data":       map[string]any{"content_name": "cohort_enter"},
				"ingestion_source": map[string]any{"=": []any{"conversions_api"}}}},
		{"a CUSTOMER_LIST rule has the list id as a string",
			destinations.Audience{Name: "list", Type: destinations.AudienceCustomerList,
				Rule: destinations.AudienceRule{CustomerListID: "5497558859876"}},
			map[string]any{"customer_list_id": "5497558859876"}},
		{"an ACTALIKE rule has seed ids, a country and an integer percentage",
			destinations.Audience{Name: "alike", Type: destinations.AudienceActalike,
				Rule: destinations.AudienceRule{SeedIDs: []string{"2542620639259"}, Country: "US", Percentage: 3}},
			map[string]any{"seed_id": []any{"2542620639259"}, "country": "US", "percentage": float64(3)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newAPIServer(t, func(w http.ResponseWriter, _ seenRequest) {
				writeJSON(w, http.StatusOK, map[string]any{"id": "77", "name": tc.audience.Name,
					"audience_type": tc.audience.Type, "status": "INITIALIZING", "size": nil, "rule": tc.wantRule})
			})

			got, err := newClient(t, adsConfig(srv.URL)).CreateAudience(context.Background(), acct, tc.audience)

			require.NoError(t, err)
			reqs := srv.requests()
			require.Len(t, reqs, 1)
			assert.Equal(t, http.MethodPost, reqs[0].Method)
			assert.Equal(t, "/v5/ad_accounts/"+acct+"/audiences", reqs[0].Path)
			assert.Equal(t, "Bearer "+adsToken, reqs[0].Auth)
			body := reqs[0].jsonBody(t)
			assert.Equal(t, tc.wantRule, body["rule"])
			assert.Equal(t, tc.audience.Name, body["name"])
			assert.Equal(t, tc.audience.Type, body["audience_type"])
			assert.Equal(t, acct, body["ad_account_id"])
			want := tc.audience
			want.ID, want.Description, want.Status = "77", "", destinations.AudienceInitializing
			assert.Equal(t, want, got, "the audience as answered, rule read back")
		})
	}
}

func TestGetAudienceReadsSizeAndStatus(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer string
		want   destinations.Audience
	}{
		{"a reported size is known",
			`{"id":"9","name":"n","audience_type":"CUSTOMER_LIST","status":"READY","size":1234,"rule":{"customer_list_id":"55"}}`,
			destinations.Audience{ID: "9", Name: "n", Type: "CUSTOMER_LIST", Status: "READY", Size: 1234, SizeKnown: true,
				Rule: destinations.AudienceRule{CustomerListID: "55"}}},
		{"a null size is unknown",
			`{"id":"9","name":"n","audience_type":"VISITOR","status":"TOO_SMALL","size":null}`,
			destinations.Audience{ID: "9", Name: "n", Type: "VISITOR", Status: "TOO_SMALL"}},
		{"a rule in the spec's prose form (arrays and numeric strings) is read too",
			`{"id":"9","name":"n","audience_type":"VISITOR","rule":{"visitor_source_id":["26"],"retention_days":"180","percentage":"10"}}`,
			destinations.Audience{ID: "9", Name: "n", Type: "VISITOR",
				Rule: destinations.AudienceRule{VisitorSourceID: "26", RetentionDays: 180, Percentage: 10}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newAPIServer(t, func(w http.ResponseWriter, _ seenRequest) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(tc.answer))
			})

			got, err := newClient(t, adsConfig(srv.URL)).GetAudience(context.Background(), acct, "9")

			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
			assert.Equal(t, "/v5/ad_accounts/"+acct+"/audiences/9", srv.requests()[0].Path)
		})
	}
}

func TestListAudiencesFollowsTheBookmarks(t *testing.T) {
	srv := newAPIServer(t, func(w http.ResponseWriter, r seenRequest) {
		switch r.Query["bookmark"] {
		case nil:
			writeJSON(w, http.StatusOK, map[string]any{"items": []any{map[string]any{"id": "1"}, map[string]any{"id": "2"}}, "bookmark": "b1"})
		default:
			writeJSON(w, http.StatusOK, map[string]any{"items": []any{map[string]any{"id": "3"}}, "bookmark": nil})
		}
	})

	got, err := newClient(t, adsConfig(srv.URL)).ListAudiences(context.Background(), acct)

	require.NoError(t, err)
	ids := make([]string, len(got))
	for i, a := range got {
		ids[i] = a.ID
	}
	assert.Equal(t, []string{"1", "2", "3"}, ids)
	reqs := srv.requests()
	require.Len(t, reqs, 2)
	for _, r := range reqs {
		assert.Equal(t, []string{"250"}, r.Query["page_size"])
	}
	assert.Equal(t, []string{"b1"}, reqs[1].Query["bookmark"])
}

func TestListingStopsWhenTheBookmarkRepeats(t *testing.T) {
	srv := newAPIServer(t, func(w http.ResponseWriter, _ seenRequest) {
		writeJSON(w, http.StatusOK, map[string]any{"items": []any{}, "bookmark": "same"})
	})
	_, err := newClient(t, adsConfig(srv.URL)).ListCustomerLists(context.Background(), acct)
	assert.Equal(t, destinations.ReasonServer, destErr(t, err).Reason)
	assert.Len(t, srv.requests(), 2)
}

func TestCustomerLists(t *testing.T) {
	srv := newAPIServer(t, func(w http.ResponseWriter, r seenRequest) {
		if r.Method == http.MethodPost {
			writeJSON(w, http.StatusOK, map[string]any{"id": "643", "name": "n", "status": "PROCESSING"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"items": []any{map[string]any{"id": "643", "name": "n", "status": "READY",
			"num_uploaded_user_records": 11.0, "num_removed_user_records": 2.0}}})
	})
	c := newClient(t, adsConfig(srv.URL))

	created, err := c.CreateCustomerList(context.Background(), acct, "n")
	require.NoError(t, err)
	lists, err := c.ListCustomerLists(context.Background(), acct)
	require.NoError(t, err)

	assert.Equal(t, destinations.CustomerList{ID: "643", Name: "n", Status: "PROCESSING"}, created)
	assert.Equal(t, []destinations.CustomerList{{ID: "643", Name: "n", Status: "READY", NumUploaded: 11, NumRemoved: 2}}, lists)
	reqs := srv.requests()
	assert.Equal(t, "/v5/ad_accounts/"+acct+"/customer_lists", reqs[0].Path)
	assert.Equal(t, map[string]any{"name": "n", "records": "", "list_type": "EMAIL"}, reqs[0].jsonBody(t))
}

func TestEventQualityTakesTheConversionsAPIEntry(t *testing.T) {
	srv := newAPIServer(t, func(w http.ResponseWriter, _ seenRequest) {
		writeJSON(w, http.StatusOK, []any{
			map[string]any{"ingestion_source": "TAG", "source_platform": "WEB", "lookback_period": "14d", "overall_status": "GOOD",
				"quality_components": map[string]any{"hashed_email": map[string]any{"custom": map[string]any{"coverage": 99.0}}}},
			map[string]any{"ingestion_source": "CONVERSIONS_API", "source_platform": "OFFLINE", "lookback_period": "14d", "overall_status": "FAIR",
				"quality_components": map[string]any{
					"hashed_email": map[string]any{"custom": map[string]any{"coverage": 80.0}, "lead": map[string]any{"coverage": 10.0}},
					"hashed_maid":  map[string]any{"lead": map[string]any{"coverage": 20.0}, "signup": map[string]any{"coverage": 40.0}},
				}},
		})
	})

	eq, err := newClient(t, adsConfig(srv.URL)).EventQuality(context.Background(), acct)

	require.NoError(t, err)
	assert.Equal(t, destinations.EventQuality{OverallStatus: "FAIR",
		Coverage: map[string]float64{"hashed_email": 80, "hashed_maid": 30}}, eq)
	r := srv.requests()[0]
	assert.Equal(t, "/v5/ad_accounts/"+acct+"/conversion_eqs", r.Path)
	assert.Equal(t, []string{"14d"}, r.Query["lookback_period"])
}

func TestAdsCallsWithoutAnAdsTokenFailWithoutARequest(t *testing.T) {
	srv := newAPIServer(t, func(w http.ResponseWriter, _ seenRequest) { w.WriteHeader(http.StatusOK) })
	c := newClient(t, testConfig(srv.URL)) // a static events token, no AdsTokens
	ctx := context.Background()
	calls := map[string]func() error{
		"ListAudiences":      func() error { _, err := c.ListAudiences(ctx, acct); return err },
		"CreateAudience":     func() error { _, err := c.CreateAudience(ctx, acct, destinations.Audience{}); return err },
		"GetAudience":        func() error { _, err := c.GetAudience(ctx, acct, "1"); return err },
		"ListCustomerLists":  func() error { _, err := c.ListCustomerLists(ctx, acct); return err },
		"CreateCustomerList": func() error { _, err := c.CreateCustomerList(ctx, acct, "n"); return err },
		"EventQuality":       func() error { _, err := c.EventQuality(ctx, acct); return err },
	}
	for name, call := range calls {
		assert.Equal(t, destinations.ReasonAuth, destErr(t, call()).Reason, name)
	}
	assert.Empty(t, srv.requests())
}

func TestAdsCallsAreClassifiedLikeSend(t *testing.T) {
	for status, want := range map[int]destinations.Reason{
		401: destinations.ReasonAuth, 404: destinations.ReasonNotFound, 400: destinations.ReasonBadInput,
		302: destinations.ReasonRedirect, 503: destinations.ReasonServer,
	} {
		srv := newAPIServer(t, func(w http.ResponseWriter, _ seenRequest) {
			w.Header().Set("Location", "https://elsewhere.example/x")
			writeJSON(w, status, pinterest.ErrorResponse{Code: 2, Message: "echo Bearer " + adsToken})
		})
		_, err := newClient(t, adsConfig(srv.URL)).GetAudience(context.Background(), acct, "1")
		de := destErr(t, err)
		assert.Equal(t, want, de.Reason, "HTTP %d", status)
		assert.Equal(t, status, de.StatusCode)
		assert.NotContains(t, err.Error(), adsToken[:8])
	}
}
