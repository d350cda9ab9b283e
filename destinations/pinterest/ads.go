package pinterest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/cohort-connector/cohort-connector/destinations"
)

// The audience side (destinations.AudienceAPI). Every method uses the ad
// account's AdsTokens entry (ReasonAuth without any request when there is
// none), the same HTTP path as Send (Client.do: retries, call budget,
// redirect refusal, classification, redaction), and CallTimeout bounds each
// method call, all its pages included.

// maxPages bounds a listing (PageSize items a page): a server that kept
// answering with a bookmark would otherwise hold the call until CallTimeout.
const maxPages = 400

// ListAudiences returns every audience of the ad account, following the
// bookmarks (GET /ad_accounts/{id}/audiences).
func (c *Client) ListAudiences(ctx context.Context, adAccountID string) ([]destinations.Audience, error) {
	return listAll(ctx, c, adAccountID, "audiences", audienceFromWire)
}

// CreateAudience creates a (POST /ad_accounts/{id}/audiences); a.ID,
// Status and Size are ignored. It returns the audience as Pinterest answered.
func (c *Client) CreateAudience(ctx context.Context, adAccountID string, a destinations.Audience) (destinations.Audience, error) {
	var w AudienceWire
	err := c.adsCall(ctx, adAccountID, http.MethodPost, nil, audienceToWire(adAccountID, a), &w, "audiences")
	if err != nil {
		return destinations.Audience{}, err
	}
	return audienceFromWire(w), nil
}

// GetAudience reads one audience back (GET
// /ad_accounts/{id}/audiences/{audience_id}): its size and status.
func (c *Client) GetAudience(ctx context.Context, adAccountID, audienceID string) (destinations.Audience, error) {
	var w AudienceWire
	if err := c.adsCall(ctx, adAccountID, http.MethodGet, nil, nil, &w, "audiences", audienceID); err != nil {
		return destinations.Audience{}, err
	}
	return audienceFromWire(w), nil
}

// ListCustomerLists returns every customer list of the ad account,
// following the bookmarks (GET /ad_accounts/{id}/customer_lists).
func (c *Client) ListCustomerLists(ctx context.Context, adAccountID string) ([]destinations.CustomerList, error) {
	return listAll(ctx, c, adAccountID, "customer_lists", customerListFromWire)
}

// CreateCustomerList creates an empty customer list (POST
// /ad_accounts/{id}/customer_lists with records "" and list_type EMAIL; see
// CustomerListRequest). Send fills it.
func (c *Client) CreateCustomerList(ctx context.Context, adAccountID, name string) (destinations.CustomerList, error) {
	var w CustomerListWire
	req := CustomerListRequest{Name: name, Records: "", ListType: "EMAIL"}
	if err := c.adsCall(ctx, adAccountID, http.MethodPost, nil, req, &w, "customer_lists"); err != nil {
		return destinations.CustomerList{}, err
	}
	return customerListFromWire(w), nil
}

// EventQuality reads the ad account's Event Quality Score over the last 14
// days (GET /ad_accounts/{id}/conversion_eqs?lookback_period=14d), the
// entry of the Conversions API ingestion source (OFFLINE platform preferred,
// the connector's events being offline ones). A component's Coverage is
// that of the "custom" event type (the connector's events) when reported,
// else the mean over the event types reported. An account without a
// Conversions API score yet returns a zero EventQuality (OverallStatus "").
func (c *Client) EventQuality(ctx context.Context, adAccountID string) (destinations.EventQuality, error) {
	var scores []EventQualityScore
	q := url.Values{"lookback_period": {"14d"}}
	if err := c.adsCall(ctx, adAccountID, http.MethodGet, q, nil, &scores, "conversion_eqs"); err != nil {
		return destinations.EventQuality{}, err
	}
	var pick *EventQualityScore
	for i := range scores {
		s := &scores[i]
		if s.IngestionSource == "CONVERSIONS_API" && (pick == nil || s.SourcePlatform == "OFFLINE") {
			pick = s
		}
	}
	if pick == nil {
		return destinations.EventQuality{}, nil
	}
	eq := destinations.EventQuality{OverallStatus: pick.OverallStatus, Coverage: map[string]float64{}}
	for comp, byEvent := range pick.QualityComponents {
		if d, ok := byEvent[EventNameCustom]; ok {
			eq.Coverage[comp] = d.Coverage
			continue
		}
		if len(byEvent) > 0 {
			var sum float64
			for _, d := range byEvent {
				sum += d.Coverage
			}
			eq.Coverage[comp] = sum / float64(len(byEvent))
		}
	}
	return eq, nil
}

