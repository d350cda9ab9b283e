package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/config"
	"github.com/cohort-connector/cohort-connector/connector"
)

const activationsUsage = `Usage: cohort-connector activations COMMAND

Reads and writes the activations bucket (CONNECTOR_ACTIVATIONS_BUCKET) on
CONNECTOR_NATS_URL (empty: the daemon's embedded server at
CONNECTOR_EMBEDDED_NATS_LISTEN). list and get need the accounts' Tag IDs
but no token; every write is checked against the daemon's whole
configuration: an activation whose Tag ID no account owns is refused, and
nothing is written.

Commands:
  list                       every key as the daemon uses it: the activation in force
                             (a key whose newest value is invalid falls back to its
                             newest valid revision), the revision, the resolved Tag ID
                             and ad account, and any problem
  get ID                     one activation as JSON
  put JSON | put -f FILE     create or replace an activation (JSON as in the README)
  put --id ID --cohort C [--tag T] [--disabled] [--mode events|customer_list]
      [--retention-days N] [--actalike-country US|CA|GB --actalike-percentage P]
                             the same from flags (destination pinterest; mode
                             events by default; retention in days 1-540, events
                             only, default 180; actalike percentage 1-10)
  enable ID | disable ID     toggle an activation
  delete ID                  remove an activation

The same JSON written with "nats kv put <bucket> <id> '<json>'" works too.
`

func runActivations(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || asksForHelp(args) {
		fmt.Fprint(stdout, activationsUsage)
		return nil
	}
	// Parse and check before connecting: a bad activation writes nothing.
	cmd, rest := args[0], args[1:]
	// Reading needs the NATS settings and the accounts' Tag IDs (to show
	// where each activation goes), not their credentials; a write is
	// checked against the whole configuration, as the daemon would.
	load := config.Load
	if cmd == "list" || cmd == "get" {
		load = config.LoadForReading
	}
	cfg, err := load()
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	resolver, err := cohorts.NewResolver(cfg.DefaultTagID, cfg.TagAccounts())
	if err != nil {
		return fmt.Errorf("CONNECTOR_DEFAULT_TAG_ID (with CONNECTOR_ACCOUNTS and each account's _AD_ACCOUNT_ID and _TAG_IDS, no token needed): %w", err)
	}
	var toWrite *cohorts.Activation
	switch cmd {
	case "put":
		a, err := parsePut(rest)
		if err != nil {
			return fmt.Errorf("activation refused, nothing written: %w", err)
		}
		if err := checkActivation(cfg, resolver, a); err != nil {
			return fmt.Errorf("activation %q refused, nothing written: %w", a.ID, err)
		}
		toWrite = &a
	case "list":
		if len(rest) != 0 {
			return errors.New("activations list takes no arguments")
		}
	case "get", "enable", "disable", "delete":
		if len(rest) != 1 {
			return fmt.Errorf("activations %s takes exactly one activation id", cmd)
		}
	default:
		return fmt.Errorf("unknown activations command %q\n\n%s", cmd, activationsUsage)
	}

	nc, js, err := connectJetStream(cfg, "cohort-connector activations")
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, cfg.ActivationsBucket)
	if err != nil {
		return fmt.Errorf("opening KV bucket %s (start the daemon once, or create it from deploy/nats): %w", cfg.ActivationsBucket, err)
	}

	switch cmd {
	case "list":
		state, err := js.KeyValue(ctx, cfg.StateBucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			state, err = nil, nil // no audiences yet
		}
		if err != nil {
			return fmt.Errorf("opening KV bucket %s: %w", cfg.StateBucket, err)
		}
		return listActivations(ctx, kv, state, resolver, stdout)
	case "get":
		e, err := kv.Get(ctx, rest[0])
		if err != nil {
			return fmt.Errorf("activation %q: %w", rest[0], err)
		}
		_, err = fmt.Fprintf(stdout, "%s\n", e.Value())
		return err
	case "put":
		return putActivation(ctx, kv, *toWrite, 0, stdout)
	case "enable", "disable":
		a, err := changeActivation(ctx, kv, cfg, resolver, rest[0], func(a *cohorts.Activation) { a.Enabled = cmd == "enable" })
		if err != nil {
			return err
		}
		return printActivation(stdout, a)
	case "delete":
		if _, err := kv.Get(ctx, rest[0]); err != nil {
			return fmt.Errorf("activation %q: %w", rest[0], err)
		}
		if err := kv.Delete(ctx, rest[0]); err != nil {
			return fmt.Errorf("deleting activation %q: %w", rest[0], err)
		}
		fmt.Fprintf(stdout, "deleted %s\n", rest[0])
	}
	return nil
}

