package pinterest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// Wire types for OAuth, audiences, customer lists and the Event Quality
// Score, taken from Pinterest REST API 5.23.0
// (shared/pinterest/openapi.json). Only the fields this connector uses are
// modelled; field names and JSON types are the spec's.

// OAuthTokenResponse is OauthAccessTokenResponseRefresh, the 200 answer of
// POST /oauth/token with grant_type=refresh_token.
type OAuthTokenResponse struct {
	AccessToken           string `json:"access_token"`
	ExpiresIn             int64  `json:"expires_in"` // seconds
	Scope                 string `json:"scope"`
	TokenType             string `json:"token_type"`
	RefreshToken          string `json:"refresh_token"`
	RefreshTokenExpiresIn int64  `json:"refresh_token_expires_in"` // seconds
	RefreshTokenExpiresAt int64  `json:"refresh_token_expires_at"` // Unix seconds
}

// PageSize is the page_size of every listing: the spec's maximum.
const PageSize = 250

// Page is Paginated: a page of items and the bookmark of the next page
// (null or absent on the last).
type Page[T any] struct {
	Items    []T     `json:"items"`
	Bookmark *string `json:"bookmark"`
}

// AudienceWire is the spec's Audience (answers) and AudienceCreateRequest
// (POST body: ad_account_id, name, rule, audience_type, description).
type AudienceWire struct {
	ID           string            `json:"id,omitempty"`
	AdAccountID  string            `json:"ad_account_id,omitempty"`
	Name         string            `json:"name"`
	Description  *string           `json:"description,omitempty"` // nullable
	AudienceType string            `json:"audience_type"`
	Rule         *AudienceRuleWire `json:"rule,omitempty"`
	Size         *int64            `json:"size,omitempty"` // nullable
	Status       string            `json:"status,omitempty"`
}

// AudienceRuleWire is the spec's AudienceRule, the fields the connector
// uses. It is written with the spec's property types (visitor_source_id a
// string, retention_days and percentage integers), although the spec's own
// prose example writes visitor_source_id as an array and retention_days and
// percentage as strings: on reading, both forms are accepted (flexString,
// flexInt), so an answer in the example's form is not a decoding failure.
type AudienceRuleWire struct {
	// VISITOR
	VisitorSourceID flexString     `json:"visitor_source_id,omitempty"`
	RetentionDays   flexInt        `json:"retention_days,omitempty"`
	Event           string         `json:"event,omitempty"`
	EventData       map[string]any `json:"event_data,omitempty"`
	IngestionSource *ValueSet      `json:"ingestion_source,omitempty"`
	// CUSTOMER_LIST
	CustomerListID flexString `json:"customer_list_id,omitempty"`
	// ACTALIKE
	SeedID     []string `json:"seed_id,omitempty"`
	Country    string   `json:"country,omitempty"`
	Percentage flexInt  `json:"percentage,omitempty"`
}

// ValueSet is the rule's {"=": [values]} filter (ingestion_source).
type ValueSet struct {
	Eq []string `json:"="`
}

// CustomerListRequest is CustomerListRequest (POST .../customer_lists).
// The spec requires name and records, and says no more about records than
// that; the connector creates lists empty (records "") and fills them with
// PATCH. list_type EMAIL is the spec's default; hashed MAIDs are accepted
// in the same records ("any combination of emails, MAIDs, or IDFAs").
type CustomerListRequest struct {
	Name     string `json:"name"`
	Records  string `json:"records"`
	ListType string `json:"list_type"`
}

// Values of CustomerListUpdateRequest.OperationType (UserListOperationType).
const (
	OperationAdd    = "ADD"
	OperationRemove = "REMOVE"
)

// CustomerListUpdateRequest is CustomerListUpdateRequest (PATCH
// .../customer_lists/{id}): records are comma-separated hashes.
type CustomerListUpdateRequest struct {
	OperationType string `json:"operation_type"`
	Records       string `json:"records"`
}

// CustomerListWire is the spec's CustomerList; its counters are JSON
// numbers ("number" in the spec).
type CustomerListWire struct {
	ID                     string  `json:"id"`
	Name                   string  `json:"name"`
	Status                 string  `json:"status"`
	NumUploadedUserRecords float64 `json:"num_uploaded_user_records"`
	NumRemovedUserRecords  float64 `json:"num_removed_user_records"`
}

// EventQualityScore is one item of GET .../conversion_eqs. Each quality
// component maps an event type to its details (QualityComponentDetails).
type EventQualityScore struct {
	IngestionSource   string                                        `json:"ingestion_source"`
	SourcePlatform    string                                        `json:"source_platform"`
	LookbackPeriod    string                                        `json:"lookback_period"`
	OverallStatus     string                                        `json:"overall_status"`
	QualityComponents map[string]map[string]QualityComponentDetails `json:"quality_components"`
}

// QualityComponentDetails is the spec's QualityComponentDetails.
type QualityComponentDetails struct {
	Coverage float64 `json:"coverage"` // percent
}

// flexString is a string that also reads from a number or from an array of
// one string (the spec's prose writes visitor_source_id as ["<tag id>"]).
type flexString string

func (s *flexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		*s = ""
		return nil
	case len(b) > 0 && b[0] == '[':
		var a []string
		if err := json.Unmarshal(b, &a); err != nil {
			return err
		}
		if len(a) > 1 {
			return fmt.Errorf("%d values where one was expected", len(a))
		}
		*s = ""
		if len(a) == 1 {
			*s = flexString(a[0])
		}
		return nil
	case len(b) > 0 && b[0] == '"':
		return json.Unmarshal(b, (*string)(s))
	default:
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return err
		}
		*s = flexString(n)
		return nil
	}
}

// flexInt is an integer that also reads from a numeric string (the spec's
// prose writes "retention_days": "180").
type flexInt int

func (n *flexInt) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		*n = 0
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		b = []byte(s)
	}
	v, err := strconv.Atoi(string(b))
	if err != nil {
		return fmt.Errorf("not an integer: %w", err)
	}
	*n = flexInt(v)
	return nil
}

// ConversionTagWire is the spec's ConversionTag, the fields the connector
// uses: an item of GET /ad_accounts/{id}/conversion_tags.
type ConversionTagWire struct {
	AdAccountID string `json:"ad_account_id"`
	ID          string `json:"id"`
	Name        string `json:"name"`
	Status      string `json:"status"` // EntityStatus: ACTIVE, PAUSED, ARCHIVED, DRAFT, DELETED_DRAFT
	// LastFiredTimeMS is when the tag last received an event (Unix
	// milliseconds); nullable.
	LastFiredTimeMS *float64 `json:"last_fired_time_ms,omitempty"`
}
