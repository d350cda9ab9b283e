package main

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/connector"
)

// statusReport is what /status answers (JSON) and / shows (HTML): one row
// per activation, a line per ad account and the pipeline's backlog, from
// what the daemon saw and what Pinterest reported. The field names are a
// contract for scripts.
type statusReport struct {
	GeneratedAt time.Time          `json:"generated_at"`
	Version     string             `json:"version"`
	Ready       bool               `json:"ready"`
	Activations []activationStatus `json:"activations"`
	Accounts    []accountStatus    `json:"accounts"`
	Pipeline    pipelineStatus     `json:"pipeline"`
}

type activationStatus struct {
	ID          string `json:"id"`
	CohortID    string `json:"cohort_id"`
	Mode        string `json:"mode"`
	Enabled     bool   `json:"enabled"`
	TagID       string `json:"tag_id"`
	TagSource   string `json:"tag_source"`    // default or override
	AdAccountID string `json:"ad_account_id"` // "" when the Tag ID has no account
	// AccountState is the ad account's state (connector.AccountStates:
	// healthy, auth_failing, failing, throttled, token_expiring); ""
	// without an account.
	AccountState string `json:"account_state"`
	// Problem says why the activation cannot be delivered ("" when it can).
	Problem string `json:"problem,omitempty"`
	// Received: memberships routed to it; WithIdentifiers: of those, the
	// matchable ones; Sent: events Pinterest gave a verdict on, Accepted
	// or Rejected; Held: not sent as they came (parked, redelivered).
	Received        int64   `json:"received"`
	WithIdentifiers int64   `json:"with_identifiers"`
	Sent            int64   `json:"sent"`
	Accepted        int64   `json:"accepted"`
	Rejected        int64   `json:"rejected"`
	Held            int64   `json:"held"`
	Acceptance      float64 `json:"acceptance"` // accepted / sent
	Coverage        float64 `json:"coverage"`   // with identifiers / received
	// Audience is the Pinterest audience, nil while it has none.
	Audience *audienceStatus `json:"audience,omitempty"`
	// AudienceProblem is why the daemon could not make or keep the
	// audience (Pinterest refused to create it, no OAuth app), "" when
	// there is none.
	AudienceProblem string `json:"audience_problem,omitempty"`
	// Users are the distinct users put into the audience; MatchRate is
	// the audience size over them. Nil while unknown.
	Users     *uint64                    `json:"users,omitempty"`
	MatchRate *float64                   `json:"match_rate,omitempty"`
	LastError *connector.ActivationError `json:"last_error,omitempty"`
}

type audienceStatus struct {
	ID     string `json:"id"`
	Type   string `json:"type"`
	Status string `json:"status"`
	Size   *int64 `json:"size,omitempty"` // nil until Pinterest reports one
}

type accountStatus struct {
	AdAccountID  string    `json:"ad_account_id"`
	Name         string    `json:"name"` // as in CONNECTOR_ACCOUNTS
	TagIDs       []string  `json:"tag_ids"`
	State        string    `json:"state"`
	FailingSince time.Time `json:"failing_since,omitzero"`
	Error        string    `json:"error,omitempty"`
	// CallBudgetPerMinute is the calls a minute it may make now (lowered
	// after a 429, restored as calls succeed).
	CallBudgetPerMinute float64 `json:"call_budget_per_minute"`
}

type pipelineStatus struct {
	Stream   string `json:"stream"`
	Consumer string `json:"consumer"`
	// Pending: in the stream, not delivered yet; AckPending: delivered,
	// not settled; -1 when JetStream could not be asked.
	Pending     int64 `json:"pending"`
	AckPending  int64 `json:"ack_pending"`
	DeadLetters int64 `json:"dead_letters"` // messages in the dead-letter stream; -1: unknown
}

// statusTimeout bounds the JetStream reads of one report.
const statusTimeout = 3 * time.Second

