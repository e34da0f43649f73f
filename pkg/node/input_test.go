package node_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/pkg/protocol"
)

func TestBadRequestsGetAClearErrorAndDeliverNothing(t *testing.T) {
	r := redistest.Start(t)
	a := startNode(t, "a", r.URL())
	b := startNode(t, "b", r.URL())
	watcher := dial(t, b, "key=u1&topics=board")

	tooManyKeys := `{"keys":["k0"` + strings.Repeat(`,"k"`, 1000) + `],"data":1}`
	huge := `"` + strings.Repeat("x", 64<<10) + `"`
	tests := []struct {
		name        string
		method      string
		path        string
		contentType string
		body        string
		status      int
		code        string
	}{
		{"malformed JSON", "POST", "/v1/send", "application/json", `{"key":"u1","data":`, 400, "invalid_json"},
		{"not an object", "POST", "/v1/send", "application/json", `["u1"]`, 400, "invalid_json"},
		{"wrong type", "POST", "/v1/send", "application/json", `{"key":5,"data":1}`, 400, "invalid_json"},
		{"two JSON values", "POST", "/v1/send", "application/json", `{"key":"u1","data":1} {"key":"u1","data":2}`, 400, "invalid_json"},
		{"unknown field", "POST", "/v1/send", "application/json", `{"key":"u1","data":1,"priority":9}`, 400, "unknown_field"},
		{"missing data", "POST", "/v1/send", "application/json", `{"key":"u1"}`, 400, "missing_data"},
		{"missing key", "POST", "/v1/send", "application/json", `{"data":1}`, 400, "missing_key"},
		{"empty keys", "POST", "/v1/send", "application/json", `{"keys":[],"data":1}`, 400, "missing_key"},
		{"key and keys", "POST", "/v1/send", "application/json", `{"key":"u1","keys":["u1"],"data":1}`, 400, "invalid_request"},
		{"key with a space", "POST", "/v1/send", "application/json", `{"key":"u 1","data":1}`, 400, "invalid_key"},
		{"empty key", "POST", "/v1/send", "application/json", `{"key":"","data":1}`, 400, "invalid_key"},
		{"key of 129 characters", "POST", "/v1/send", "application/json", `{"key":"` + strings.Repeat("k", 129) + `","data":1}`, 400, "invalid_key"},
		{"one bad key among good", "POST", "/v1/send", "application/json", `{"keys":["u1","u{1}"],"data":1}`, 400, "invalid_key"},
		{"1001 keys", "POST", "/v1/send", "application/json", tooManyKeys, 400, "too_many_keys"},
		{"data over 64 KiB", "POST", "/v1/send", "application/json", `{"key":"u1","data":` + huge + `}`, 413, "message_too_large"},
		{"body far over the limit", "POST", "/v1/send", "application/json", strings.Repeat(" ", 1<<20), 413, "message_too_large"},
		{"text over 64 KiB", "POST", "/v1/send?key=u1", "text/plain", strings.Repeat("x", 64<<10), 413, "message_too_large"},
		{"unsupported content type", "POST", "/v1/send", "application/xml", `<send/>`, 415, "unsupported_media_type"},
		{"text without a key", "POST", "/v1/send", "text/plain", `hello`, 415, "unsupported_media_type"},
		{"empty text", "POST", "/v1/send?key=u1", "text/plain", ``, 400, "missing_data"},
		{"text that is not UTF-8", "POST", "/v1/send?key=u1", "text/plain", "\xff\xfe", 400, "invalid_text"},
		{"query key with a JSON body", "POST", "/v1/send?key=u1", "application/json", `{"data":1}`, 400, "invalid_request"},
		{"bad query key", "POST", "/v1/send?key=u%201", "text/plain", `hello`, 400, "invalid_key"},
		{"invalid topic", "POST", "/v1/topics/bo%20ard", "application/json", `{"data":1}`, 400, "invalid_topic"},
		{"topic body with a key", "POST", "/v1/topics/board", "application/json", `{"key":"u1","data":1}`, 400, "unknown_field"},
		{"topic without data", "POST", "/v1/topics/board", "application/json", `{}`, 400, "missing_data"},
		{"broadcast unknown field", "POST", "/v1/broadcast", "application/json", `{"data":1,"to":"all"}`, 400, "unknown_field"},
		{"presence of a bad key", "GET", "/v1/presence/u%201", "", ``, 400, "invalid_key"},
		{"disconnect a bad key", "DELETE", "/v1/connections/u%201", "", ``, 400, "invalid_key"},
		{"websocket without a key", "GET", "/v1/ws", "", ``, 400, "missing_key"},
		{"websocket with a bad key", "GET", "/v1/ws?key=a/b", "", ``, 400, "invalid_key"},
		{"websocket with a bad topic", "GET", "/v1/ws?key=u1&topics=board,b*d", "", ``, 400, "invalid_topic"},
		{"websocket with too many topics", "GET", "/v1/ws?key=u1&topics=" + strings.Repeat("t,", 32) + "t", "", ``, 400, "too_many_topics"},
		{"websocket with a bad format", "GET", "/v1/ws?key=u1&format=xml", "", ``, 400, "invalid_format"},
		{"unknown endpoint", "GET", "/v1/nothing", "", ``, 404, "not_found"},
		{"wrong method", "GET", "/v1/send", "", ``, 405, "method_not_allowed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, out := do(t, tc.method, a.URL(tc.path), tc.contentType, tc.body)
			if status != tc.status || errorCode(out) != tc.code {
				t.Fatalf("%s %s: got %d %v, want %d %s", tc.method, tc.path, status, out, tc.status, tc.code)
			}
			if msg, _ := out["error"].(map[string]any)["message"].(string); msg == "" {
				t.Errorf("error without a message: %v", out)
			}
		})
	}
	// Nothing of the above reached anyone: the first thing the watcher
	// sees is a marker sent afterwards.
	marker := sendJSON(t, a, `{"key":"u1","data":"marker"}`)
	if f := watcher.next(); f.ID != marker["id"] {
		t.Fatalf("watcher's first frame is %+v, want the marker %v", f, marker["id"])
	}
}

