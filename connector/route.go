package connector

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cohort-connector/cohort-connector/cohorts"
)

// route decodes one delivery, resolves its targets (the ad accounts its
// cohort's activations go to) and hands each target's share to its lane;
// what needs no call is settled at once. It runs on the loop: nothing here
// waits on Pinterest, only on room in a healthy lane.
func (c *Connector) route(msg jetstream.Msg, parkedFor string) {
	c.o.Metrics.received.Inc()
	meta, err := msg.Metadata()
	if err != nil {
		// Not a JetStream message: nothing to settle.
		c.o.Logger.Error().Err(err).Str("subject", msg.Subject()).Msg("message without JetStream metadata ignored")
		return
	}
	d := c.newDelivery(msg, meta, parkedFor, c.o.Now())
	if d.redelivered() {
		c.o.Metrics.redelivered.Inc()
	}
	if parkedFor == "" && !c.forgetExpectedAt.IsZero() && d.received.After(c.forgetExpectedAt) {
		// Every change read back at startup whose AckWait has expired was
		// handed out before this delivery if it was still unacknowledged.
		c.order.forgetExpected()
		c.forgetExpectedAt = time.Time{}
	}

	m, err := cohorts.Decode(msg.Data(), d.received)
	if err == nil {
		err = c.checkSubject(d.origin.subject, m.CohortID)
	}
	if err != nil {
		reason := string(cohorts.DecodeMalformedJSON)
		var de *cohorts.DecodeError
		if errors.As(err, &de) {
			reason = string(de.Reason)
		}
		d.outcome = outcome{kind: kindReject, reason: reason, detail: err.Error()}
		c.settle(d)
		return
	}
	d.cohortID, d.userID = m.CohortID, m.UserID
	items := c.targets(d, m)
	d.pending = len(items)
	if d.pending == 0 {
		c.settle(d)
		return
	}
	for _, it := range items {
		c.enqueue(c.lanes[it.account], it.laneItem)
	}
	if cap(items) > 0 { // targets returns nil without items
		c.routedScratch = items[:0]
		clear(items) // let the scratch hold no delivery
	}
}

// routed is a lane item and the lane it goes to.
type routed struct {
	account string
	laneItem
}

// targets resolves m's targets for d and returns the lane items to send;
// the outcome of what is not sent (not activated, no identifiers, unknown
// Tag ID, waiting for an earlier change) is merged into d.outcome.
func (c *Connector) targets(d *delivery, m cohorts.Membership) []routed {
	targets := c.o.Resolver.Resolve(m)
	if d.parkedFor != "" {
		// Resolve's slice is shared: filtered into a copy.
		targets = slices.DeleteFunc(slices.Clone(targets), func(tg cohorts.Target) bool { return tg.AdAccountID != d.parkedFor })
	}
	first := d.first()
	if first {
		c.countNotActivated(m)
	}
	if len(targets) == 0 {
		d.outcome = outcome{kind: kindDone, reason: reasonNotActivated}
		return nil
	}
	eventID, hashed := m.Prepare()
	matchable := hashed.Matchable()
	if d.redelivered() {
		// Accounts that already accepted this message (or hold a parked
		// copy of it) on an earlier delivery are not charged again.
		d.done = slices.Clone(c.memo[d.origin])
	}
	items := c.routedScratch[:0] // enqueued by value before the next delivery
	var waiting []string         // ad accounts with a customer list not created yet
	for _, tg := range targets {
		ctrs := c.activationCounters(tg.Activation.ID)
		if first {
			ctrs.received.Add(1)
			if matchable {
				ctrs.withIDs.Add(1)
			}
		}
		if !matchable {
			continue
		}
		list, o, send := c.share(d, tg, hashed)
		if o.kind == kindRetry {
			ctrs.held.Add(1)
		}
		if o.reason == reasonAudiencePending {
			waiting = append(waiting, tg.AdAccountID)
		}
		d.outcome = d.outcome.merge(o)
		if send {
			items = addShare(items, d, tg.AdAccountID, list, ctrs)
		}
	}
	if !matchable {
		// Pinterest requires em, hashed_maids or ip+user agent: an event
		// without them would be rejected. Counted (coverage), not sent.
		d.outcome = outcome{kind: kindDone, reason: reasonNoIdentifiers}
		return nil
	}
	items = holdWaiting(items, waiting)
	for _, account := range waiting {
		c.holdPlace(d, account)
	}
	admitted := items[:0]
	for _, r := range items {
		if c.admit(d, &r.laneItem, r.account) {
			admitted = append(admitted, r)
		}
	}
	if len(admitted) > 0 {
		d.eventID, d.membership, d.hashed = eventID, m, hashed
	}
	return admitted
}

