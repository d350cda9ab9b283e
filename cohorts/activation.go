package cohorts

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
)

// Mode is how an activation delivers memberships to its destination.
type Mode string

// The modes of an activation.
const (
	// ModeEvents sends every membership change as a conversion event
	// (POST /v5/ad_accounts/{id}/events), for a visitor audience built on
	// those events. It is the default when an activation names no mode.
	ModeEvents Mode = "events"
	// ModeCustomerList keeps a Pinterest customer list in step with the
	// cohort: an enter adds the user's identifiers, an exit removes them.
	ModeCustomerList Mode = "customer_list"
)

// Retention of the visitor audience of an events activation, in days
// (Pinterest: 1 to 540).
const (
	DefaultRetentionDays = 180
	MinRetentionDays     = 1
	MaxRetentionDays     = 540
)

// Actalike countries and percentages Pinterest accepts.
var actalikeCountries = []string{"US", "CA", "GB"}

const (
	MinActalikePercentage = 1
	MaxActalikePercentage = 10
)

// Actalike asks for an actalike (lookalike) audience seeded by the
// activation's audience: users in Country who resemble it, Percentage
// (1 to 10) of that country's users.
type Actalike struct {
	// Country is one of US, CA or GB.
	Country    string `json:"country"`
	Percentage int    `json:"percentage"`
}

// DestinationPinterest is the only destination so far.
const DestinationPinterest = "pinterest"

// Activation routes one cohort to one destination. It is the value of one key
// of the activations KV bucket; the key is ID. Writing the key is the toggle.
type Activation struct {
	// ID is the activation's KV key: see [Activation.Validate].
	ID       string `json:"id"`
	CohortID string `json:"cohort_id"`
	// Destination must be [DestinationPinterest].
	Destination string `json:"destination"`
	// Enabled activations receive memberships; disabled ones are kept but
	// skipped by [Resolver.Resolve].
	Enabled bool `json:"enabled"`
	// TagID overrides the configured default Pinterest Tag ID; blank means
	// the default (see [ResolveTag]).
	TagID string `json:"tag_id"`
	// Mode defaults to [ModeEvents] when absent from the JSON.
	Mode Mode `json:"mode"`
	// RetentionDays is how long a user stays in the visitor audience of an
	// events activation after the last event, 1 to 540; 0 (absent) means
	// [DefaultRetentionDays]. Not allowed in another mode. See
	// [Activation.Retention].
	RetentionDays int `json:"retention_days,omitempty"`
	// Actalike, when set, asks for an actalike audience seeded by this
	// activation's audience, in either mode.
	Actalike *Actalike `json:"actalike,omitempty"`
}

// Equal reports whether a and b are the same activation, field by field
// (Actalike compared by value, not by pointer).
func (a Activation) Equal(b Activation) bool {
	x, y := a, b
	x.Actalike, y.Actalike = nil, nil
	if x != y || (a.Actalike == nil) != (b.Actalike == nil) {
		return false
	}
	return a.Actalike == nil || *a.Actalike == *b.Actalike
}

// Retention returns the retention of the visitor audience in days:
// RetentionDays, or [DefaultRetentionDays] when it is 0.
func (a Activation) Retention() int {
	if a.RetentionDays == 0 {
		return DefaultRetentionDays
	}
	return a.RetentionDays
}

// Limits of an activation's fields.
const (
	maxActivationIDBytes = 256 // NATS KV keys are short; 256 is ample
	maxTagIDBytes        = 32
)

// validKVKey is NATS's rule for a KV key (nats.go's validKeyRe); the leading
// and trailing '.' are checked apart.
var validKVKey = regexp.MustCompile(`^[-/_=\.a-zA-Z0-9]+$`)