func TestTextSendsFromCurlArriveAsJSONStringsAndRawClientsGetTheBareText(t *testing.T) {
	n := startNode(t, "solo", "")
	full := dial(t, n, "key=u1")
	raw := dial(t, n, "key=u1&format=raw")

	// What `curl -d 'hello' 'localhost:8080/v1/send?key=u1'` sends.
	status, out := post(t, n.URL("/v1/send?key=u1"), "application/x-www-form-urlencoded", `hello "world"`)
	if status != http.StatusOK {
		t.Fatalf("text send: %d %v", status, out)
	}
	if f := full.next(); string(f.Data) != `"hello \"world\""` {
		t.Errorf("json client received data %s", f.Data)
	}
	if b := raw.nextRaw(); string(b) != `hello "world"` {
		t.Errorf("raw client received %q, want the bare text", b)
	}

	// A JSON object is passed to raw clients as it is.
	sendJSON(t, n, `{"key":"u1","data":{"gold":5}}`)
	full.next()
	if b := raw.nextRaw(); string(b) != `{"gold":5}` {
		t.Errorf("raw client received %q", b)
	}

	// curl -d '{...}' without a Content-Type is refused, not guessed to be
	// JSON: a cross-site page can post that type without asking.
	status, out = post(t, n.URL("/v1/send"), "application/x-www-form-urlencoded", `{"key":"u1","data":2}`)
	if status != http.StatusUnsupportedMediaType || errorCode(out) != "unsupported_media_type" {
		t.Fatalf("JSON send with form content type: %d %v, want 415 unsupported_media_type", status, out)
	}
	full.nothing(100 * time.Millisecond)
}

func TestSingleNodeModeServesTheWholeAPIWithoutRedis(t *testing.T) {
	n := startNode(t, "solo", "")
	player := dial(t, n, "key=u1")
	board := dial(t, n, "key=screen&topics=board")

	out := sendJSON(t, n, `{"keys":["u1","u2"],"data":"purchase arrived"}`)
	if !slices.Equal(strs(out["online"]), []string{"u1"}) || !slices.Equal(strs(out["offline"]), []string{"u2"}) {
		t.Errorf("send answered %v", out)
	}
	if f := player.next(); string(f.Data) != `"purchase arrived"` {
		t.Errorf("player received %+v", f)
	}
	if status, _ := post(t, n.URL("/v1/topics/board"), "text/plain", "more benches"); status != 200 {
		t.Fatalf("publish: %d", status)
	}
	if f := board.next(); f.Topic != "board" || string(f.Data) != `"more benches"` {
		t.Errorf("board received %+v", f)
	}
	if p := presenceOf(t, n, "u1"); p["online"] != true || strs(p["nodes"])[0] != "solo" {
		t.Errorf("presence = %v", p)
	}
	_, cl := get(t, n.URL("/v1/cluster"))
	if nodes := cl["nodes"].([]any); len(nodes) != 1 || nodes[0].(map[string]any)["connections"] != float64(2) {
		t.Errorf("cluster = %v", cl)
	}
	status, page := get(t, n.URL("/"))
	if status != http.StatusOK || !strings.Contains(page["body"].(string), "/v1/topics/board") {
		t.Errorf("demo page: %d", status)
	}
}

func TestWhatAClientSendsIsDiscardedAndAnOversizedFrameCloses1009(t *testing.T) {
	n := startNode(t, "solo", "")
	cl := dial(t, n, "key=u1")
	ctx := context.Background()
	for range 100 {
		if err := cl.ws.Write(ctx, websocket.MessageText, []byte(`{"to":"u2","text":"hi"}`)); err != nil {
			t.Fatal(err)
		}
	}
	other := dial(t, n, "key=u2")
	other.nothing(100 * time.Millisecond) // clients never reach each other
	sendJSON(t, n, `{"key":"u1","data":"still connected"}`)
	if f := cl.next(); string(f.Data) != `"still connected"` {
		t.Fatalf("received %+v", f)
	}

	if err := cl.ws.Write(ctx, websocket.MessageText, []byte(strings.Repeat("x", 5000))); err != nil {
		t.Fatal(err)
	}
	if code := cl.closeStatus(); code != protocol.CloseTooBig {
		t.Fatalf("closed with %d, want 1009", code)
	}
}