// countNotActivated counts m for each disabled activation of its cohort
// it is meant for (all of them, unless m names activation_ids).
func (c *Connector) countNotActivated(m cohorts.Membership) {
	for _, id := range c.o.Resolver.Disabled(m.CohortID) {
		if len(m.ActivationIDs) == 0 || slices.Contains(m.ActivationIDs, id) {
			c.activationCounters(id).notActivated.Add(1)
		}
	}
}

// share decides what target tg takes of delivery d now: send is true with
// the customer list the change goes to ("" for an event); otherwise o is
// the outcome of a target that takes nothing now (an unknown Tag ID, a
// list not created yet, a user no list can hold; an account that already
// took it has none).
func (c *Connector) share(d *delivery, tg cohorts.Target, hashed cohorts.Hashed) (list string, o outcome, send bool) {
	switch {
	case tg.Err != nil || c.lanes[tg.AdAccountID] == nil:
		// The resolver and the lanes come from one configuration: an
		// account without a lane is a wiring bug, which the message
		// must survive like an unknown Tag ID.
		err := tg.Err
		if err == nil {
			err = fmt.Errorf("no lane for ad account %s", tg.AdAccountID)
		}
		return "", outcome{kind: kindRetry, reason: reasonUnknownTag,
			delay:  max(c.o.AuthRetryDelay, c.backoff(d.meta.NumDelivered, 0)),
			detail: fmt.Sprintf("activation %s: tag_id %s: %v", tg.Activation.ID, tg.TagID, err)}, false
	case slices.Contains(d.done, tg.AdAccountID):
		return "", outcome{}, false
	}
	list, ok := c.customerList(tg.Activation)
	switch {
	case !ok:
		return "", outcome{kind: kindRetry, reason: reasonAudiencePending, delay: c.backoff(d.meta.NumDelivered, 0),
			detail: fmt.Sprintf("activation %s: its customer list is not created yet", tg.Activation.ID)}, false
	case list != "" && hashed.Em == "" && hashed.HashedMAID == "":
		// A customer list takes emails and mobile ad ids only: a user
		// known by IP and user agent cannot be in it. Counted
		// (coverage), not sent, and not an error of the message.
		if d.first() {
			c.activationCounters(tg.Activation.ID).noListIDs.Add(1)
		}
		return "", outcome{kind: kindDone, reason: reasonNoListIdentifiers}, false
	}
	return list, outcome{}, true
}

// holdWaiting drops the items of the ad accounts in waiting: a delivery
// goes to an ad account whole or not at all. Were its event accepted while
// its customer list does not exist yet, the account would count as done
// for it (the memo), and its redelivery would never reach the list. So the
// whole share waits, redelivered, until the list exists (normally seconds
// after the activation is enabled).
func holdWaiting(items []routed, waiting []string) []routed {
	if len(waiting) == 0 {
		return items
	}
	return slices.DeleteFunc(items, func(r routed) bool {
		if !slices.Contains(waiting, r.account) {
			return false
		}
		r.credits.each(func(ctr *activationCounters) { ctr.held.Add(1) })
		return true
	})
}