// DecodeActivation decodes and validates one activation, as stored in the KV
// bucket. Decoding is strict, unlike [Decode] for memberships: activations
// are written by people, so an unknown field (a typo such as "tagid") is an
// error rather than a silently ignored setting, inside "actalike" too. The
// data must be exactly one
// JSON object. An absent or empty mode means [ModeEvents]. Then
// [Activation.Validate] runs.
//
// On a validation error the decoded Activation is returned along with the
// error so that the caller can log its id; on any other error the zero
// Activation is.
func DecodeActivation(data []byte) (Activation, error) {
	if !startsWithObject(data) {
		return Activation{}, errors.New("decoding activation: not a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var a Activation
	if err := dec.Decode(&a); err != nil {
		return Activation{}, fmt.Errorf("decoding activation: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Activation{}, errors.New("decoding activation: trailing data after the JSON object")
	}
	if a.Mode == "" {
		a.Mode = ModeEvents
	}
	if err := a.Validate(); err != nil {
		return a, err
	}
	return a, nil
}

// Validate reports every problem of the activation at once (joined with
// errors.Join), each naming its JSON field:
//   - id: required, a valid NATS KV key (letters, digits and -/_=.), not
//     starting or ending with '.', at most 256 bytes;
//   - cohort_id: required, no whitespace or control characters, at most 256
//     bytes (the same rule as a membership's cohort_id, so that it can match);
//   - destination: must be "pinterest";
//   - mode: "events" or "customer_list" (an empty mode is only defaulted
//     by [DecodeActivation], not here);
//   - retention_days: 0 (the default, 180) or 1 to 540, and only for mode
//     "events";
//   - actalike: absent, or country one of US, CA, GB and percentage 1 to
//     10 (in both modes);
//   - tag_id: blank (the default Tag ID is used) or only digits, at most 32,
//     as Pinterest Tag IDs are.
//
// Whether the Tag ID belongs to a configured ad account is not checked here;
// see [Resolver.Check].
func (a Activation) Validate() error {
	var errs []error
	switch {
	case a.ID == "":
		errs = append(errs, errors.New("id: required"))
	case len(a.ID) > maxActivationIDBytes:
		errs = append(errs, fmt.Errorf("id: %d bytes, the limit is %d", len(a.ID), maxActivationIDBytes))
	case !validKVKey.MatchString(a.ID):
		errs = append(errs, fmt.Errorf("id %s: only letters, digits and -/_=. are allowed (a NATS KV key)", quoteShort(a.ID)))
	case strings.HasPrefix(a.ID, ".") || strings.HasSuffix(a.ID, "."):
		errs = append(errs, fmt.Errorf("id %s: must not start or end with '.'", quoteShort(a.ID)))
	}
	if a.CohortID == "" {
		errs = append(errs, errors.New("cohort_id: required"))
	} else if detail := checkCohortID(a.CohortID); detail != "" {
		errs = append(errs, fmt.Errorf("cohort_id: %s", detail))
	}
	if a.Destination != DestinationPinterest {
		errs = append(errs, fmt.Errorf("destination %s: must be %q", quoteShort(a.Destination), DestinationPinterest))
	}
	if a.Mode != ModeEvents && a.Mode != ModeCustomerList {
		errs = append(errs, fmt.Errorf("mode %s: not supported; must be %q or %q", quoteShort(string(a.Mode)), ModeEvents, ModeCustomerList))
	}
	if a.RetentionDays != 0 {
		if a.RetentionDays < MinRetentionDays || a.RetentionDays > MaxRetentionDays {
			errs = append(errs, fmt.Errorf("retention_days: %d is out of range %d–%d (absent means %d)",
				a.RetentionDays, MinRetentionDays, MaxRetentionDays, DefaultRetentionDays))
		}
		if a.Mode != ModeEvents {
			errs = append(errs, fmt.Errorf("retention_days: only for mode %q", ModeEvents))
		}
	}
	if al := a.Actalike; al != nil {
		switch {
		case al.Country == "":
			errs = append(errs, fmt.Errorf("actalike.country: required, one of %s", strings.Join(actalikeCountries, ", ")))
		case !slices.Contains(actalikeCountries, al.Country):
			errs = append(errs, fmt.Errorf("actalike.country %s: must be one of %s", quoteShort(al.Country), strings.Join(actalikeCountries, ", ")))
		}
		if al.Percentage < MinActalikePercentage || al.Percentage > MaxActalikePercentage {
			errs = append(errs, fmt.Errorf("actalike.percentage: %d is out of range %d–%d",
				al.Percentage, MinActalikePercentage, MaxActalikePercentage))
		}
	}
	if strings.TrimSpace(a.TagID) != "" {
		switch {
		case len(a.TagID) > maxTagIDBytes:
			errs = append(errs, fmt.Errorf("tag_id: %d characters, the limit is %d", len(a.TagID), maxTagIDBytes))
		case !isDigits(a.TagID):
			errs = append(errs, fmt.Errorf("tag_id %s: must be blank (the default Tag ID) or only digits", quoteShort(a.TagID)))
		}
	}
	return errors.Join(errs...)
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
