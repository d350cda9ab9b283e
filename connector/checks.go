package connector

// CheckState is the outcome of one readiness check.
type CheckState string

// The outcomes of a readiness check. Only CheckFail makes the daemon
// unready.
const (
	CheckOK   CheckState = "ok"
	CheckWarn CheckState = "warn" // a problem to show; the daemon stays ready
	CheckFail CheckState = "fail" // the daemon is not ready (/readyz 503)
)

// Check is one named readiness check, as /readyz shows it: one line
// "<state> <name>: <detail>".
type Check struct {
	// Name is stable (snake_case): probes, alerts and people match on it.
	Name   string
	State  CheckState
	Detail string // one line for people; "" when there is nothing to say
}

// CheckJetStreamObjects is the name of the connector's own readiness check
// (see Connector.Checks).
const CheckJetStreamObjects = "jetstream_objects"
