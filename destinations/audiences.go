package destinations

import (
	"context"
	"time"
)

// TokenSource yields the bearer token to use now for one ad account. A
// static conversion token never changes; an OAuth access token is refreshed
// before it expires (see the connector's token keeper). Token returns an
// *Error with ReasonAuth when no valid token can be had.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
}

// TokenRejecter is implemented by a TokenSource that wants to know when
// the destination refused (401) a token it gave: it then stops handing it
// out and gets another (an OAuth keeper refreshes), rather than trusting
// the token's own expiry.
type TokenRejecter interface {
	Rejected(token string)
}

// StaticToken is a TokenSource that never changes (a conversion token).
type StaticToken string

// Token returns t.
func (t StaticToken) Token(context.Context) (string, error) { return string(t), nil }

// TokenGrant is the answer to an OAuth refresh: a new access token and the
// (rotated) refresh token that must be stored for the next refresh.
type TokenGrant struct {
	AccessToken      string
	AccessExpiresAt  time.Time
	RefreshToken     string
	RefreshExpiresAt time.Time
	Scope            string
}

// Audience types (Pinterest AudienceType values the connector manages).
const (
	AudienceVisitor      = "VISITOR"
	AudienceCustomerList = "CUSTOMER_LIST"
	AudienceActalike     = "ACTALIKE"
)

// Audience statuses as Pinterest reports them.
const (
	AudienceReady        = "READY"
	AudienceInitializing = "INITIALIZING"
	AudienceTooSmall     = "TOO_SMALL"
)

// Audience is a destination audience as created and read back.
type Audience struct {
	ID          string
	Name        string
	Description string
	Type        string // AudienceVisitor, AudienceCustomerList or AudienceActalike
	Status      string // AudienceReady, AudienceInitializing, AudienceTooSmall ("" when not reported)
	// Size is the number of matched users Pinterest reports; SizeKnown is
	// false when the answer had no size (the spec makes it nullable).
	Size      int64
	SizeKnown bool
	Rule      AudienceRule
}

// AudienceRule is the part of Pinterest's AudienceRule the connector uses.
type AudienceRule struct {
	// VISITOR
	VisitorSourceID string         // the Tag ID
	RetentionDays   int            // 1..540
	Event           string         // e.g. "custom"
	EventData       map[string]any // filter on the events' data
	IngestionSource []string       // e.g. ["conversions_api"], sent as {"=": [...]}
	// CUSTOMER_LIST
	CustomerListID string
	// ACTALIKE
	SeedIDs    []string
	Country    string
	Percentage int // 1..10
}

// CustomerList is a destination customer list.
type CustomerList struct {
	ID     string
	Name   string
	Status string
	// NumUploaded and NumRemoved are Pinterest's counters of records added
	// and removed (they grow with every ADD/REMOVE, repeats included).
	NumUploaded, NumRemoved int64
}

// EventQuality is Pinterest's Event Quality Score of an ad account's
// conversion events.
type EventQuality struct {
	// OverallStatus is NEEDS_IMPROVEMENT, FAIR or GOOD.
	OverallStatus string
	// Coverage maps a quality component (hashed_email, hashed_maid, ...) to
	// its coverage in percent.
	Coverage map[string]float64
}

// AudienceAPI is the audience side of a destination. For Pinterest it needs
// an OAuth access token with ads:read/ads:write; every method returns an
// *Error classified like Send's.
type AudienceAPI interface {
	ListAudiences(ctx context.Context, adAccountID string) ([]Audience, error)
	CreateAudience(ctx context.Context, adAccountID string, a Audience) (Audience, error)
	GetAudience(ctx context.Context, adAccountID, audienceID string) (Audience, error)
	ListCustomerLists(ctx context.Context, adAccountID string) ([]CustomerList, error)
	CreateCustomerList(ctx context.Context, adAccountID, name string) (CustomerList, error)
	EventQuality(ctx context.Context, adAccountID string) (EventQuality, error)
}

// TokenRefresher exchanges a refresh token for a new grant (Pinterest:
// POST /oauth/token, grant_type=refresh_token, app id and secret as Basic
// auth). An invalid or expired refresh token is an *Error with ReasonAuth.
type TokenRefresher interface {
	RefreshToken(ctx context.Context, appID, appSecret, refreshToken string) (TokenGrant, error)
}
