package main

import (
	"time"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/connector"
)

// listFigures compare, in customer_list mode, every activation's customer
// list with the changes published to its cohort. Every change of the run
// is a user of its own with one record (the hashed email): a backlog enter
// must have ADDed its record (a member now), a backlog exit must have
// REMOVEd its record (the list's first operation on it, and no member), a
// latency-phase change is an enter.
type listFigures struct {
	// records the lists took, added or removed, repeats included; distinct
	// is how many different records they named (members, and records
	// removed first).
	records  int64
	distinct int
	// missing: backlog changes not applied to their list (an enter whose
	// record is not a member, an exit whose record was never removed; all
	// of a cohort whose list does not exist).
	missing int
	// unexpected: members no enter of the run accounts for.
	unexpected int
	// noList: activations without a customer list at the end.
	noList int
}

// checkLists compares each activation's list, found by the name the daemon
// gives it (connector.AudienceName), with the backlog's changes of its
// cohort and the first published changes of the latency phase. One list is
// held in memory at a time.
func (b *bench) checkLists(published int) *listFigures {
	f := &listFigures{}
	ids := make([]map[string]string, len(b.accounts)) // per account: list name → id
	for i, a := range b.accounts {
		ids[i] = map[string]string{}
		for _, l := range b.sim.Lists(a.adAccountID) {
			ids[i][l.Name] = l.ID
			f.records += int64(l.Uploaded + l.Removed)
		}
	}
	for c := range b.o.cohorts {
		acct := c % len(b.accounts)
		listID := ids[acct][connector.AudienceName(activationID(c), cohortID(c))]
		if listID == "" {
			f.noList++
			for i := c; i < b.o.n; i += b.o.cohorts {
				f.missing++
			}
			continue
		}
		adAccountID := b.accounts[acct].adAccountID
		members := set(b.sim.ListMembers(adAccountID, listID))
		removedFirst := set(b.sim.RemovedFirst(adAccountID, listID))
		f.distinct += len(members)
		for rec := range removedFirst {
			if _, ok := members[rec]; !ok {
				f.distinct++
			}
		}
		accounted := 0 // members an enter of the run accounts for
		for i := c; i < b.o.n; i += b.o.cohorts {
			m := b.backlogMembership(i)
			rec := m.Identifiers.Hash().Em
			_, member := members[rec]
			switch {
			case m.Action == cohorts.ActionEnter && member:
				accounted++
			case m.Action == cohorts.ActionEnter:
				f.missing++
			default:
				if _, ok := removedFirst[rec]; !ok {
					f.missing++
				}
			}
		}
		for k := c; k < published; k += b.o.cohorts {
			if _, ok := members[b.latencyMembership(k, time.Time{}).Identifiers.Hash().Em]; ok {
				accounted++
			}
		}
		f.unexpected += len(members) - accounted
	}
	return f
}

func set(values []string) map[string]struct{} {
	out := make(map[string]struct{}, len(values))
	for _, v := range values {
		out[v] = struct{}{}
	}
	return out
}
