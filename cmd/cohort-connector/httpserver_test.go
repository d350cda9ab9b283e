package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTheMetricsServerBoundsEveryPhaseOfAConnection(t *testing.T) {
	srv := newHTTPServer(http.NotFoundHandler(), metricsTimeouts)
	for _, tc := range []struct {
		name string
		got  time.Duration
	}{
		{"reading request headers is bounded", srv.ReadHeaderTimeout},
		{"reading a whole request is bounded", srv.ReadTimeout},
		{"writing a response is bounded", srv.WriteTimeout},
		{"an idle keep-alive connection is bounded", srv.IdleTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Positive(t, tc.got)
		})
	}
	assert.LessOrEqual(t, srv.ReadHeaderTimeout, srv.ReadTimeout, "the header timeout is part of the read timeout")
}

// serveForTest serves newHTTPServer(/healthz, timeouts) on a loopback port
// until the test ends and returns its address.
func serveForTest(t *testing.T, timeouts httpTimeouts) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	srv := newHTTPServer(mux, timeouts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		assert.ErrorIs(t, <-served, http.ErrServerClosed)
	})
	return ln.Addr().String()
}

// closedByServer reports how long the server took to close conn, reading
// (and discarding) until it does; it fails the test if conn is still open
// when bound has passed.
func closedByServer(t *testing.T, conn net.Conn, r io.Reader, bound time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	require.NoError(t, conn.SetReadDeadline(start.Add(bound)))
	_, err := io.Copy(io.Discard, r)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the server still held the connection open after %s", bound)
	}
	// io.Copy returns nil at EOF; a reset is a close too.
	return time.Since(start)
}

func TestTheMetricsServerClosesConnectionsThatHoldItUp(t *testing.T) {
	// Short timeouts so the test is fast; the bound is what a connection
	// without them would exceed.
	timeouts := httpTimeouts{ReadHeader: 100 * time.Millisecond, Read: 200 * time.Millisecond,
		Write: time.Second, Idle: 300 * time.Millisecond}
	const bound = 5 * time.Second

	t.Run("a keep-alive connection left idle after one request is closed after the idle timeout", func(t *testing.T) {
		addr := serveForTest(t, timeouts)
		conn, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		defer conn.Close()
		_, err = io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: metrics\r\n\r\n")
		require.NoError(t, err)
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, "ok\n", string(body))
		require.False(t, resp.Close, "the server keeps the connection alive after the request")

		took := closedByServer(t, conn, br, bound)
		assert.GreaterOrEqual(t, took, timeouts.Idle/2, "closed by the idle timeout, not at once")
	})
	t.Run("a connection that sends nothing is closed after the header timeout", func(t *testing.T) {
		addr := serveForTest(t, timeouts)
		conn, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		defer conn.Close()
		closedByServer(t, conn, conn, bound)
	})
}
