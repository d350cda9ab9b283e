package pinterest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/destinations"
	"github.com/cohort-connector/cohort-connector/destinations/pinterest"
)

const adsToken = "pina_ADSoauthACCESStoken9876543210"

// seenRequest is what apiServer recorded of one request.
type seenRequest struct {
	Method, Path, Auth, ContentType string
	Query                           map[string][]string
	Body                            []byte
}

// jsonBody decodes the request body into a generic map, to check the
// spec's field names and JSON types rather than our own structs.
func (r seenRequest) jsonBody(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(r.Body, &m), "body %s", r.Body)
	return m
}

// apiServer is an httptest Pinterest for any endpoint: handle answers each
// request (already recorded, body read).
type apiServer struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []seenRequest
}

func newAPIServer(t *testing.T, handle func(w http.ResponseWriter, r seenRequest)) *apiServer {
	t.Helper()
	s := &apiServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		sr := seenRequest{Method: r.Method, Path: r.URL.Path, Auth: r.Header.Get("Authorization"),
			ContentType: r.Header.Get("Content-Type"), Query: r.URL.Query(), Body: body}
		s.mu.Lock()
		s.reqs = append(s.reqs, sr)
		s.mu.Unlock()
		handle(w, sr)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *apiServer) requests() []seenRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seenRequest(nil), s.reqs...)
}

// adsConfig is testConfig with an OAuth token for acct.
func adsConfig(baseURL string) pinterest.Config {
	cfg := testConfig(baseURL)
	cfg.AdsTokens = map[string]destinations.TokenSource{acct: destinations.StaticToken(adsToken)}
	return cfg
}

// eventsAnswer processes every event of an events request.
func eventsAnswer(t *testing.T, w http.ResponseWriter, r seenRequest) {
	t.Helper()
	var req pinterest.EventsRequest
	require.NoError(t, json.Unmarshal(r.Body, &req))
	writeJSON(w, http.StatusOK, processedAnswer(len(req.Data)))
}
