package pinterest

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/destinations"
)

// fuzzString is a random string drawn from pieces that exercise every rule
// of JSON string encoding: plain text, quotes and backslashes, control
// characters, HTML characters, multi-byte UTF-8, the line and paragraph
// separators, and invalid UTF-8.
func fuzzString(rng *rand.Rand) string {
	pieces := []string{"", "a", "user-42", "Bench.User@Example.com", `"`, `\`, "\b", "\f", "\n", "\r", "\t", "\x00", "\x1f", "\x7f",
		"<", ">", "&", "é", "日本", "😀", "\u2028", "\u2029", "\xff", "\xc3", "\xe2\x80", " ", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
	var s string
	for range rng.IntN(6) {
		s += pieces[rng.IntN(len(pieces))]
	}
	return s
}

func fuzzItem(rng *rand.Rand) destinations.Item {
	maybe := func() string {
		if rng.IntN(3) == 0 {
			return ""
		}
		return fuzzString(rng)
	}
	action := cohorts.ActionEnter
	if rng.IntN(2) == 0 {
		action = cohorts.ActionExit
	}
	ts := time.Unix(rng.Int64N(4_000_000_000)-500_000_000, rng.Int64N(1e9)).UTC()
	return destinations.Item{
		EventID:    fuzzString(rng),
		Membership: cohorts.Membership{UserID: fuzzString(rng), CohortID: fuzzString(rng), Action: action, TS: ts},
		Hashed:     cohorts.Hashed{Em: maybe(), HashedMAID: maybe(), ExternalID: maybe(), ClientIP: maybe(), UserAgent: maybe()},
	}
}

// TestAppendEventWritesWhatJSONMarshalWrites: the fast encoder against
// the reference (json.Marshal of NewEvent) on 50,000 random items.
func TestAppendEventWritesWhatJSONMarshalWrites(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var buf []byte
	for i := range 50_000 {
		it := fuzzItem(rng)
		want, err := json.Marshal(NewEvent(it))
		require.NoError(t, err)
		buf = appendEvent(buf[:0], it)
		require.Equal(t, string(want), string(buf), "item %d: %#v", i, it)
	}
}

func FuzzAppendEvent(f *testing.F) {
	f.Add("id:1", "cohort", "u1", "em", "", "", "1.2.3.4", "ua", int64(1764460800), true)
	f.Add("\xff<\u2028", "c\n", "", "", "m", "x\"", "", "", int64(-1), false)
	f.Fuzz(func(t *testing.T, id, cohort, user, em, maid, ext, ip, ua string, sec int64, enter bool) {
		action := cohorts.ActionExit
		if enter {
			action = cohorts.ActionEnter
		}
		it := destinations.Item{EventID: id,
			Membership: cohorts.Membership{UserID: user, CohortID: cohort, Action: action, TS: time.Unix(sec%(1<<40), 0)},
			Hashed:     cohorts.Hashed{Em: em, HashedMAID: maid, ExternalID: ext, ClientIP: ip, UserAgent: ua}}
		want, err := json.Marshal(NewEvent(it))
		if err != nil {
			t.Skip()
		}
		if got := appendEvent(nil, it); string(got) != string(want) {
			t.Fatalf("appendEvent:\n%s\njson.Marshal:\n%s", got, want)
		}
	})
}

// TestEncodedEventsBodyIsTheEventsRequest: any range of a batch (as bisect
// asks for) is the json.Marshal of the EventsRequest of those events.
func TestEncodedEventsBodyIsTheEventsRequest(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	items := make([]destinations.Item, 40)
	var idx []int
	for i := range items {
		items[i] = fuzzItem(rng)
		if i%3 != 0 { // a batch's events are some of its items
			idx = append(idx, i)
		}
	}
	enc := encodeEvents(items, idx)
	for _, r := range [][2]int{{0, len(idx)}, {0, 1}, {5, 6}, {3, 17}, {len(idx) - 1, len(idx)}} {
		events := make([]Event, 0, r[1]-r[0])
		for _, i := range idx[r[0]:r[1]] {
			events = append(events, NewEvent(items[i]))
		}
		want, err := json.Marshal(EventsRequest{Data: events})
		require.NoError(t, err)
		require.Equal(t, string(want), string(enc.body(r[0], r[1])), "events %d..%d", r[0], r[1]-1)
	}
}

// BenchmarkHotPath is the per-message work from the message's bytes to its
// event in the request body: decode, resolve, hash (and event id), encode.
// Run with -benchmem: allocs/op is allocations per message.
//
//	go test -run XXX -bench HotPath -benchmem ./destinations/pinterest/
func BenchmarkHotPath(b *testing.B) {
	const cohortsN = 200
	r, err := cohorts.NewResolver("2612345678901", map[string]string{"2612345678901": "549755885175"})
	require.NoError(b, err)
	msgs := make([][]byte, 1000)
	for i := range cohortsN {
		r.Put(cohorts.Activation{ID: fmt.Sprintf("act-%d", i), CohortID: fmt.Sprintf("cohort-%d", i),
			Destination: cohorts.DestinationPinterest, Enabled: true, Mode: cohorts.ModeEvents})
	}
	ts := time.Now().Add(-time.Minute).UTC()
	for i := range msgs {
		msgs[i] = fmt.Appendf(nil, `{"user_id":"user-%07d","cohort_id":"cohort-%d","action":"enter","ts":%q,"identifiers":{"email":"Bench.User%d@Example.com"}}`,
			i, i%cohortsN, ts.Add(time.Duration(i)).Format(time.RFC3339Nano), i)
	}
	buf := make([]byte, 0, 1<<20)
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if i%1000 == 0 {
			buf = buf[:0]
		}
		m, err := cohorts.Decode(msgs[i%len(msgs)], now)
		if err != nil {
			b.Fatal(err)
		}
		targets := r.Resolve(m)
		if len(targets) != 1 {
			b.Fatalf("%d targets", len(targets))
		}
		id, hashed := m.Prepare()
		buf = append(appendEvent(buf, destinations.Item{EventID: id, Membership: m, Hashed: hashed}), ',')
	}
}

// TestTheHotPathAllocatesTwiceAMessage: what BenchmarkHotPath measures,
// as a check that cannot drift unnoticed.
func TestTheHotPathAllocatesTwiceAMessage(t *testing.T) {
	r, err := cohorts.NewResolver("2612345678901", map[string]string{"2612345678901": "549755885175"})
	require.NoError(t, err)
	require.NoError(t, r.Put(cohorts.Activation{ID: "act", CohortID: "cohort-1", Destination: cohorts.DestinationPinterest, Enabled: true, Mode: cohorts.ModeEvents}))
	msg := []byte(`{"user_id":"user-0000001","cohort_id":"cohort-1","action":"enter","ts":"2026-11-30T05:00:00.000000001Z","identifiers":{"email":"Bench.User1@Example.com"}}`)
	now := time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)
	buf := make([]byte, 0, 4096)
	allocs := testing.AllocsPerRun(1000, func() {
		m, err := cohorts.Decode(msg, now)
		if err != nil || len(r.Resolve(m)) != 1 {
			t.Fatal("decode or resolve failed")
		}
		id, hashed := m.Prepare()
		buf = appendEvent(buf[:0], destinations.Item{EventID: id, Membership: m, Hashed: hashed})
	})
	assert.LessOrEqual(t, allocs, 2.0)
}
