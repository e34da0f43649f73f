package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/herald-push/herald/internal/apitest"
	"github.com/herald-push/herald/internal/nodetest"
	"github.com/herald-push/herald/pkg/node"
	"github.com/herald-push/herald/pkg/protocol"
	"github.com/herald-push/herald/pkg/redisconn"
)

// Every answer these stories receive is checked against the API's OpenAPI
// document.
func TestMain(m *testing.M) { os.Exit(apitest.Main(m)) }

// testNode is a node serving on a loopback port.
type testNode struct {
	ID   string
	Addr string
	stop func() // graceful shutdown, waits until Serve returns
}

func (n *testNode) URL(path string) string { return "http://" + n.Addr + path }

// startNode runs a node; redisURL "" runs it alone. It returns once /readyz
// answers 200.
func startNode(t *testing.T, id, redisURL string, tune ...func(*node.Config)) *testNode {
	t.Helper()
	cfg := node.Config{
		NodeID:   id,
		Redis:    redisconn.Config{URL: redisURL},
		Liveness: node.Liveness{PresenceTTL: 3 * time.Second, DrainWindow: 200 * time.Millisecond},
	}
	for _, f := range tune {
		f(&cfg)
	}
	n := nodetest.Start(t, cfg)
	return &testNode{ID: id, Addr: n.Addr, stop: n.Stop}
}

func waitReady(t *testing.T, n *testNode) {
	t.Helper()
	nodetest.WaitReady(t, n.URL("/readyz"), http.DefaultClient)
}

// client is a real WebSocket client whose frames arrive on a channel.
type client struct {
	t      *testing.T
	ws     *websocket.Conn
	frames chan []byte
	closed chan error // the error that ended reading
}

// dial connects to node with the given query and starts reading.
func dial(t *testing.T, n *testNode, query string) *client {
	t.Helper()
	c := dialPaused(t, n, query)
	c.startReading()
	return c
}

// dialPaused connects without reading: the client behaves like one that
// stopped reading its socket.
func dialPaused(t *testing.T, n *testNode, query string) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, "ws://"+n.Addr+"/v1/ws?"+query, nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s?%s: status %d: %v", n.ID, query, status, err)
	}
	ws.SetReadLimit(1 << 20)
	c := &client{t: t, ws: ws, frames: make(chan []byte, 4096), closed: make(chan error, 1)}
	t.Cleanup(func() { ws.CloseNow() })
	return c
}

func (c *client) startReading() {
	go func() {
		for {
			_, b, err := c.ws.Read(context.Background())
			if err != nil {
				c.closed <- err
				return
			}
			c.frames <- b
		}
	}()
}

// frame is a decoded server frame.
type frame struct {
	ID    string          `json:"id"`
	Key   string          `json:"key"`
	Topic string          `json:"topic"`
	Data  json.RawMessage `json:"data"`
	TS    int64           `json:"ts"`
}

// next returns the next raw frame, failing after a few seconds.
func (c *client) nextRaw() []byte {
	c.t.Helper()
	select {
	case b := <-c.frames:
		return b
	case err := <-c.closed:
		c.t.Fatalf("connection ended while waiting for a frame: %v", err)
	case <-time.After(5 * time.Second):
		c.t.Fatal("no frame within 5s")
	}
	return nil
}

func (c *client) next() frame {
	c.t.Helper()
	b := c.nextRaw()
	var f frame
	if err := json.Unmarshal(b, &f); err != nil {
		c.t.Fatalf("frame %s is not JSON: %v", b, err)
	}
	return f
}

// nothing asserts that no frame arrives within d.
func (c *client) nothing(d time.Duration) {
	c.t.Helper()
	select {
	case b := <-c.frames:
		c.t.Fatalf("unexpected frame %s", b)
	case <-time.After(d):
	}
}

// closeStatus waits for the connection to end and returns its close code.
func (c *client) closeStatus() protocol.CloseCode {
	c.t.Helper()
	for {
		select {
		case <-c.frames:
		case err := <-c.closed:
			return protocol.CloseCode(websocket.CloseStatus(err))
		case <-time.After(10 * time.Second):
			c.t.Fatal("connection still open after 10s")
		}
	}
}

// post sends body with content type and decodes the JSON answer.
func post(t *testing.T, url, contentType, body string) (int, map[string]any) {
	t.Helper()
	return do(t, http.MethodPost, url, contentType, body)
}

func get(t *testing.T, url string) (int, map[string]any) {
	t.Helper()
	return do(t, http.MethodGet, url, "", "")
}

func do(t *testing.T, method, url, contentType, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(bytes.TrimSpace(raw)) > 0 && json.Unmarshal(raw, &out) != nil {
		out = map[string]any{"body": string(raw)}
	}
	return resp.StatusCode, out
}

// sendJSON posts a JSON send and requires 200.
func sendJSON(t *testing.T, n *testNode, body string) map[string]any {
	t.Helper()
	status, out := post(t, n.URL("/v1/send"), "application/json", body)
	if status != http.StatusOK {
		t.Fatalf("send %s on %s: status %d %v", body, n.ID, status, out)
	}
	return out
}

func presenceOf(t *testing.T, n *testNode, key string) map[string]any {
	t.Helper()
	status, out := get(t, n.URL("/v1/presence/"+key))
	if status != http.StatusOK {
		t.Fatalf("presence of %s: %d %v", key, status, out)
	}
	return out
}

func errorCode(out map[string]any) string {
	e, _ := out["error"].(map[string]any)
	code, _ := e["code"].(string)
	return code
}

func strs(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, x := range list {
		out = append(out, fmt.Sprint(x))
	}
	return out
}
