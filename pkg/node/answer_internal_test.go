package node

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
)

// An error the API did not expect is answered 500 without its text, which
// may name Redis addresses or other internals; the text goes to the log.
func TestAnUnexpectedErrorIsAnswered500WithoutItsText(t *testing.T) {
	n, err := New(Config{NodeID: "a"})
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	c, _ := gin.CreateTestContext(w)
	c.Request = httptest.NewRequest(http.MethodPost, "/v1/send", nil)
	n.failWith(c, errors.New("dial tcp 10.0.0.7:6379: connect: connection refused"))
	if w.Code != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500", w.Code)
	}
	if body := w.Body.String(); strings.Contains(body, "10.0.0.7") || !strings.Contains(body, `"code":"internal"`) {
		t.Fatalf("500 answer %s echoes the internal error or lacks the internal code", body)
	}
}
