package pinterest

import (
	"context"
	"net/http"

	"github.com/cohort-connector/cohort-connector/destinations"
)

// The calls of this file check an account's set-up (cohort-connector
// doctor); the daemon's path never makes them.

// ConversionTags lists the conversion tags of the ad account, under its
// OAuth token (the spec's conversion_tags/list, scope ads:read: a
// conversion token is not accepted). The list is one answer, not paged
// (the spec's response has items and no bookmark). Deleted tags are
// included (filter_deleted is left at its default, false), so that a Tag
// ID deleted in Pinterest is told from one that was never the account's.
func (c *Client) ConversionTags(ctx context.Context, adAccountID string) ([]ConversionTagWire, error) {
	var out struct {
		Items []ConversionTagWire `json:"items"`
	}
	err := c.adsCall(ctx, adAccountID, http.MethodGet, nil, nil, &out, "conversion_tags")
	return out.Items, err
}

// TestEvent sends one event with ?test=true under the account's events
// credential, as Send would: Pinterest checks the token and the event and
// records nothing. It returns Pinterest's verdict on the event; the error
// is that of the call (a refused token is ReasonAuth).
func (c *Client) TestEvent(ctx context.Context, adAccountID string, it destinations.Item) (destinations.ItemResult, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	cred, err := c.eventsCredential(ctx, adAccountID)
	if err != nil {
		return destinations.ItemResult{}, err
	}
	body := encodeEvents([]destinations.Item{it}, []int{0}).body(0, 1)
	out := make([]destinations.ItemResult, 1)
	err = c.postEventsTo(ctx, adAccountID, cred, body, out, true)
	return out[0], err
}
