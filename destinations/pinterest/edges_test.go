package pinterest_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
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

func TestResponseBodiesNeverRevealTheTokens(t *testing.T) {
	const otherAcct, otherToken = "987654321012", "pina_OTHERaccountSECRET42"
	// longBody pads a plain-text body so that the token straddles the point
	// where the client truncates a message (200 bytes): its first 10
	// characters are inside.
	const header = " Authorization: Bearer "
	longBody := strings.Repeat("x", 200-len(header)-10) + header + token
	for _, tc := range []struct {
		name    string
		respond responder
		items   int
	}{
		{name: "a 400 whose message echoes the token rejects the item without the token",
			respond: script(reply{status: 400, body: `{"code":1,"message":"invalid token ` + token + `"}`})},
		{name: "a 400 whose plain body echoes the Authorization header is cut without leaving part of the token",
			respond: script(reply{status: 400, body: longBody})},
		{name: "a 401 whose message echoes the Authorization header fails without the token",
			respond: script(reply{status: 401, body: `{"code":2,"message":"Authentication failed for Authorization: Bearer ` + token + `"}`})},
		{name: "a 502 page of a proxy echoing the request headers fails without the token",
			respond: script(reply{status: 502, body: "<html><pre>Authorization: Bearer " + token + "\nHost: api.pinterest.com</pre></html>"})},
		{name: "a 401 echoing another account's token fails without that token either",
			respond: script(reply{status: 401, body: `{"code":2,"message":"token ` + otherToken + ` is not valid for this account"}`})},
		{name: "a 400 echoing the first characters of the token at its end fails without them",
			respond: script(reply{status: 400, body: `{"code":1,"message":"bad credential ` + token[:16] + `"}`})},
		{name: "a 200 whose failed and warning messages echo the token rejects and warns without it",
			items: 2,
			respond: script(reply{status: 200, body: `{"num_events_received":2,"num_events_processed":1,"events":[
				{"status":"failed","error_message":"token ` + token + ` may not send this event"},
				{"status":"processed","warning_message":"Bearer ` + token + ` is deprecated"}]}`})},
		{name: "a 200 whose event status echoes the token rejects the item without it",
			respond: script(reply{status: 200, body: `{"events":[{"status":"` + token + `"}]}`})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newServer(t, tc.respond)
			cfg := testConfig(srv.URL)
			cfg.Tokens = map[string]string{acct: token, otherAcct: otherToken}
			cfg.RetryMax = -1

			res, err := newClient(t, cfg).Send(context.Background(), batch(max(tc.items, 1)))

			var texts []string
			if err != nil {
				texts = append(texts, err.Error(), fmt.Sprintf("%+v", err))
			}
			for _, ir := range res.Items {
				texts = append(texts, ir.Error, ir.Warning)
			}
			all := strings.Join(texts, "\n")
			assert.Contains(t, all, "[REDACTED]", "the secret is replaced, not the message dropped")
			for _, secret := range []string{token, otherToken} {
				// The first 8 characters are in any longer fragment too.
				assert.NotContains(t, all, secret[:8], "a fragment of a token")
			}
		})
	}
}
