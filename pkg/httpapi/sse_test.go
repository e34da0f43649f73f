package httpapi_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/herald-push/herald/internal/nodetest"
	"github.com/herald-push/herald/internal/ssetest"
	"github.com/herald-push/herald/pkg/node"
)

// syncBuffer is a log sink several goroutines write.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A token in the URL (EventSource and browsers' WebSockets can put it
// nowhere else) never reaches the node's logs, even at debug level: the
// request log carries the path alone.
func TestRequestLogsNeverCarryTheQueryOrItsToken(t *testing.T) {
	var logs syncBuffer
	n := nodetest.Start(t, node.Config{NodeID: "a", Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	const secret = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXRva2VuLXZhbHVl.c2ln"
	s := ssetest.MustOpen(t, http.DefaultClient, n.URL("/v1/sse?key=u1&token="+secret), nil)
	s.Close()
	resp, err := http.Get(n.URL("/v1/ws?key=u1&token=" + secret))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	n.Stop()
	got := logs.String()
	if !strings.Contains(got, `"path":"/v1/sse"`) || !strings.Contains(got, `"path":"/v1/ws"`) {
		t.Fatalf("the request log has no line for the stream and the WebSocket request:\n%s", got)
	}
	if strings.Contains(got, secret) || strings.Contains(got, "token=") {
		t.Fatalf("the log carries the token:\n%s", got)
	}
}
