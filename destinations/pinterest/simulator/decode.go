package simulator

import "github.com/cohort-connector/cohort-connector/destinations/pinterest"

// Decoding types: the pinterest wire types plus every other property the
// spec allows, so that a strict decoder (DisallowUnknownFields) rejects
// exactly the fields the spec does not know. Unmodelled properties are
// zero-size and skipped.

// wireRequest is ConversionEvents; msgs (per-event outcomes) rides along so
// that both are pooled together.
type wireRequest struct {
	Data []wireEvent `json:"data"`
	msgs []string
}

// wireEvent is one ConversionEvents.data item (additionalProperties: false).
type wireEvent struct {
	AppID         ignored `json:"app_id"`
	AppInfo       ignored `json:"app_info"`
	AppName       ignored `json:"app_name"`
	AppVersion    ignored `json:"app_version"`
	DeviceBrand   ignored `json:"device_brand"`
	DeviceCarrier ignored `json:"device_carrier"`
	DeviceInfo    ignored `json:"device_info"`
	DeviceModel   ignored `json:"device_model"`
	DeviceType    ignored `json:"device_type"`
	SourceURL     ignored `json:"event_source_url"`
	Language      ignored `json:"language"`
	OptOut        ignored `json:"opt_out"`
	OSVersion     ignored `json:"os_version"`
	Wifi          ignored `json:"wifi"`

	pinterest.Event
	// These shadow the embedded fields of the same JSON names.
	UserData   wireUserData    `json:"user_data"`
	CustomData *wireCustomData `json:"custom_data"`
}

// wireUserData is ConversionEventsUserDataProperties.
type wireUserData struct {
	ClickID   ignored `json:"click_id"`
	Country   ignored `json:"country"`
	Ct        ignored `json:"ct"`
	Db        ignored `json:"db"`
	Fn        ignored `json:"fn"`
	Ge        ignored `json:"ge"`
	Ln        ignored `json:"ln"`
	PartnerID ignored `json:"partner_id"`
	Ph        ignored `json:"ph"`
	St        ignored `json:"st"`
	Zp        ignored `json:"zp"`

	pinterest.UserData
}

// wireCustomData is ConversionEvents.data[].custom_data
// (additionalProperties: false).
type wireCustomData struct {
	ContentBrand      ignored `json:"content_brand"`
	ContentCategory   ignored `json:"content_category"`
	Contents          ignored `json:"contents"`
	Currency          ignored `json:"currency"`
	MeasurementID     ignored `json:"external_measurement_id"`
	MeasurementVendor ignored `json:"external_measurement_vendor_id"`
	NP                ignored `json:"np"`
	NumItems          ignored `json:"num_items"`
	OptOutType        ignored `json:"opt_out_type"`
	OrderID           ignored `json:"order_id"`
	PredictedLTV      ignored `json:"predicted_ltv"`
	SearchString      ignored `json:"search_string"`
	Value             ignored `json:"value"`
	pinterest.CustomData
}

// ignored accepts any JSON value (the decoder has already checked its syntax)
// and stores nothing.
type ignored struct{}

func (*ignored) UnmarshalJSON([]byte) error { return nil }
