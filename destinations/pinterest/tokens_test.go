package pinterest_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/destinations"
	"github.com/cohort-connector/cohort-connector/destinations/pinterest"
)

// rotatingToken yields a new token on every call, as an OAuth token that
// is refreshed between calls would.
type rotatingToken struct{ n atomic.Int64 }

func (r *rotatingToken) Token(context.Context) (string, error) {
	return fmt.Sprintf("pina_ROTATED%dsecretXYZ", r.n.Add(1)), nil
}

type failingToken struct{ err error }

func (f failingToken) Token(context.Context) (string, error) { return "", f.err }

func TestSendUsesTheTokenSourceWhenTheAccountHasNoStaticToken(t *testing.T) {
	srv := newAPIServer(t, func(w http.ResponseWriter, r seenRequest) { eventsAnswer(t, w, r) })
	cfg := testConfig(srv.URL)
	cfg.Tokens = nil
	cfg.TokenSources = map[string]destinations.TokenSource{acct: destinations.StaticToken("pina_FROMsource123")}

	res, err := newClient(t, cfg).Send(context.Background(), batch(1))

	require.NoError(t, err)
	assert.Equal(t, allProcessed(1), res.Items)
	assert.Equal(t, "Bearer pina_FROMsource123", srv.requests()[0].Auth)
}

func TestARotatingTokenIsRedactedFromWhatLeavesTheClient(t *testing.T) {
	// The server echoes the token it was sent, in the item's error and in
	// a whole-request error.
	srv := newAPIServer(t, func(w http.ResponseWriter, r seenRequest) {
		tok := r.Auth[len("Bearer "):]
		if len(r.Query["fail"]) > 0 || r.Method == http.MethodGet {
			writeJSON(w, http.StatusForbidden, pinterest.ErrorResponse{Message: "token " + tok[:12] + "… refused"})
			return
		}
		ans := processedAnswer(1)
		ans.Events[0] = pinterest.EventResponse{Status: pinterest.StatusFailed, ErrorMessage: "bad token " + tok}
		writeJSON(w, http.StatusOK, ans)
	})
	cfg := testConfig(srv.URL)
	cfg.Tokens = nil
	rot := &rotatingToken{}
	cfg.TokenSources = map[string]destinations.TokenSource{acct: rot}
	cfg.AdsTokens = map[string]destinations.TokenSource{acct: rot}
	c := newClient(t, cfg)

	res, err := c.Send(context.Background(), batch(1))
	require.NoError(t, err)
	_, getErr := c.GetAudience(context.Background(), acct, "1")

	assert.Equal(t, "bad token [REDACTED]", res.Items[0].Error)
	require.Error(t, getErr)
	assert.NotContains(t, getErr.Error(), "ROTATED", "a cut echo of the call's own token")
}

func TestATokenSourceFailureIsClassified(t *testing.T) {
	srv := newAPIServer(t, func(w http.ResponseWriter, _ seenRequest) { w.WriteHeader(http.StatusOK) })
	for _, tc := range []struct {
		name string
		err  error
		want destinations.Reason
	}{
		{"an unclassified error is an auth failure", errors.New("keeper: refresh failed for pina_LEAKEDtoken99"), destinations.ReasonAuth},
		{"a classified error keeps its reason", &destinations.Error{Reason: destinations.ReasonTimeout}, destinations.ReasonTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(srv.URL)
			cfg.Tokens = nil
			cfg.TokenSources = map[string]destinations.TokenSource{acct: failingToken{tc.err}}

			_, err := newClient(t, cfg).Send(context.Background(), batch(1))

			assert.Equal(t, tc.want, destErr(t, err).Reason)
			assert.NotContains(t, err.Error(), "pina_LEAKED")
		})
	}
	assert.Empty(t, srv.requests())
}

func TestEveryAccountOfTheTokenMapsHasACallBudget(t *testing.T) {
	cfg := testConfig("http://127.0.0.1:1")
	cfg.TokenSources = map[string]destinations.TokenSource{"2": destinations.StaticToken("t")}
	cfg.AdsTokens = map[string]destinations.TokenSource{"3": destinations.StaticToken("t")}
	c := newClient(t, cfg)
	for _, id := range []string{acct, "2", "3"} {
		assert.Positive(t, c.CallsPerMinute(id), id)
	}
	assert.Zero(t, c.CallsPerMinute("4"))
}

// rejectingSource is a TokenSource that records the tokens it is told
// Pinterest refused.
type rejectingSource struct {
	tok      string
	rejected atomic.Pointer[string]
}

func (s *rejectingSource) Token(context.Context) (string, error) { return s.tok, nil }
func (s *rejectingSource) Rejected(tok string)                   { s.rejected.Store(&tok) }

// A 401 tells the token's source which token was refused (an OAuth keeper
// then refreshes at once); a 403 or another failure does not.
func TestA401TellsTheTokenSourceItsTokenWasRefused(t *testing.T) {
	status := atomic.Int64{}
	srv := newAPIServer(t, func(w http.ResponseWriter, _ seenRequest) {
		writeJSON(w, int(status.Load()), pinterest.ErrorResponse{Code: 2, Message: "Authentication failed."})
	})
	for _, tc := range []struct {
		status int
		told   bool
	}{{http.StatusForbidden, false}, {http.StatusInternalServerError, false}, {http.StatusUnauthorized, true}} {
		status.Store(int64(tc.status))
		src := &rejectingSource{tok: "pina_OAUTHaccess123"}
		cfg := testConfig(srv.URL)
		cfg.Tokens, cfg.RetryMax = nil, -1
		cfg.TokenSources = map[string]destinations.TokenSource{acct: src}
		cfg.AdsTokens = map[string]destinations.TokenSource{acct: src}
		c := newClient(t, cfg)
		_, err := c.Send(context.Background(), batch(1))
		require.Error(t, err)
		if !tc.told {
			assert.Nil(t, src.rejected.Load(), "HTTP %d", tc.status)
			continue
		}
		require.NotNil(t, src.rejected.Load(), "HTTP %d", tc.status)
		assert.Equal(t, "pina_OAUTHaccess123", *src.rejected.Load())
		src.rejected.Store(nil)
		_, err = c.ListAudiences(context.Background(), acct)
		require.Error(t, err)
		require.NotNil(t, src.rejected.Load(), "an ads call's 401 tells it too")
	}
}
