package cohorts

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEventID(t *testing.T) {
	base := Membership{UserID: "u123", CohortID: "c123", Action: ActionEnter,
		TS: time.Date(2026, 11, 22, 19, 5, 1, 123456789, time.UTC)}
	id := base.EventID()

	t.Run("the same membership gets the same id", func(t *testing.T) {
		again := base
		again.Identifiers = Identifiers{Email: "x@example.com"} // identifiers are not part of the id
		assert.Equal(t, id, again.EventID())
	})
	t.Run("the id ends with colon and the ts in Unix nanoseconds", func(t *testing.T) {
		suffix := ":" + strconv.FormatInt(base.TS.UnixNano(), 10)
		require.True(t, strings.HasSuffix(id, suffix), id)
		assert.Regexp(t, `^[0-9a-f]{32}:[0-9]+$`, id)
	})
	t.Run("the same instant in another zone gets the same id", func(t *testing.T) {
		other := base
		other.TS = base.TS.In(time.FixedZone("CET", 3600))
		assert.Equal(t, id, other.EventID())
	})

	for _, tc := range []struct {
		name   string
		change func(*Membership)
	}{
		{"a different action gets a different id", func(m *Membership) { m.Action = ActionExit }},
		{"a ts one nanosecond later gets a different id", func(m *Membership) { m.TS = m.TS.Add(time.Nanosecond) }},
		{"a different user gets a different id", func(m *Membership) { m.UserID = "u124" }},
		{"a different cohort gets a different id", func(m *Membership) { m.CohortID = "c124" }},
		{"moving a character between user and cohort gets a different id", func(m *Membership) {
			m.UserID, m.CohortID = "u12", "3c123"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := base
			tc.change(&m)
			assert.NotEqual(t, id, m.EventID())
		})
	}
}

func TestEventIDMatchesItsDocumentedFormat(t *testing.T) {
	m := Membership{UserID: "u", CohortID: "c", Action: ActionExit, TS: time.Unix(0, 1700000000123456789)}
	// sha256("u\x00c\x00exit\x001700000000123456789")[:16] as hex.
	want := HashValue("u\x00c\x00exit\x001700000000123456789")[:32] + ":1700000000123456789"
	assert.Equal(t, want, m.EventID())
}
