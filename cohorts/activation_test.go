package cohorts

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const goodActivation = `{"id":"brand-a-c123","cohort_id":"c123","destination":"pinterest",
 "enabled":true,"tag_id":"","mode":"events"}`

func TestDecodeActivation(t *testing.T) {
	for _, tc := range []struct {
		name    string
		input   string
		want    Activation
		wantErr string // substring; "" means success
	}{
		{
			name:  "a complete activation decodes",
			input: goodActivation,
			want: Activation{ID: "brand-a-c123", CohortID: "c123", Destination: DestinationPinterest,
				Enabled: true, Mode: ModeEvents},
		},
		{
			name:  "a missing mode defaults to events",
			input: `{"id":"a","cohort_id":"c","destination":"pinterest","tag_id":"2612345678901"}`,
			want:  Activation{ID: "a", CohortID: "c", Destination: DestinationPinterest, TagID: "2612345678901", Mode: ModeEvents},
		},
		{
			name:  "an id with every allowed character decodes",
			input: `{"id":"A-z_0=9/x.y","cohort_id":"c","destination":"pinterest"}`,
			want:  Activation{ID: "A-z_0=9/x.y", CohortID: "c", Destination: DestinationPinterest, Mode: ModeEvents},
		},
		{name: "an unknown field tagid is rejected as a typo",
			input:   `{"id":"a","cohort_id":"c","destination":"pinterest","tagid":"123"}`,
			wantErr: `unknown field "tagid"`},
		{name: "an id with a space is rejected", input: `{"id":"a b","cohort_id":"c","destination":"pinterest"}`,
			wantErr: "id \"a b\": only letters"},
		{name: "an id with a star is rejected", input: `{"id":"a*","cohort_id":"c","destination":"pinterest"}`,
			wantErr: "id \"a*\""},
		{name: "an id starting with a dot is rejected", input: `{"id":".a","cohort_id":"c","destination":"pinterest"}`,
			wantErr: "must not start or end with '.'"},
		{name: "an id over 256 bytes is rejected",
			input:   `{"id":"` + strings.Repeat("a", 257) + `","cohort_id":"c","destination":"pinterest"}`,
			wantErr: "id: 257 bytes"},
		{name: "a missing id is rejected", input: `{"cohort_id":"c","destination":"pinterest"}`,
			wantErr: "id: required"},
		{name: "a missing cohort_id is rejected", input: `{"id":"a","destination":"pinterest"}`,
			wantErr: "cohort_id: required"},
		{name: "a cohort_id with whitespace is rejected", input: `{"id":"a","cohort_id":"c 1","destination":"pinterest"}`,
			wantErr: "cohort_id: contains whitespace"},
		{name: "the destination facebook is rejected", input: `{"id":"a","cohort_id":"c","destination":"facebook"}`,
			wantErr: `destination "facebook": must be "pinterest"`},
		{
			name:  "the mode customer_list decodes",
			input: `{"id":"a","cohort_id":"c","destination":"pinterest","mode":"customer_list"}`,
			want:  Activation{ID: "a", CohortID: "c", Destination: DestinationPinterest, Mode: ModeCustomerList},
		},
		{
			name:  "an events activation with a retention and an actalike decodes",
			input: `{"id":"a","cohort_id":"c","destination":"pinterest","retention_days":30,"actalike":{"country":"US","percentage":5}}`,
			want: Activation{ID: "a", CohortID: "c", Destination: DestinationPinterest, Mode: ModeEvents,
				RetentionDays: 30, Actalike: &Actalike{Country: "US", Percentage: 5}},
		},
		{
			name:  "the retention bounds 1 and 540 decode",
			input: `{"id":"a","cohort_id":"c","destination":"pinterest","mode":"events","retention_days":540}`,
			want:  Activation{ID: "a", CohortID: "c", Destination: DestinationPinterest, Mode: ModeEvents, RetentionDays: 540},
		},
		{
			name:  "a customer_list activation with an actalike decodes",
			input: `{"id":"a","cohort_id":"c","destination":"pinterest","mode":"customer_list","actalike":{"country":"GB","percentage":10}}`,
			want: Activation{ID: "a", CohortID: "c", Destination: DestinationPinterest, Mode: ModeCustomerList,
				Actalike: &Actalike{Country: "GB", Percentage: 10}},
		},
		{
			name:  "a null actalike means none",
			input: `{"id":"a","cohort_id":"c","destination":"pinterest","actalike":null}`,
			want:  Activation{ID: "a", CohortID: "c", Destination: DestinationPinterest, Mode: ModeEvents},
		},
		{name: "the mode audience is rejected",
			input:   `{"id":"a","cohort_id":"c","destination":"pinterest","mode":"audience"}`,
			wantErr: `mode "audience": not supported; must be "events" or "customer_list"`},
		{name: "a retention of 600 days is rejected",
			input:   `{"id":"a","cohort_id":"c","destination":"pinterest","retention_days":600}`,
			wantErr: "retention_days: 600 is out of range 1–540"},
		{name: "a negative retention is rejected",
			input:   `{"id":"a","cohort_id":"c","destination":"pinterest","retention_days":-1}`,
			wantErr: "retention_days: -1 is out of range 1–540"},
		{name: "a retention with mode customer_list is rejected",
			input:   `{"id":"a","cohort_id":"c","destination":"pinterest","mode":"customer_list","retention_days":30}`,
			wantErr: `retention_days: only for mode "events"`},
		{name: "a fractional retention is rejected",
			input:   `{"id":"a","cohort_id":"c","destination":"pinterest","retention_days":1.5}`,
			wantErr: "decoding activation"},
		{name: "an actalike country FR is rejected",
			input:   `{"id":"a","cohort_id":"c","destination":"pinterest","actalike":{"country":"FR","percentage":5}}`,
			wantErr: `actalike.country "FR": must be one of US, CA, GB`},
		{name: "an actalike country in lower case is rejected",
			input:   `{"id":"a","cohort_id":"c","destination":"pinterest","actalike":{"country":"us","percentage":5}}`,
			wantErr: `actalike.country "us": must be one of US, CA, GB`},
		{name: "an actalike without a country is rejected",
			input:   `{"id":"a","cohort_id":"c","destination":"pinterest","actalike":{"percentage":5}}`,
			wantErr: "actalike.country: required, one of US, CA, GB"},
		{name: "an actalike percentage of 11 is rejected",
			input:   `{"id":"a","cohort_id":"c","destination":"pinterest","actalike":{"country":"CA","percentage":11}}`,
			wantErr: "actalike.percentage: 11 is out of range 1–10"},
		{name: "an empty actalike is rejected for its country and its percentage",
			input:   `{"id":"a","cohort_id":"c","destination":"pinterest","actalike":{}}`,
			wantErr: "actalike.country: required, one of US, CA, GB\nactalike.percentage: 0 is out of range 1–10"},
		{name: "an unknown field inside actalike is rejected",
			input:   `{"id":"a","cohort_id":"c","destination":"pinterest","actalike":{"country":"US","percentage":5,"seed":"x"}}`,
			wantErr: `unknown field "seed"`},
		{name: "a misspelt retention field is rejected",
			input:   `{"id":"a","cohort_id":"c","destination":"pinterest","retention":30}`,
			wantErr: `unknown field "retention"`},
		{name: "the tag abc is rejected", input: `{"id":"a","cohort_id":"c","destination":"pinterest","tag_id":"abc"}`,
			wantErr: `tag_id "abc": must be blank`},
		{name: "a tag over 32 digits is rejected",
			input:   `{"id":"a","cohort_id":"c","destination":"pinterest","tag_id":"` + strings.Repeat("1", 33) + `"}`,
			wantErr: "tag_id: 33 characters"},
		{name: "a wrongly typed enabled is rejected",
			input: `{"id":"a","cohort_id":"c","destination":"pinterest","enabled":"yes"}`, wantErr: "decoding activation"},
		{name: "null is rejected", input: `null`, wantErr: "not a JSON object"},
		{name: "an array is rejected", input: `[]`, wantErr: "not a JSON object"},
		{name: "trailing data is rejected", input: goodActivation + ` {}`, wantErr: "trailing data"},
		{name: "truncated JSON is rejected", input: goodActivation[:30], wantErr: "decoding activation"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeActivation([]byte(tc.input))
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestValidateReportsEveryProblemAtOnce(t *testing.T) {
	err := Activation{ID: "a b", CohortID: "", Destination: "facebook", Mode: "lists", TagID: "x",
		RetentionDays: 541, Actalike: &Actalike{Country: "FR"}}.Validate()
	require.Error(t, err)
	lines := strings.Split(err.Error(), "\n")
	for i, field := range []string{"id ", "cohort_id", "destination", "mode", "retention_days: 541", "retention_days: only",
		"actalike.country", "actalike.percentage", "tag_id"} {
		require.Less(t, i, len(lines), err)
		assert.True(t, strings.HasPrefix(lines[i], field), "line %d %q should start with %q", i, lines[i], field)
	}
	assert.Len(t, lines, 9)
}

func TestRetentionDefaultsTo180Days(t *testing.T) {
	assert.Equal(t, 180, Activation{}.Retention())
	assert.Equal(t, 30, Activation{RetentionDays: 30}.Retention())
}

func TestAnActivationWithoutTheNewFieldsMarshalsAsBefore(t *testing.T) {
	a, err := DecodeActivation([]byte(goodActivation))
	require.NoError(t, err)
	b, err := json.Marshal(a)
	require.NoError(t, err)
	assert.JSONEq(t, goodActivation, string(b))

	a.RetentionDays, a.Actalike = 7, &Actalike{Country: "CA", Percentage: 3}
	b, err = json.Marshal(a)
	require.NoError(t, err)
	back, err := DecodeActivation(b)
	require.NoError(t, err)
	assert.Equal(t, a, back)
	assert.Contains(t, string(b), `"retention_days":7,"actalike":{"country":"CA","percentage":3}`)
}

func TestValidateNeedsAnExplicitMode(t *testing.T) {
	err := Activation{ID: "a", CohortID: "c", Destination: DestinationPinterest}.Validate()
	assert.ErrorContains(t, err, "mode \"\"")
}

func TestDecodeActivationReturnsTheActivationWithItsValidationError(t *testing.T) {
	a, err := DecodeActivation([]byte(`{"id":"a","cohort_id":"c","destination":"facebook"}`))
	require.Error(t, err)
	assert.Equal(t, "a", a.ID, "so that the caller can log which key is bad")
}

func TestResolveTag(t *testing.T) {
	for _, tc := range []struct {
		name       string
		override   string
		wantTag    string
		wantSource TagSource
	}{
		{"a blank override uses the default", "", "111", TagSourceDefault},
		{"a whitespace override uses the default", " \t\n", "111", TagSourceDefault},
		{"an override wins over the default", "222", "222", TagSourceOverride},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tag, source := ResolveTag(tc.override, "111")
			assert.Equal(t, tc.wantTag, tag)
			assert.Equal(t, tc.wantSource, source)
		})
	}
}

func FuzzDecodeActivation(f *testing.F) {
	for _, s := range []string{goodActivation, `{"id":"a","cohort_id":"c","destination":"pinterest"}`,
		`{"tagid":"1"}`, `null`, `{"id":"a","cohort_id":"c","destination":"pinterest","mode":"customer_list","actalike":{"country":"US","percentage":1}}`, `[]`, goodActivation + ` {}`, `{"id":".a"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := DecodeActivation(data)
		if err == nil {
			require.NoError(t, a.Validate())
			require.Contains(t, []Mode{ModeEvents, ModeCustomerList}, a.Mode)
		}
	})
}
