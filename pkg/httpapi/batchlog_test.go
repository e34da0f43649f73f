package httpapi_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/herald-push/herald/internal/redistest"
)

// lockedBuffer is a log sink the node's goroutines may share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *lockedBuffer) lines(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), substr)
}

// A batch of a thousand sends that Redis refuses to carry to the node
// holding their key is answered item by item, and logged in one line with
// the count and the first error, not in a thousand.
func TestABatchFailingAgainstRedisLogsOneLineNotOnePerItem(t *testing.T) {
	// Node a's Redis user may publish to its own channel (it stays ready)
	// but not to node b's: every send to a key on b fails to go out.
	r := redistest.StartWith(t, "--user", "nob", "on", ">pw", "~herald:*",
		"&herald:node:a", "&herald:broadcast", "&herald:topic:*", "+@all", "-@dangerous", "+info")
	var logs lockedBuffer
	a := startNode(t, "a", "redis://nob:pw@"+r.Addr(), func(c *testConfig) {
		c.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	b := startNode(t, "b", r.URL())
	dial(t, b, "key=u1")
	items := make([]string, 1000)
	for i := range items {
		items[i] = fmt.Sprintf(`{"key":"u1","data":%d}`, i)
	}
	status, out := post(t, a.URL("/v1/batch"), "application/json", `{"items":[`+strings.Join(items, ",")+`]}`)
	if status != http.StatusOK {
		t.Fatalf("batch: %d %v", status, out)
	}
	failed := 0
	for _, res := range out["results"].([]any) {
		if res.(map[string]any)["status"].(float64) != http.StatusOK {
			failed++
		}
	}
	if failed != 1000 {
		t.Fatalf("%d of 1000 items failed, want all: %v", failed, out["results"].([]any)[0])
	}
	if n := logs.lines(`"level":"WARN"`) + logs.lines(`"level":"ERROR"`); n > 2 {
		t.Fatalf("%d warning or error lines for one failing batch:\n%.2000s", n, logs.b.String())
	}
	if logs.lines(`"sends":1000`) != 1 {
		t.Fatalf("the batch's one line does not count its failed sends:\n%.2000s", logs.b.String())
	}
}
