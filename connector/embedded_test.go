package connector_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

// embeddedJetStream starts a JetStream server of the test's own and
// connects to it; both are stopped when the test ends (the connection
// first). It returns the server's client URL and the JetStream context.
func embeddedJetStream(t *testing.T) (string, jetstream.JetStream) {
	t.Helper()
	srv, err := server.NewServer(&server.Options{
		JetStream: true, Port: -1, Host: "127.0.0.1", StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
	})
	require.NoError(t, err)
	go srv.Start()
	require.True(t, srv.ReadyForConnections(10*time.Second), "embedded NATS server not ready")
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	nc, err := nats.Connect(srv.ClientURL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return srv.ClientURL(), js
}
