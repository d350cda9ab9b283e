package faults_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
)

// logWant is what a row's daemon log must say to the engineer on call
// (issue 10, point 6): the first warning or error names what failed, for
// which ad account, Tag ID or activation, and why; a failure repeated for
// every message is not logged for every message; and the fault's end is
// one line saying how long it lasted.
type logWant struct {
	// first maps each message the log's first warning or error may have
	// to the fields that line must carry (a field's value, or for a list
	// field one of its values). When the fault is one the daemon cannot
	// see (a SIGKILL ends the process it would log from; a SIGTERM is a
	// requested stop), the key "" allows a log with no warning or error
	// at all; an empty map requires one.
	first map[string]map[string]string
	// end is the message of the line that ends the fault ("" when the
	// fault does not end while the daemon runs); it must carry "lasted".
	end string
	// setUp are warnings about the row's set-up rather than its fault (an
	// account without OAuth has no audience; an audience is small): they
	// may come before the fault's first line, and count in most.
	setUp []string
	// most bounds the warnings and errors of the whole log: a bound that
	// does not grow with the row's messages (at CI sizes the rows publish
	// hundreds to thousands; at full sizes ten times as many).
	most int
}

// The daemon's lines about an ad account's calls and NATS.
const (
	msgFailing   = "Pinterest account failing: messages parked or held back for redelivery"
	msgAuth      = "Pinterest rejected the token or ad account: messages kept and retried with a long delay, fix the account's configuration"
	msgRecovered = "Pinterest account recovered"
	msgNATSDown  = "NATS disconnected: reconnecting; messages in flight are settled once it is back, or redelivered"
	msgNATSBack  = "NATS reconnected"
	// Warnings about a row's set-up: an account without OAuth, a small
	// audience.
	msgNotManaged = "audience not managed"
	msgTooSmall   = "audience too small: it does not serve until Pinterest matches at least 100 users"
)

// account is what a line about an ad account's calls must name: the
// account, a Tag ID and an activation of it, and why.
func account(acct, tag, activation, reason string) map[string]string {
	return map[string]string{"ad_account_id": acct, "tag_id": tag, "activation_id": activation, "reason": reason}
}

// quiet is the logWant of a fault the daemon cannot see.
var quiet = logWant{first: map[string]map[string]string{"": nil}}

// logLine is one JSON line of the daemon's log.
type logLine map[string]any

func (l logLine) message() string { s, _ := l["message"].(string); return s }

// has reports whether field is value, or holds it when it is a list.
func (l logLine) has(field, value string) bool {
	switch v := l[field].(type) {
	case string:
		return v == value
	case []any:
		return slices.ContainsFunc(v, func(x any) bool { return x == value })
	}
	return false
}

// readLog reads the daemon's JSON log lines (other lines, such as the
// env's "=== start" markers, are skipped).
func readLog(path string) ([]logLine, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []logLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		var l logLine
		if json.Unmarshal(sc.Bytes(), &l) == nil {
			out = append(out, l)
		}
	}
	return out, sc.Err()
}

// checkLog checks the daemon's log against want; it returns what is wrong
// ("" when nothing is) and a note for the table: the warnings and errors
// by message, with counts.
func checkLog(path string, want logWant) (problem, note string) {
	lines, err := readLog(path)
	if err != nil {
		return "reading the daemon's log: " + err.Error(), ""
	}
	var bad []logLine // about the fault
	counts := map[string]int{}
	total := 0
	for _, l := range lines {
		if l["level"] == "warn" || l["level"] == "error" {
			total++
			counts[l.message()]++
			if !slices.Contains(want.setUp, l.message()) {
				bad = append(bad, l)
			}
		}
	}
	note = fmt.Sprintf("log: %d warnings and errors", total)
	var problems []string
	if len(bad) == 0 {
		if _, ok := want.first[""]; !ok {
			problems = append(problems, "no warning or error about the fault")
		}
	} else if fields, ok := want.first[bad[0].message()]; !ok || bad[0].message() == "" {
		problems = append(problems, fmt.Sprintf("first warning or error %q, want one of %q", bad[0].message(), slices.Sorted(maps.Keys(want.first))))
	} else {
		for field, value := range fields {
			if !bad[0].has(field, value) {
				problems = append(problems, fmt.Sprintf("the first warning or error does not give %s %s: %v", field, value, bad[0]))
			}
		}
	}
	if total > want.most {
		problems = append(problems, fmt.Sprintf("%d warnings and errors, want at most %d (a line per message?): %v", total, want.most, counts))
	}
	if want.end != "" {
		i := slices.IndexFunc(lines, func(l logLine) bool { return l.message() == want.end })
		switch {
		case i < 0:
			problems = append(problems, fmt.Sprintf("no line %q", want.end))
		case lines[i]["lasted"] == nil:
			problems = append(problems, fmt.Sprintf("%q does not say how long it lasted: %v", want.end, lines[i]))
		default:
			note += fmt.Sprintf("; %q lasted %v", want.end, lines[i]["lasted"])
		}
	}
	return strings.Join(problems, "; "), note
}
