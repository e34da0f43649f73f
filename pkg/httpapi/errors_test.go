package httpapi

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/herald-push/herald/pkg/node"
)

func newTestServer(t *testing.T) *Server {
	t.Helper()
	n, err := node.New(node.Config{NodeID: "a"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown(t.Context()) })
	s, err := New(n, Config{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// An error the API did not expect is answered 500 without its text, which
// may name Redis addresses or other internals; the text goes to the log.
func TestAnUnexpectedErrorIsAnswered500WithoutItsText(t *testing.T) {
	s := newTestServer(t)
	w := httptest.NewRecorder()
	c, _ := gin.CreateTestContext(w)
	c.Request = httptest.NewRequest(http.MethodPost, "/v1/send", nil)
	s.fail(c, errors.New("dial tcp 10.0.0.7:6379: connect: connection refused"))
	if w.Code != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500", w.Code)
	}
	if body := w.Body.String(); strings.Contains(body, "10.0.0.7") || !strings.Contains(body, `"code":"internal"`) {
		t.Fatalf("500 answer %s echoes the internal error or lacks the internal code", body)
	}
}

// Every kind of engine error has its status, and the headers that go with
// it.
func TestEachKindOfErrorHasItsStatusAndHeaders(t *testing.T) {
	s := newTestServer(t)
	tests := []struct {
		err        *node.Error
		status     int
		retryAfter string
		auth       string
	}{
		{node.Errorf(node.KindInvalid, "invalid_key", "x"), 400, "", ""},
		{node.Errorf(node.KindUnauthenticated, "missing_token", "x"), 401, "", "Bearer"},
		{node.Errorf(node.KindUnauthenticated, "invalid_api_key", "x"), 401, "", `Bearer error="invalid_token"`},
		{node.Errorf(node.KindForbidden, "forbidden", "x"), 403, "", ""},
		{node.Errorf(node.KindNotFound, "not_found", "x"), 404, "", ""},
		{node.Errorf(node.KindTooLarge, "message_too_large", "x"), 413, "", ""},
		{node.Errorf(node.KindUnsupported, "unsupported_media_type", "x"), 415, "", ""},
		{&node.Error{Kind: node.KindTooMany, Code: "rate_limited", RetryAfter: 1500 * 1e6}, 429, "2", ""},
		{&node.Error{Kind: node.KindConflict, Code: "idempotency_in_progress", RetryAfter: 1e9}, 409, "1", ""},
		{node.ErrNotReplicated, 503, "1", ""},
	}
	for _, tc := range tests {
		w := httptest.NewRecorder()
		c, _ := gin.CreateTestContext(w)
		c.Request = httptest.NewRequest(http.MethodGet, "/", nil)
		s.fail(c, tc.err)
		if w.Code != tc.status || w.Header().Get("Retry-After") != tc.retryAfter || w.Header().Get("WWW-Authenticate") != tc.auth {
			t.Errorf("%s: %d Retry-After %q WWW-Authenticate %q; want %d %q %q", tc.err.Code, w.Code,
				w.Header().Get("Retry-After"), w.Header().Get("WWW-Authenticate"), tc.status, tc.retryAfter, tc.auth)
		}
		if !strings.Contains(w.Body.String(), `"code":"`+tc.err.Code+`"`) {
			t.Errorf("%s: body %s", tc.err.Code, w.Body.String())
		}
	}
}
