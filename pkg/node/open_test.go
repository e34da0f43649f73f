package node_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herald-push/herald/internal/redistest"
)

// A handshake refused for its origin or its form is refused before the
// connection is counted or registered: Redis never holds u1's presence,
// not even for a moment, and presence never says online.
func TestARefusedHandshakeNeverShowsTheKeyOnline(t *testing.T) {
	r := redistest.Start(t)
	n := startNode(t, "a", r.URL())
	rdb := r.Client()
	ctx := context.Background()
	// Redis tells of every write to u1's presence entry, so a write that
	// is undone at once is seen as surely as one that stays.
	if err := rdb.ConfigSet(ctx, "notify-keyspace-events", "KA").Err(); err != nil {
		t.Fatal(err)
	}
	sub := rdb.Subscribe(ctx, "__keyspace@0__:herald:{u1}:nodes", "__keyspace@0__:marker")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	// writesToU1 returns the writes to u1's presence Redis told of until
	// now: a marker written after them arrives after them.
	writesToU1 := func() int {
		t.Helper()
		if err := rdb.Set(ctx, "marker", time.Now().String(), 0).Err(); err != nil {
			t.Fatal(err)
		}
		writes := 0
		for {
			m, err := sub.ReceiveMessage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasSuffix(m.Channel, ":marker") {
				return writes
			}
			writes++
		}
	}
	handshake := func(version string) http.Header {
		h := http.Header{}
		h.Set("Connection", "Upgrade")
		h.Set("Upgrade", "websocket")
		h.Set("Sec-WebSocket-Version", version)
		h.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		return h
	}

	tests := []struct {
		name   string
		header http.Header
		status int
		code   string
	}{
		{"a page on another origin", func() http.Header { h := handshake("13"); h.Set("Origin", "https://evil.example"); return h }(), 403, "origin_not_allowed"},
		{"a plain GET, no upgrade", nil, 426, "not_websocket"},
		{"an old WebSocket version", handshake("8"), 400, "invalid_handshake"},
		{"a handshake without a key", func() http.Header { h := handshake("13"); h.Del("Sec-WebSocket-Key"); return h }(), 400, "invalid_handshake"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, n.URL("/v1/ws?key=u1"), nil)
			for k, v := range tc.header {
				req.Header[k] = v
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			out := decode(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || errorCode(out) != tc.code {
				t.Fatalf("got %d %v, want %d %s", resp.StatusCode, out, tc.status, tc.code)
			}
			if p := presenceOf(t, n, "u1"); p["online"] != false {
				t.Fatalf("presence after a refused handshake: %v", p)
			}
			if w := writesToU1(); w != 0 {
				t.Fatalf("the refused handshake wrote u1's presence %d times", w)
			}
		})
	}
	if keys, _ := rdb.Keys(ctx, "herald:{u1}*").Result(); len(keys) != 0 {
		t.Fatalf("left in Redis for u1: %v", keys)
	}

	// The same client, connecting properly, is registered: the
	// notifications above would have seen a write.
	dial(t, n, "key=u1")
	if p := presenceOf(t, n, "u1"); p["online"] != true {
		t.Fatalf("presence of a connected u1: %v", p)
	}
	if w := writesToU1(); w == 0 {
		t.Fatal("a real connection wrote no presence: the check above proves nothing")
	}
}
