package node_test

import (
	"fmt"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/internal/wait"
	"github.com/herald-push/herald/pkg/node"
)

// postJSONWith posts a JSON body with extra headers.
func postJSONWith(t *testing.T, url, body string, header map[string]string) (int, map[string]any, http.Header) {
	t.Helper()
	h := map[string]string{"Content-Type": "application/json"}
	maps.Copy(h, header)
	return postWith(t, url, body, h)
}

// A backend storing big sends to ever new keys on a single node fills its
// --inbox-memory-bytes: the next stored send is refused with its own code
// and a Retry-After, and everything accepted before is still delivered.
func TestAStoredSendBeyondTheSingleNodesMemoryIsRefusedAndNothingAcceptedIsLost(t *testing.T) {
	n := startNode(t, "solo", "", func(c *node.Config) { c.InboxMemoryBytes = 1 << 20 })
	data := `"` + strings.Repeat("x", 60<<10) + `"`
	var accepted []string
	for i := range 100 {
		status, out, h := postJSONWith(t, n.URL("/v1/send"), fmt.Sprintf(`{"key":"u%d","data":%s,"store":true}`, i, data), nil)
		if status == http.StatusServiceUnavailable {
			if errorCode(out) != "storage_full" || h.Get("Retry-After") == "" {
				t.Fatalf("refused send: %v, Retry-After %q; want storage_full with a Retry-After", out, h.Get("Retry-After"))
			}
			break
		}
		if status != http.StatusOK {
			t.Fatalf("send %d: %d %v", i, status, out)
		}
		accepted = append(accepted, fmt.Sprint("u", i))
	}
	if len(accepted) < 10 || len(accepted) > 17 {
		t.Fatalf("%d sends of 60 KB accepted into 1 MB, want about 16 and then a refusal", len(accepted))
	}
	for _, key := range accepted {
		c := dial(t, n, "key="+key)
		if f := c.next(); f.ID == "" || len(f.Data) < 60<<10 {
			t.Fatalf("%s got %+v, want its stored send", key, f)
		}
	}
}

// A single node given stored sends for keys that never come back frees
// them once --inbox-max-age has passed, with no request to prompt it.
func TestASingleNodeFreesTheInboxesOfKeysThatNeverComeBack(t *testing.T) {
	n := startNode(t, "solo", "", func(c *node.Config) { c.InboxMaxAge = time.Second })
	data := `"` + strings.Repeat("x", 10<<10) + `"`
	for i := range 20 {
		if status, out, _ := postJSONWith(t, n.URL("/v1/send"), fmt.Sprintf(`{"key":"gone%d","data":%s,"store":true}`, i, data), nil); status != http.StatusOK {
			t.Fatalf("send %d: %d %v", i, status, out)
		}
	}
	if line := metricLine(t, n, "herald_inbox_memory_bytes"); line == "herald_inbox_memory_bytes 0" || line == "" {
		t.Fatalf("after 20 stored sends the inbox holds nothing: %q", line)
	}
	wait.Until(t, 15*time.Second, "the idle inboxes to be freed", func() bool {
		return metricLine(t, n, "herald_inbox_memory_bytes") == "herald_inbox_memory_bytes 0"
	})
}

// The same node refuses a new Idempotency-Key beyond
// --idempotency-memory-bytes, and still answers retries of the keys it
// remembers.
func TestAnIdempotentSendBeyondTheSingleNodesMemoryIsRefusedAndRetriesStillAnswer(t *testing.T) {
	n := startNode(t, "solo", "", func(c *node.Config) { c.IdempotencyMemoryBytes = 16 << 10 })
	var first map[string]any
	for i := 0; ; i++ {
		status, out, h := postJSONWith(t, n.URL("/v1/send"), `{"key":"u1","data":1}`, map[string]string{"Idempotency-Key": fmt.Sprint("order-", i)})
		if status == http.StatusServiceUnavailable {
			if errorCode(out) != "storage_full" || h.Get("Retry-After") == "" || i < 10 {
				t.Fatalf("after %d keys: %v, Retry-After %q; want storage_full with a Retry-After", i, out, h.Get("Retry-After"))
			}
			break
		}
		if status != http.StatusOK || i > 1000 {
			t.Fatalf("idempotent send %d: %d %v", i, status, out)
		}
		if i == 0 {
			first = out
		}
	}
	status, again, h := postJSONWith(t, n.URL("/v1/send"), `{"key":"u1","data":1}`, map[string]string{"Idempotency-Key": "order-0"})
	if status != http.StatusOK || again["id"] != first["id"] || h.Get("Idempotent-Replayed") == "" {
		t.Fatalf("retry of order-0 when full: %d %v, want the first answer %v", status, again, first)
	}
}

