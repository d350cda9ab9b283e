package cohorts

import (
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
		{name: "the mode customer_list is rejected for now",
			input:   `{"id":"a","cohort_id":"c","destination":"pinterest","mode":"customer_list"}`,
			wantErr: `mode "customer_list": not supported; the only mode so far is "events"`},
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
	err := Activation{ID: "a b", CohortID: "", Destination: "facebook", Mode: "customer_list", TagID: "x"}.Validate()
	require.Error(t, err)
	for _, field := range []string{"id ", "cohort_id", "destination", "mode", "tag_id"} {
		assert.Contains(t, err.Error(), field)
	}
	assert.Len(t, strings.Split(err.Error(), "\n"), 5)
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
		`{"tagid":"1"}`, `null`, `[]`, goodActivation + ` {}`, `{"id":".a"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := DecodeActivation(data)
		if err == nil {
			require.NoError(t, a.Validate())
			require.Equal(t, ModeEvents, a.Mode)
		}
	})
}
