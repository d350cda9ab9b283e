package connector_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/cohorts"
	"github.com/cohort-connector/cohort-connector/connector"
)

// activationsEnv is an embedded JetStream server with the activations
// bucket, a Resolver, and a JSON log that tests can read: enough to run the
// activations watcher alone, without a connector or Pinterest.
type activationsEnv struct {
	t        *testing.T
	url      string // the server's
	js       jetstream.JetStream
	topo     connector.Topology
	kv       jetstream.KeyValue // the bucket as created last
	resolver *cohorts.Resolver
	logs     *logBuffer
	log      zerolog.Logger
}

func newActivationsEnv(t *testing.T) *activationsEnv {
	t.Helper()
	url, js := embeddedJetStream(t)
	e := &activationsEnv{t: t, url: url, js: js}
	e.topo = connector.Topology{ActivationsBucket: "COHORT_ACTIVATIONS"}
	var err error
	e.kv, err = e.js.CreateKeyValue(t.Context(), e.topo.KeyValueConfig())
	require.NoError(t, err)
	e.freshProcess()
	return e
}

// restarted is another process on the same server and bucket: its own
// Resolver and logs.
func (e *activationsEnv) restarted() *activationsEnv {
	r := *e
	r.freshProcess()
	return &r
}

func (e *activationsEnv) freshProcess() {
	var err error
	e.resolver, err = cohorts.NewResolver(tagDefault, map[string]string{tagDefault: acctA, tagA2: acctA, tagB: acctB})
	require.NoError(e.t, err)
	e.logs = &logBuffer{}
	e.log = zerolog.New(zerolog.MultiLevelWriter(e.logs, zerolog.NewTestWriter(e.t))).Level(zerolog.DebugLevel)
}

// put writes a as JSON under its id and returns the revision.
func (e *activationsEnv) put(a cohorts.Activation) uint64 {
	e.t.Helper()
	b, err := json.Marshal(a)
	require.NoError(e.t, err)
	return e.putRaw(a.ID, string(b))
}

// putRaw writes value under key as it is, valid or not, and returns the
// revision.
func (e *activationsEnv) putRaw(key, value string) uint64 {
	e.t.Helper()
	rev, err := e.kv.Put(e.t.Context(), key, []byte(value))
	require.NoError(e.t, err)
	return rev
}

// ids are the ids of the resolver's activations, sorted.
func (e *activationsEnv) ids() []string {
	var out []string
	for _, a := range e.resolver.List() {
		out = append(out, a.ID)
	}
	return out
}

// logBuffer collects JSON log lines for tests to read; safe for concurrent
// use.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines returns every log line whose message contains msg, decoded.
func (l *logBuffer) lines(msg string) []map[string]any {
	l.mu.Lock()
	data := bytes.Clone(l.b.Bytes())
	l.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) != nil {
			continue
		}
		if m, _ := line["message"].(string); strings.Contains(m, msg) {
			out = append(out, line)
		}
	}
	return out
}