// status gathers the report.
func (d *daemon) status(ctx context.Context) statusReport {
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	code, _ := checkReport(d.readinessChecks(), "", "")
	r := statusReport{GeneratedAt: time.Now().UTC(), Version: thisBuild().Version, Ready: code == http.StatusOK}
	accounts := d.accountHealth()
	for _, a := range d.cfg.AccountList {
		h := accounts[a.AdAccountID]
		as := accountStatus{AdAccountID: a.AdAccountID, Name: a.Name, TagIDs: a.TagIDs, State: string(h.State),
			FailingSince: h.Since, CallBudgetPerMinute: d.client.CallsPerMinute(a.AdAccountID)}
		if h.Err != nil {
			as.Error = h.Err.Error()
		}
		r.Accounts = append(r.Accounts, as)
	}
	views, _ := readAudienceViews(ctx, d.objs.State, d.audiences.sketches, d.resolver.List())
	r.Activations = d.activationRows(views, accounts)
	r.Pipeline = pipelineStatus{Stream: d.cfg.Stream, Consumer: d.cfg.Durable, Pending: -1, AckPending: -1, DeadLetters: -1}
	if ci, err := d.objs.Consumer.Info(ctx); err == nil {
		r.Pipeline.Pending, r.Pipeline.AckPending = int64(ci.NumPending), int64(ci.NumAckPending)
	}
	if si, err := d.objs.DLQ.Info(ctx); err == nil {
		r.Pipeline.DeadLetters = int64(si.State.Msgs)
	}
	return r
}

// activationRows are the rows of every activation, by id, from the
// connector's counts, the audience views and the accounts' health.
func (d *daemon) activationRows(views map[string]audienceView, accounts map[string]connector.AccountHealth) []activationStatus {
	list := d.resolver.List()
	slices.SortFunc(list, func(a, b cohorts.Activation) int { return cmp.Compare(a.ID, b.ID) })
	snap := d.stats.Snapshot()
	rows := make([]activationStatus, 0, len(list))
	for _, a := range list {
		rows = append(rows, d.activationStatus(a, snap[a.ID], views[a.ID], accounts))
	}
	return rows
}

// accountHealth is each ad account's health, by id.
func (d *daemon) accountHealth() map[string]connector.AccountHealth {
	out := map[string]connector.AccountHealth{}
	for _, h := range d.conn.Accounts() {
		out[h.AdAccountID] = h
	}
	return out
}

// activationStatus is one activation's row.
func (d *daemon) activationStatus(a cohorts.Activation, c connector.ActivationCounts, v audienceView, accounts map[string]connector.AccountHealth) activationStatus {
	t := d.resolver.Target(a)
	s := activationStatus{ID: a.ID, CohortID: a.CohortID, Mode: string(a.Mode), Enabled: a.Enabled,
		TagID: t.TagID, TagSource: string(t.TagSource), AdAccountID: t.AdAccountID,
		Received: c.Received, WithIdentifiers: c.WithIdentifiers, Sent: c.Sent, Accepted: c.Processed,
		Rejected: c.Failed, Held: c.Held, Acceptance: c.Acceptance(), Coverage: c.Coverage(), LastError: c.LastError}
	if t.Err != nil {
		s.Problem = t.Err.Error()
	} else {
		s.AccountState = string(accounts[t.AdAccountID].State)
	}
	if d.audiences.manager != nil {
		s.AudienceProblem = d.audiences.manager.Problem(a.ID)
	}
	if v.found && v.rec.AudienceID != "" {
		s.Audience = &audienceStatus{ID: v.rec.AudienceID, Type: v.rec.AudienceType, Status: v.status()}
		if v.rec.SizeKnown {
			size := v.rec.Size
			s.Audience.Size = &size
		}
	}
	if v.known {
		users := v.users
		s.Users = &users
		if s.Audience != nil && s.Audience.Size != nil && users > 0 {
			rate := float64(*s.Audience.Size) / float64(users)
			s.MatchRate = &rate
		}
	}
	return s
}

// serveStatus answers /status with the report as JSON.
func (d *daemon) serveStatus(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(d.status(r.Context()))
}

const statusUsage = `Usage: cohort-connector status [--json] [--url URL]

Prints the status of a running daemon, read from its /status: one row per
activation (where it goes, what Pinterest accepted, its audience and match
rate, its last error), a line per ad account and the pipeline's backlog.
The daemon is at --url, default http://CONNECTOR_LISTEN_ADDR (127.0.0.1:9464).
Needs no other configuration.

Flags:
  --json      the report as JSON, as /status answers it
  --url URL   the daemon's listener
`