// adsCall sends one request under the account's OAuth token to
// /ad_accounts/{id}/{path...}: in (when not nil) as the JSON body, the
// answer decoded into out.
func (c *Client) adsCall(ctx context.Context, adAccountID, method string, q url.Values, in, out any, path ...string) error {
	cred, err := c.adsCredential(ctx, adAccountID)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	return c.adsRequest(ctx, adAccountID, cred, method, q, in, out, path...)
}

// adsRequest is adsCall with the credential and deadline already had.
func (c *Client) adsRequest(ctx context.Context, adAccountID string, cred credential, method string, q url.Values, in, out any, path ...string) error {
	call := apiCall{adAccountID: adAccountID, method: method, cred: cred,
		url: c.base.JoinPath(append([]string{"ad_accounts", adAccountID}, path...)...)}
	call.url.RawQuery = q.Encode()
	if in != nil {
		body, err := json.Marshal(in)
		if err != nil {
			return &destinations.Error{Reason: destinations.ReasonBadInput, Err: fmt.Errorf("encoding request: %w", err)}
		}
		call.body, call.contentType = body, "application/json"
	}
	_, err := c.do(ctx, call, out)
	return err
}

// listAll reads every page of GET /ad_accounts/{id}/{path}, PageSize items
// a page, following the bookmark until an answer has none, and converts
// each item with conv.
func listAll[W, T any](ctx context.Context, c *Client, adAccountID, path string, conv func(W) T) ([]T, error) {
	cred, err := c.adsCredential(ctx, adAccountID)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	var all []T
	bookmark := ""
	for range maxPages {
		q := url.Values{"page_size": {strconv.Itoa(PageSize)}}
		if bookmark != "" {
			q.Set("bookmark", bookmark)
		}
		var p Page[W]
		if err := c.adsRequest(ctx, adAccountID, cred, http.MethodGet, q, nil, &p, path); err != nil {
			return nil, err
		}
		for _, w := range p.Items {
			all = append(all, conv(w))
		}
		if p.Bookmark == nil || *p.Bookmark == "" {
			return all, nil
		}
		if *p.Bookmark == bookmark {
			return nil, &destinations.Error{Reason: destinations.ReasonServer, StatusCode: http.StatusOK,
				Message: "listing " + path + ": the same bookmark twice"}
		}
		bookmark = *p.Bookmark
	}
	return nil, &destinations.Error{Reason: destinations.ReasonServer, StatusCode: http.StatusOK,
		Message: fmt.Sprintf("listing %s: more than %d pages", path, maxPages)}
}

func audienceToWire(adAccountID string, a destinations.Audience) AudienceWire {
	r := a.Rule
	w := AudienceWire{AdAccountID: adAccountID, Name: a.Name, AudienceType: a.Type, Rule: &AudienceRuleWire{
		VisitorSourceID: flexString(r.VisitorSourceID),
		RetentionDays:   flexInt(r.RetentionDays),
		Event:           r.Event,
		EventData:       r.EventData,
		CustomerListID:  flexString(r.CustomerListID),
		SeedID:          r.SeedIDs,
		Country:         r.Country,
		Percentage:      flexInt(r.Percentage),
	}}
	if a.Description != "" {
		w.Description = &a.Description
	}
	if len(r.IngestionSource) > 0 {
		w.Rule.IngestionSource = &ValueSet{Eq: r.IngestionSource}
	}
	return w
}

func audienceFromWire(w AudienceWire) destinations.Audience {
	a := destinations.Audience{ID: w.ID, Name: w.Name, Type: w.AudienceType, Status: w.Status}
	if w.Description != nil {
		a.Description = *w.Description
	}
	if w.Size != nil {
		a.Size, a.SizeKnown = *w.Size, true
	}
	if r := w.Rule; r != nil {
		a.Rule = destinations.AudienceRule{
			VisitorSourceID: string(r.VisitorSourceID),
			RetentionDays:   int(r.RetentionDays),
			Event:           r.Event,
			EventData:       r.EventData,
			CustomerListID:  string(r.CustomerListID),
			SeedIDs:         r.SeedID,
			Country:         r.Country,
			Percentage:      int(r.Percentage),
		}
		if r.IngestionSource != nil {
			a.Rule.IngestionSource = r.IngestionSource.Eq
		}
	}
	return a
}

func customerListFromWire(w CustomerListWire) destinations.CustomerList {
	return destinations.CustomerList{ID: w.ID, Name: w.Name, Status: w.Status,
		NumUploaded: int64(w.NumUploadedUserRecords), NumRemoved: int64(w.NumRemovedUserRecords)}
}