// Someone wrote an entry by hand into a stored stream (or an older build
// did): its data is not text a client can decode, or it has none. A client
// of that stream gets the good entries around it, in order, stays
// connected, goes on receiving live, and the node counts the skip.
func TestHistoryAClientCannotDecodeIsSkippedAndTheConnectionGoesOn(t *testing.T) {
	r := redistest.Start(t)
	rdb := r.Client()
	n := startNode(t, "a", r.URL(), func(c *node.Config) { c.HistoryTopics = []string{"board", "news", "notes"} })
	cases := []struct {
		name, reason string
		stream       string // the Redis stream written by hand
		poison       []any  // its fields
		write        func(text string) string
		query        string
	}{
		{"InvalidTextInAKeysInbox", "invalid_text", "herald:{u1}:inbox", []any{"d", "\"\xff\"", "o", "a", "w", "0"},
			func(text string) string { return storedID(t, n, "u1", text) },
			"key=u1&since=0-0"},
		{"NoDataInAKeysInbox", "missing_data", "herald:{u2}:inbox", []any{"o", "a", "w", "0"},
			func(text string) string { return storedID(t, n, "u2", text) },
			"key=u2"},
		// Pasted into the frame as it is, this would forge the frame's id
		// and key (and so the client's resume cursor).
		{"AFrameForgingFragmentInAKeysInbox", "invalid_json", "herald:{u3}:inbox", []any{"d", `1,"id":"9999999999999-0","key":"victim"`, "o", "a", "w", "0"},
			func(text string) string { return storedID(t, n, "u3", text) },
			"key=u3"},
		{"UnterminatedJSONInATopicsHistory", "invalid_json", "herald:{#notes}:inbox", []any{"d", `{"unterminated`, "o", "a", "w", "0"},
			func(text string) string { return postedID(t, n, "notes", text) },
			"key=screen3&topics=notes"},
		{"InvalidTextInATopicsHistory", "invalid_text", "herald:{#board}:inbox", []any{"d", "\"\xfe\"", "o", "a", "w", "0"},
			func(text string) string { return postedID(t, n, "board", text) },
			"key=screen1&topics=board"},
		{"NoDataInATopicsHistoryAfterSince", "missing_data", "herald:{#news}:inbox", []any{"o", "a", "w", "0"},
			func(text string) string { return postedID(t, n, "news", text) },
			"key=screen2&topics=news&since.news=0-0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			series := `herald_stored_skipped_total{reason="` + tc.reason + `"}`
			before := metricLine(t, n, series)
			first := tc.write("first")
			poisoned, err := rdb.XAdd(t.Context(), &redis.XAddArgs{Stream: tc.stream, Values: append(tc.poison, "p", first)}).Result()
			if err != nil {
				t.Fatal(err)
			}
			second := tc.write("second")
			c := dial(t, n, tc.query)
			for _, want := range []struct{ id, data string }{{first, `"first"`}, {second, `"second"`}} {
				if f := c.next(); f.ID != want.id || string(f.Data) != want.data {
					t.Fatalf("got %s %s, want %s %s (the poisoned entry is %s)", f.ID, f.Data, want.id, want.data, poisoned)
				}
			}
			third := tc.write("third") // live, after the skipped entry: the stream has no gap
			if f := c.next(); f.ID != third || string(f.Data) != `"third"` {
				t.Fatalf("live after the skip: got %s %s, want %s", f.ID, f.Data, third)
			}
			after := metricLine(t, n, series)
			if skipped(t, after)-skipped(t, before) != 1 {
				t.Fatalf("%s went from %q to %q, want one more skip", series, before, after)
			}
		})
	}
}

func skipped(t *testing.T, line string) int {
	t.Helper()
	var v float64
	if line != "" {
		fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v)
	}
	return int(v)
}

// storedID sends text to key, stored, and returns its stored id.
func storedID(t *testing.T, n *testNode, key, text string) string {
	t.Helper()
	out := sendJSON(t, n, `{"key":"`+key+`","store":true,"data":"`+text+`"}`)
	r, _ := out["results"].(map[string]any)[key].(map[string]any)
	id, _ := r["id"].(string)
	return id
}

// postedID posts text to a history topic and returns its stored id.
func postedID(t *testing.T, n *testNode, topic, text string) string {
	t.Helper()
	status, out := post(t, n.URL("/v1/topics/"+topic), "text/plain", text)
	id, _ := out["id"].(string)
	if status != http.StatusOK || id == "" {
		t.Fatalf("post to %s: %d %v", topic, status, out)
	}
	return id
}