// runStatus is the status command.
func runStatus(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), statusUsage) }
	asJSON := fs.Bool("json", false, "")
	url := fs.String("url", "", "")
	if help, err := parseFlags(fs, args, stdout); help || err != nil {
		return err
	}
	if *url == "" {
		*url = "http://" + cmp.Or(os.Getenv("CONNECTOR_LISTEN_ADDR"), "127.0.0.1:9464")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(*url, "/")+"/status", nil)
	if err != nil {
		return fmt.Errorf("status: --url %q: %w", *url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("status: no daemon answers at %s (is it running, with CONNECTOR_LISTEN_ADDR set?): %w", *url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("status: reading %s/status: %w", *url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status: %s/status answered %s", *url, resp.Status)
	}
	if *asJSON {
		_, err := stdout.Write(body)
		return err
	}
	var r statusReport
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("status: %s/status is not a status report: %w", *url, err)
	}
	printStatus(stdout, r)
	return nil
}

// printStatus prints the report as tables.
func printStatus(w io.Writer, r statusReport) {
	ready := "ready"
	if !r.Ready {
		ready = "NOT READY (see /readyz)"
	}
	fmt.Fprintf(w, "cohort-connector %s, %s, at %s\n\n", r.Version, ready, r.GeneratedAt.Format(time.RFC3339))
	printActivationTable(w, r.Activations)
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "AD ACCOUNT\tNAME\tTAG IDS\tSTATE\tSINCE\tCALL BUDGET/MIN\tERROR")
	for _, a := range r.Accounts {
		since := "-"
		if !a.FailingSince.IsZero() {
			since = a.FailingSince.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.0f\t%s\n", a.AdAccountID, a.Name, strings.Join(a.TagIDs, ","), a.State,
			since, a.CallBudgetPerMinute, cmp.Or(oneLine(a.Error, 100), "-"))
	}
	tw.Flush()
	p := r.Pipeline
	fmt.Fprintf(w, "\npipeline %s/%s: waiting %s, in flight %s, dead letters %s\n", p.Stream, p.Consumer,
		known(p.Pending), known(p.AckPending), known(p.DeadLetters))
}

// printActivationTable prints one row per activation: where it goes, what
// Pinterest did with its changes, its audience and match rate, its
// account's state and its last error. The demo prints it too.
func printActivationTable(w io.Writer, rows []activationStatus) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ACTIVATION\tCOHORT\tTAG\tSOURCE\tAD ACCOUNT\tMODE\tON\tRECEIVED\tSENT\tACCEPTED\tREJECTED\tACCEPTANCE\tCOVERAGE\tAUDIENCE\tSTATUS\tSIZE\tUSERS\tMATCH RATE\tACCOUNT\tLAST ERROR")
	for _, a := range rows {
		audience, status, size := "-", "-", "-"
		if a.Audience != nil {
			audience, status = a.Audience.ID+" "+a.Audience.Type, a.Audience.Status
			if a.Audience.Size != nil {
				size = fmt.Sprint(*a.Audience.Size)
			}
		} else if a.AudienceProblem != "" {
			status = "not created"
		}
		users, rate := "-", "-"
		if a.Users != nil {
			users = fmt.Sprint(*a.Users)
		}
		if a.MatchRate != nil {
			rate = fmt.Sprintf("%.1f%%", 100**a.MatchRate)
		}
		account, lastErr := cmp.Or(a.AccountState, "-"), "-"
		if a.Problem != "" {
			account = "problem: " + a.Problem
		}
		if e := a.LastError; e != nil {
			lastErr = fmt.Sprintf("%s %s: %s", e.At.Format(time.RFC3339), e.Reason, oneLine(e.Detail, 80))
		} else if a.AudienceProblem != "" {
			lastErr = "audience: " + oneLine(a.AudienceProblem, 120)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%t\t%d\t%d\t%d\t%d\t%.1f%%\t%.1f%%\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			a.ID, a.CohortID, a.TagID, a.TagSource, cmp.Or(a.AdAccountID, "-"), a.Mode, a.Enabled, a.Received, a.Sent, a.Accepted,
			a.Rejected, 100*a.Acceptance, 100*a.Coverage, audience, status, size, users, rate, account, lastErr)
	}
	tw.Flush()
}

// known is n, or "?" when it could not be read (-1).
func known(n int64) string {
	if n < 0 {
		return "?"
	}
	return fmt.Sprint(n)
}

// oneLine is s on one line, cut to n bytes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}
