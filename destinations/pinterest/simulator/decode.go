package simulator

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"

	gojson "github.com/goccy/go-json"

	"github.com/cohort-connector/cohort-connector/destinations/pinterest"
)

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

// strictDecode decodes body, exactly one JSON value, into v, refusing
// properties v does not know. go-json does the work: encoding/json spent
// about 7 µs an event on a batch of 1,000, and in the benchmark the
// simulator shares the machine's cores with the daemon it measures. A body
// go-json refuses is decoded again by encoding/json, whose verdict and
// error text stand, so the simulator answers exactly what it answered
// before; TestStrictDecodeIsEncodingJSON holds the two decoders to the
// same result on plain and mutated request bodies.
func strictDecode(body []byte, v any) error {
	fast := gojson.NewDecoder(bytes.NewReader(body))
	fast.DisallowUnknownFields()
	if fast.Decode(v) == nil && onlySpace(body[fast.InputOffset():]) {
		return nil
	}
	reflect.ValueOf(v).Elem().SetZero() // what go-json left half-decoded
	return stdDecode(body, v)
}

// stdDecode is strictDecode by encoding/json alone: the reference.
func stdDecode(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		// Exactly one JSON value.
		if _, e := dec.Token(); e != io.EOF {
			err = errors.New("unexpected data after the JSON body")
		}
	}
	return err
}

// onlySpace reports whether b is JSON whitespace only.
func onlySpace(b []byte) bool {
	return len(bytes.TrimLeft(b, " \t\r\n")) == 0
}
