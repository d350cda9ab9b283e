package pinterest_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/destinations"
	"github.com/cohort-connector/cohort-connector/destinations/pinterest"
)

func TestRedirectsAreNeverFollowed(t *testing.T) {
	for _, code := range []int{301, 302, 307, 308} {
		t.Run(fmt.Sprintf("a %d to another server is a destination fault, sent once, and the other server never hears of it", code), func(t *testing.T) {
			t.Parallel()
			// elsewhere is where the redirect points: another host:port.
			var called, sawToken atomic.Bool
			elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				called.Store(true)
				sawToken.Store(r.Header.Get("Authorization") != "")
				writeJSON(w, http.StatusOK, processedAnswer(10))
			}))
			t.Cleanup(elsewhere.Close)
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request, _ int, _ pinterest.EventsRequest) {
				http.Redirect(w, r, elsewhere.URL+r.URL.Path, code)
			})

			res, err := newClient(t, testConfig(srv.URL)).Send(context.Background(), batch(10))

			assert.False(t, called.Load(), "the redirect target was called")
			assert.False(t, sawToken.Load(), "the redirect target received the Authorization header")
			assert.Equal(t, 1, srv.seen(), "one request for the batch: a redirect is neither retried nor bisected")
			assert.Empty(t, res.Items)
			de := destErr(t, err)
			assert.True(t, de.Reason.DestinationFault(), "reason %q of %v must be a destination fault", de.Reason, err)
			assert.NotEqual(t, destinations.ReasonBadInput, de.Reason)
			assert.Equal(t, destinations.ReasonRedirect, de.Reason)
			assert.Equal(t, code, de.StatusCode)
			assert.Contains(t, err.Error(), elsewhere.URL, "the error says where the redirect pointed")
			require.NotContains(t, err.Error(), token)
		})
	}
}

func TestALongRetryAfterIsCappedAtMaxRetryAfter(t *testing.T) {
	const limit = 300 * time.Millisecond
	srv := newServer(t, script(reply{status: 429, retryAfter: "86400"}, reply{status: 200}))
	cfg := testConfig(srv.URL)
	cfg.MaxRetryAfter = limit
	c := newClient(t, cfg)

	_, err := c.Send(context.Background(), batch(1))
	de := destErr(t, err)
	assert.Equal(t, destinations.ReasonRateLimited, de.Reason)
	assert.Equal(t, limit, de.RetryAfter, "a Retry-After of a day is capped")
	assert.Equal(t, limit, destinations.RetryAfterOf(err), "the connector's nak delay reads the capped value")

	// The account is paused for the cap, not for a day: it answers again
	// within a deadline, and no refusal in between asks for longer.
	var longest time.Duration
	require.Eventually(t, func() bool {
		_, err := c.Send(context.Background(), batch(1))
		if err != nil {
			longest = max(longest, destinations.RetryAfterOf(err))
		}
		return err == nil
	}, 3*time.Second, 20*time.Millisecond, "the account is still paused")
	assert.LessOrEqual(t, longest, limit)
	assert.Equal(t, 2, srv.seen(), "the 429, then the 200 once the pause was over")
}
