package pinterest

// Wire types for POST /ad_accounts/{ad_account_id}/events, taken from
// Pinterest REST API 5.23.0 (shared/pinterest/openapi.json): the request is
// ConversionEvents, the 200 answer ConversionApiResponse, errors Error and
// DetailedError. Only the fields this connector sends are modelled; the
// field names and JSON types are the spec's.

// MaxEventsPerRequest is the most events Pinterest accepts in one call.
const MaxEventsPerRequest = 1000

// Values of Event.EventName and Event.ActionSource used by the connector.
const (
	EventNameCustom     = "custom"
	ActionSourceOffline = "offline"
)

// Values of Event.CustomData.ContentName: which way the membership changed.
const (
	ContentNameEnter = "cohort_enter"
	ContentNameExit  = "cohort_exit"
)

// EventsRequest is ConversionEvents: {"data": [event, ...]}.
type EventsRequest struct {
	Data []Event `json:"data"`
}

// Event is one item of ConversionEvents.data. Required by the spec:
// event_name, action_source, event_time, event_id, user_data.
type Event struct {
	EventName    string `json:"event_name"`
	ActionSource string `json:"action_source"`
	// EventTime is Unix seconds (int64 in the spec).
	EventTime  int64       `json:"event_time"`
	EventID    string      `json:"event_id"`
	UserData   UserData    `json:"user_data"`
	CustomData *CustomData `json:"custom_data,omitempty"`
	// PartnerName identifies the sender; the spec's convention is "ss-<name>".
	PartnerName string `json:"partner_name,omitempty"`
}

// UserData is ConversionEventsUserData. The spec requires at least one of
// em, hashed_maids, or the pair client_ip_address + client_user_agent.
// Hashed fields are lowercase SHA-256 hex; the IP and user agent are plain.
type UserData struct {
	Em              []string `json:"em,omitempty"`
	HashedMaids     []string `json:"hashed_maids,omitempty"`
	ExternalID      []string `json:"external_id,omitempty"`
	ClientIPAddress string   `json:"client_ip_address,omitempty"`
	ClientUserAgent string   `json:"client_user_agent,omitempty"`
}

// CustomData is ConversionEvents.data[].custom_data.
type CustomData struct {
	ContentIDs  []string `json:"content_ids,omitempty"`
	ContentName string   `json:"content_name,omitempty"`
}

// EventsResponse is ConversionApiResponse, the 200 answer.
type EventsResponse struct {
	NumEventsReceived  int             `json:"num_events_received"`
	NumEventsProcessed int             `json:"num_events_processed"`
	Events             []EventResponse `json:"events"`
}

// Values of EventResponse.Status.
const (
	StatusProcessed = "processed"
	StatusFailed    = "failed"
)

// EventResponse is one item of ConversionApiResponse.events, in request order.
type EventResponse struct {
	Status         string `json:"status"`
	ErrorMessage   string `json:"error_message,omitempty"`
	WarningMessage string `json:"warning_message,omitempty"`
}

// ErrorResponse is the spec's Error / DetailedError body of non-200 answers.
type ErrorResponse struct {
	Code    int            `json:"code"`
	Message string         `json:"message"`
	Details map[string]any `json:"details,omitempty"`
}
