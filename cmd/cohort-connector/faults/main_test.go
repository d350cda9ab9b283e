package faults_test

import (
	"bytes"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"go.uber.org/goleak"
)

var (
	fullFlag   = flag.Bool("faults.full", false, "full sizes (200,000 messages, 10 kills, a 60s outage) instead of the CI subset")
	seedFlag   = flag.Uint64("faults.seed", 0, "seed of the random fault moments; 0 picks one (shown in the table)")
	reportFlag = flag.String("faults.report", "", "also write the result table to this file")
	logsFlag   = flag.String("faults.logs", "", "keep each scenario's daemon log in this directory (<order>.log) instead of a temporary one")
)

// daemonBin is the cohort-connector binary built once by TestMain.
var daemonBin string

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "cohort-connector-faults-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if !testing.Short() {
		if daemonBin, err = buildDaemon(dir); err != nil {
			fmt.Fprintln(os.Stderr, "faults: building the daemon:", err)
			return 1
		}
	}

	code := m.Run()

	if table := results.render(); table != "" {
		fmt.Print(table)
		if *reportFlag != "" {
			if err := os.WriteFile(*reportFlag, []byte(table), 0o644); err != nil {
				fmt.Fprintln(os.Stderr, "faults: writing the report:", err)
				code = 1
			}
		}
	}
	if code == 0 {
		// Every scenario shut down what it started: the daemon process, the
		// NATS connection, the embedded server, the simulator.
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "faults: goroutines left behind:", err)
			code = 1
		}
	}
	return code
}

// buildDaemon builds ./cmd/cohort-connector (without -race: the daemon is
// the system under test, not the test process) into dir.
func buildDaemon(dir string) (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside a Go module")
	}
	moduleRoot = filepath.Dir(gomod)
	bin := filepath.Join(dir, "cohort-connector")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/cohort-connector")
	cmd.Dir = filepath.Dir(gomod)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%w\n%s", err, stderr.String())
	}
	return bin, nil
}

// moduleRoot is the module's directory, set by buildDaemon.
var moduleRoot string

// readSources reads every Go source file and go.mod/go.sum of the module.
// The daemon is built by a child process, which go test's result cache
// cannot see; files this process opens while the tests run (not in
// TestMain before m.Run, when nothing is logged yet), it does: reading them
// makes a change to the daemon's code invalidate a cached pass of this
// suite.
func readSources(root string) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if name := d.Name(); strings.HasSuffix(name, ".go") || name == "go.mod" || name == "go.sum" {
			_, err = os.ReadFile(path)
		}
		return err
	})
}

// row is one scenario's line of the result table.
type row struct {
	order      int
	scenario   string
	published  int
	delivered  int // expected event ids received at least once
	lost       int // expected event ids never received
	duplicates int // receptions minus distinct ids
	violations int // exits that reached an account before their enter
	dlq        int // messages in COHORTS_DLQ
	took       time.Duration
	notes      string
	failed     bool
}

type resultTable struct {
	mu   sync.Mutex
	rows []row
}

var results resultTable

func (r *resultTable) add(x row) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rows = append(r.rows, x)
}

func (r *resultTable) render() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.rows) == 0 {
		return ""
	}
	rows := slices.Clone(r.rows)
	slices.SortStableFunc(rows, func(a, b row) int { return a.order - b.order })
	var buf bytes.Buffer
	size := "CI subset"
	if *fullFlag {
		size = "full (-faults.full)"
	}
	fmt.Fprintf(&buf, "\nfault injection, %s, seed %d\n", size, seed())
	w := tabwriter.NewWriter(&buf, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(w, "scenario\t published\t delivered\t lost\t duplicates\t order\t DLQ\t time\t result\t notes")
	for _, x := range rows {
		res := "ok"
		if x.failed {
			res = "FAIL"
		}
		fmt.Fprintf(w, "%s\t %d\t %d\t %d\t %d\t %d\t %d\t %s\t %s\t %s\n", x.scenario, x.published, x.delivered,
			x.lost, x.duplicates, x.violations, x.dlq, x.took.Round(100*time.Millisecond), res, x.notes)
	}
	_ = w.Flush()
	return buf.String()
}

var seedOnce = sync.OnceValue(func() uint64 {
	if *seedFlag != 0 {
		return *seedFlag
	}
	return uint64(time.Now().UnixNano())
})

func seed() uint64 { return seedOnce() }
