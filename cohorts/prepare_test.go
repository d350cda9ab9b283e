package cohorts

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// randomIdentifier draws from values that take every way through Prepare:
// empty, blank, padded, mixed case, digests in either case, non-ASCII,
// longer than maxStackFold.
func randomIdentifier(rng *rand.Rand) string {
	digest := "0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789abcdef"
	choices := []string{"", "  ", " User@Example.COM ", "user@example.com", "AAAA-bbbb-CCCC", digest, strings.ToLower(digest),
		" " + digest + "\t", "Ünïcödé@Exämple.com", "ext-ID-42", strings.Repeat("Ab", 200), "ΣΑΣ", "\u00a0x\u00a0"}
	return choices[rng.IntN(len(choices))]
}

// TestPrepareGivesEventIDAndHash: Prepare against EventID and Hash on
// 20,000 random memberships.
func TestPrepareGivesEventIDAndHash(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for i := range 20_000 {
		m := Membership{UserID: randomIdentifier(rng) + "u", CohortID: "c" + randomIdentifier(rng), Action: ActionExit,
			TS: time.Unix(rng.Int64N(4e9), rng.Int64N(1e9)).UTC(),
			Identifiers: Identifiers{Email: randomIdentifier(rng), MAID: randomIdentifier(rng), ExternalID: randomIdentifier(rng),
				IP: randomIdentifier(rng), UserAgent: randomIdentifier(rng)}}
		id, h := m.Prepare()
		require.Equal(t, m.EventID(), id, "membership %d: %+v", i, m)
		require.Equal(t, m.Identifiers.Hash(), h, "membership %d: %+v", i, m)
	}
}
