package connector_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind. Every
// harness shuts down what it started (connector, watcher, NATS connection,
// embedded server, simulator, idle HTTP connections) before its test ends.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