func parsePut(args []string) (cohorts.Activation, error) {
	if len(args) == 1 && len(args[0]) > 0 && args[0][0] == '{' {
		return cohorts.DecodeActivation([]byte(args[0]))
	}
	fs := flag.NewFlagSet("activations put", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	file := fs.String("f", "", "read the activation JSON from `FILE` (- for stdin)")
	id := fs.String("id", "", "activation id")
	cohort := fs.String("cohort", "", "cohort id")
	tag := fs.String("tag", "", "Tag ID override (blank: the default Tag ID)")
	disabled := fs.Bool("disabled", false, "write it disabled")
	mode := fs.String("mode", string(cohorts.ModeEvents), "`MODE`: events or customer_list")
	retention := fs.Int("retention-days", 0, "retention of the visitor audience in `DAYS`, 1-540, events mode only (0: the default, 180)")
	actalikeCountry := fs.String("actalike-country", "", "`COUNTRY` of an actalike audience: US, CA or GB")
	actalikePercentage := fs.Int("actalike-percentage", 0, "`PERCENT` of that country's users in the actalike audience, 1-10")
	if err := fs.Parse(args); err != nil {
		return cohorts.Activation{}, fmt.Errorf("activations put: %w", err)
	}
	if fs.NArg() > 0 {
		return cohorts.Activation{}, fmt.Errorf("activations put: unexpected argument %q", fs.Arg(0))
	}
	if *file != "" {
		var data []byte
		var err error
		if *file == "-" {
			data, err = io.ReadAll(os.Stdin)
		} else {
			data, err = os.ReadFile(*file)
		}
		if err != nil {
			return cohorts.Activation{}, err
		}
		return cohorts.DecodeActivation(data)
	}
	a := cohorts.Activation{ID: *id, CohortID: *cohort, Destination: cohorts.DestinationPinterest,
		Enabled: !*disabled, TagID: *tag, Mode: cohorts.Mode(*mode), RetentionDays: *retention}
	// Either actalike flag asks for an actalike; Validate names a missing half.
	if *actalikeCountry != "" || *actalikePercentage != 0 {
		a.Actalike = &cohorts.Actalike{Country: *actalikeCountry, Percentage: *actalikePercentage}
	}
	return a, a.Validate()
}

func putActivation(ctx context.Context, kv jetstream.KeyValue, a cohorts.Activation, revision uint64, stdout io.Writer) error {
	if err := writeActivation(ctx, kv, a, revision); err != nil {
		return err
	}
	return printActivation(stdout, a)
}

// writeActivation writes a to the bucket: at revision (a concurrent
// writer is not overwritten), or whatever is there for revision 0.
func writeActivation(ctx context.Context, kv jetstream.KeyValue, a cohorts.Activation, revision uint64) error {
	data, err := json.Marshal(a)
	if err != nil {
		return err
	}
	if revision == 0 {
		_, err = kv.Put(ctx, a.ID, data)
	} else {
		_, err = kv.Update(ctx, a.ID, data, revision)
	}
	if err != nil {
		return fmt.Errorf("writing activation %q: %w", a.ID, err)
	}
	return nil
}

// printActivation prints a as the bucket holds it.
func printActivation(stdout io.Writer, a cohorts.Activation) error {
	data, err := json.Marshal(a)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s\n", data)
	return err
}

// changeActivation reads activation id, applies change to it, checks the
// result as every write is checked (checkActivation) and writes it at the
// revision read. The CLI's enable and disable and the status page's
// changes all go through it; a refused change writes nothing.
func changeActivation(ctx context.Context, kv jetstream.KeyValue, cfg config.Config, r *cohorts.Resolver, id string, change func(*cohorts.Activation)) (cohorts.Activation, error) {
	e, err := kv.Get(ctx, id)
	if err != nil {
		return cohorts.Activation{}, fmt.Errorf("activation %q: %w", id, err)
	}
	a, err := cohorts.DecodeStoredActivation(id, e.Value())
	if err != nil {
		return cohorts.Activation{}, fmt.Errorf("activation %q is invalid in the bucket, fix it with put: %w", id, err)
	}
	change(&a)
	if err := checkActivation(cfg, r, a); err != nil {
		return cohorts.Activation{}, fmt.Errorf("activation %q refused, nothing written: %w", a.ID, err)
	}
	return a, writeActivation(ctx, kv, a, e.Revision())
}

// listActivations prints one row per key of the bucket with what the
// daemon uses for it (connector.ActivationKeyState, the daemon's own rule):
// the activation in force and its revision, its resolved Tag ID and ad
// account, its audience as the daemon last read it from Pinterest (id,
// type, status, size, the users put into it and the match rate), and why
// the key's newest value is not in force, or why its Tag ID cannot be
// used. A key with nothing in force has blank columns. state is the state
// bucket, nil when it does not exist (no audience columns then).
func listActivations(ctx context.Context, kv, state jetstream.KeyValue, r *cohorts.Resolver, stdout io.Writer) error {
	keys, err := readKeyStates(ctx, kv, r)
	if err != nil {
		return err
	}
	type row struct {
		key      string
		st       cohorts.KeyState
		problems []string
	}
	var rows []row
	var inForce []cohorts.Activation
	for _, k := range keys {
		if k.err != nil {
			rows = append(rows, row{key: k.key, problems: []string{k.err.Error()}})
			continue
		}
		st := k.st
		rw := row{key: k.key, st: st}
		if p := st.Problem(); p != "" {
			rw.problems = append(rw.problems, p)
		}
		if st.InForce != 0 {
			inForce = append(inForce, st.Target.Activation)
			if st.Target.Err != nil {
				rw.problems = append(rw.problems, st.Target.Err.Error())
			}
		}
		rows = append(rows, rw)
	}
	views, err := readAudienceViews(ctx, state, nil, inForce)
	if err != nil {
		return fmt.Errorf("reading audiences: %w", err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCOHORT\tMODE\tENABLED\tTAG_ID\tTAG_SOURCE\tAD_ACCOUNT\tREVISION\tAUDIENCE\tSTATUS\tSIZE\tUSERS\tMATCH_RATE\tPROBLEM")
	for _, rw := range rows {
		if rw.st.InForce == 0 {
			fmt.Fprintf(tw, "%s\t\t\t\t\t\t\t-\t\t\t\t\t\t%s\n", rw.key, strings.Join(rw.problems, "; "))
			continue
		}
		t, v := rw.st.Target, views[rw.key]
		users := "-"
		if v.known {
			users = fmt.Sprint(v.users)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%t\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", rw.key, t.Activation.CohortID, t.Activation.Mode,
			t.Activation.Enabled, t.TagID, t.TagSource, t.AdAccountID, rw.st.InForce,
			v.id(), v.status(), v.size(), users, v.matchRate(), strings.Join(rw.problems, "; "))
	}
	return tw.Flush()
}

// keyState is what is in force for one key of the activations bucket, or
// why it could not be read.
type keyState struct {
	key string
	st  cohorts.KeyState
	err error
}

// readKeyStates decides, as the daemon's watcher does
// (connector.ActivationKeyState), what is in force for each key of the
// activations bucket kv, in key order. The error is the listing's.
func readKeyStates(ctx context.Context, kv jetstream.KeyValue, r *cohorts.Resolver) ([]keyState, error) {
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	var names []string
	for k := range lister.Keys() {
		names = append(names, k)
	}
	slices.Sort(names)
	var out []keyState
	for _, k := range names {
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // deleted since it was listed
		}
		ks := keyState{key: k, err: err}
		if err == nil {
			ks.st, ks.err = connector.ActivationKeyState(ctx, kv, r, e)
		}
		out = append(out, ks)
	}
	return out, nil
}

// checkActivation is what the CLI requires of an activation before it
// writes it: its Tag ID owned by a configured account (Resolver.Check), and
// in customer_list mode an OAuth app on that account (lists need one; the
// daemon could never create the list, and the changes would wait until
// they are dead-lettered).
func checkActivation(cfg config.Config, r *cohorts.Resolver, a cohorts.Activation) error {
	if err := r.Check(a); err != nil {
		return err
	}
	if a.Mode != cohorts.ModeCustomerList {
		return nil
	}
	t := r.Target(a)
	for _, acc := range cfg.AccountList {
		if acc.AdAccountID == t.AdAccountID && !acc.HasOAuth() {
			name := strings.ToUpper(acc.Name)
			return fmt.Errorf("mode customer_list needs an OAuth app on ad account %s (account %s): set CONNECTOR_ACCOUNT_%s_APP_ID, _APP_SECRET and _REFRESH_TOKEN",
				t.AdAccountID, acc.Name, name)
		}
	}
	return nil
}