// addShare adds a target's share to items. Several activations of the
// cohort may route to one ad account: one item goes there (one event, and
// an operation per customer list), and each activation is credited.
func addShare(items []routed, d *delivery, account, list string, ctrs *activationCounters) []routed {
	i := slices.IndexFunc(items, func(r routed) bool { return r.account == account })
	if i < 0 {
		items = append(items, routed{account: account, laneItem: laneItem{d: d, parkable: d.parkedFor == "", listsOnly: true}})
		i = len(items) - 1
	}
	items[i].credits.add(ctrs)
	if list == "" {
		items[i].listsOnly = false
	} else {
		items[i].lists = append(items[i].lists, list)
	}
	return items
}

// customerList is the customer list a's changes are mirrored to: "" for an
// activation in events mode; false when a is in customer_list mode and its
// list does not exist yet (the audience manager creates it).
func (c *Connector) customerList(a cohorts.Activation) (string, bool) {
	if a.Mode != cohorts.ModeCustomerList {
		return "", true
	}
	if c.o.CustomerLists == nil {
		return "", false
	}
	id := c.o.CustomerLists(a.ID)
	return id, id != ""
}

// admit asks the order book whether d may go to account now. A change
// behind a parked one is parked too (it), one behind a change in flight or
// waiting for redelivery waits (false, with its outcome merged into d).
func (c *Connector) admit(d *delivery, it *laneItem, account string) bool {
	k := orderKey{account, d.cohortID, d.userID}
	ok, wait, behindParked := c.order.admit(k, d.origin.seq, d.received)
	switch {
	case ok:
	case behindParked && it.parkable && c.o.Topology.ParkingStream != "":
		c.order.hold(k, d.origin.seq, d.received)
		it.mustPark = true
	default:
		c.holdPlace(d, account)
		d.outcome = d.outcome.merge(outcome{kind: kindRetry, reason: reasonWaitingForEarlier, delay: wait,
			detail: "an earlier change of this user in this cohort is not settled yet at ad account " + account})
		return false
	}
	d.ordered = append(d.ordered, account)
	return true
}

// holdPlace keeps d's place in the order of account while its share there
// is not sent now but waits for redelivery (see orderBook.hold): settleOrder
// then records when it is due back.
func (c *Connector) holdPlace(d *delivery, account string) {
	c.order.hold(orderKey{account, d.cohortID, d.userID}, d.origin.seq, d.received)
	d.ordered = append(d.ordered, account)
}

// checkSubject decides a body/subject mismatch: a message published on
// <prefix><cohort_id> (the prefix of a configured subject ending in ">"),
// with exactly one token after the prefix, must carry that cohort_id: the
// body must not silently route it elsewhere. Other subject layouts are
// routed by the body alone.
func (c *Connector) checkSubject(subject, cohortID string) error {
	for _, s := range c.o.Topology.Subjects {
		prefix, ok := strings.CutSuffix(s, ">")
		if !ok || !strings.HasPrefix(subject, prefix) {
			continue
		}
		token := subject[len(prefix):]
		if token == "" || strings.Contains(token, ".") || token == cohortID {
			return nil
		}
		return &cohorts.DecodeError{Reason: cohorts.DecodeInvalidField, Field: "cohort_id",
			Detail: fmt.Sprintf("%q differs from the subject's %q (%s)", cohortID, token, subject)}
	}
	return nil
}

// enqueue hands it to l. A healthy lane that is full makes the loop wait
// (back-pressure), settling what the lanes report meanwhile; lanes never
// wait on the loop for long, since a failing or congested lane holds its
// batches instead of queueing them.
func (c *Connector) enqueue(l *lane, it laneItem) {
	select {
	case l.in <- it:
		return
	default:
	}
	for {
		select {
		case l.in <- it:
			return
		case r := <-c.results:
			c.apply(r)
		case now := <-c.beat.C:
			c.turned.Store(now.UnixNano())
		}
	}
}
