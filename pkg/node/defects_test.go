package node_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/pkg/node"
)

// postWith posts a text body with extra headers and returns the status, the
// decoded answer and the answer's headers.
func postWith(t *testing.T, url, body string, header map[string]string) (int, map[string]any, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "text/plain")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, decode(resp.Body), resp.Header
}

// metricLine returns the line of /metrics that starts with series.
func metricLine(t *testing.T, n *testNode, series string) string {
	t.Helper()
	_, out := get(t, n.URL("/metrics"))
	for _, line := range strings.Split(out["body"].(string), "\n") {
		if strings.HasPrefix(line, series+" ") {
			return line
		}
	}
	return ""
}

// A node whose Redis user may not publish to topic channels keeps a post in
// the topic's history but cannot hand it to the live subscribers of other
// nodes. The post is kept, so the answer says so, and a retry with the same
// Idempotency-Key keeps nothing twice.
func TestAHistoryPostThatCouldNotGoOutLiveIsAnsweredAsKeptAndARetryKeepsItOnce(t *testing.T) {
	r := redistest.StartWith(t, "--user", "poster", "on", ">pw", "~herald:*",
		"&herald:node:*", "&herald:broadcast", "+@all", "-@dangerous", "+info")
	a := startNode(t, "a", "redis://poster:pw@"+r.Addr(), withHistory)
	b := startNode(t, "b", r.URL(), withHistory)

	idem := map[string]string{"Idempotency-Key": "post-1"}
	status, out, _ := postWith(t, a.URL("/v1/topics/board"), "hello", idem)
	if status != http.StatusOK {
		t.Fatalf("a post kept in history was answered %d %v, want 200", status, out)
	}
	status, again, h := postWith(t, a.URL("/v1/topics/board"), "hello", idem)
	if status != http.StatusOK || h.Get("Idempotent-Replayed") != "true" || again["id"] != out["id"] {
		t.Fatalf("retry with the same Idempotency-Key: %d %v replayed=%q, want the first answer %v", status, again, h.Get("Idempotent-Replayed"), out)
	}
	if line := metricLine(t, a, `herald_redis_errors_total{op="publish"}`); !strings.HasSuffix(line, " 1") {
		t.Errorf("the failed publish is not counted as a Redis error: %q", line)
	}

	// A new subscriber is shown the newest posts: the one post, once.
	board := dial(t, b, "key=screen&topics=board")
	if f := board.next(); string(f.Data) != `"hello"` || f.ID != out["id"] {
		t.Fatalf("board shows %+v, want the kept post %v", f, out["id"])
	}
	board.nothing(300 * time.Millisecond)
}

func TestHistoryReplayIsValidatedAndNoReplayTurnsItOff(t *testing.T) {
	for _, replay := range []int{-5, 1_000_000} {
		cfg := node.Config{NodeID: "a", Storage: node.Storage{HistoryTopics: []string{"board"}, HistoryReplay: replay, InboxMaxLen: 1000}}
		if n, err := node.New(cfg); err == nil || !strings.Contains(err.Error(), "history replay") {
			if n != nil {
				n.Shutdown(context.Background())
			}
			t.Fatalf("history replay %d accepted: %v", replay, err)
		}
	}

	n := startNode(t, "a", "", withHistory, func(c *node.Config) { c.HistoryReplay = node.NoReplay })
	post(t, n.URL("/v1/topics/board"), "text/plain", "old news")
	board := dial(t, n, "key=screen&topics=board")
	board.nothing(300 * time.Millisecond) // replay off: nothing from before
	post(t, n.URL("/v1/topics/board"), "text/plain", "fresh")
	if f := board.next(); string(f.Data) != `"fresh"` {
		t.Fatalf("board shows %+v, want the fresh post", f)
	}
}

// A send to a key held on another node whose channel this node may not
// publish to did not reach anyone: it is a Redis error, counted as one, and
// not a key that was offline.
func TestASendWhoseRouteFailsIsAnsweredUnavailableAndCountedAsARedisError(t *testing.T) {
	r := redistest.StartWith(t, "--user", "a", "on", ">pw", "~herald:*",
		"&herald:node:a", "&herald:topic:*", "&herald:broadcast", "+@all", "-@dangerous", "+info")
	a := startNode(t, "a", "redis://a:pw@"+r.Addr())
	b := startNode(t, "b", r.URL())
	dial(t, b, "key=u1")

	status, out := post(t, a.URL("/v1/send?key=u1"), "text/plain", "hi")
	if status != http.StatusServiceUnavailable || errorCode(out) != "unavailable" {
		t.Fatalf("send over a failing route: %d %v, want 503 unavailable", status, out)
	}
	if line := metricLine(t, a, `herald_redis_errors_total{op="publish"}`); !strings.HasSuffix(line, " 1") {
		t.Errorf("the failed publish is not counted as a Redis error: %q", line)
	}
	if line := metricLine(t, a, `herald_drops_total{reason="offline"}`); !strings.HasSuffix(line, " 0") {
		t.Errorf("the failed publish is counted as an offline key: %q", line)
	}
}
