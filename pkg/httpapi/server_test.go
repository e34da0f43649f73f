package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/herald-push/herald/internal/nodetest"
	"github.com/herald-push/herald/pkg/httpapi"
	"github.com/herald-push/herald/pkg/node"
)

func newAPI(t testing.TB, cfg node.Config) *httpapi.Server {
	t.Helper()
	n, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	api, err := httpapi.New(n, httpapi.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return api
}

// An operator's process calls Shutdown (on SIGTERM, say): the client is
// closed with 1012, and Serve returns ErrServerClosed, as net/http's does.
func TestShutdownClosesClientsAndMakesServeReturnErrServerClosed(t *testing.T) {
	api := newAPI(t, node.Config{NodeID: "a", Liveness: node.Liveness{DrainWindow: 10 * time.Millisecond}})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- api.Serve(context.Background(), l) }()
	base := "http://" + l.Addr().String()
	nodetest.WaitReady(t, base+"/readyz", http.DefaultClient)
	ws, _, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(base, "http")+"/v1/ws?key=u1", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()

	if err := api.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	select {
	case err := <-served:
		if !errors.Is(err, httpapi.ErrServerClosed) {
			t.Fatalf("Serve returned %v, want ErrServerClosed", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Serve still running after Shutdown returned")
	}
	if _, _, err := ws.Read(context.Background()); websocket.CloseStatus(err) != websocket.StatusServiceRestart {
		t.Fatalf("client read %v, want close 1012", err)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Fatal("the listener still answers after Shutdown")
	}
}

// A developer mounts the API on a server of their own: the node runs from
// New on, so the Handler alone is ready, takes clients and sends.
func TestTheHandlerServesOnAServerOfYourOwn(t *testing.T) {
	api := newAPI(t, node.Config{NodeID: "a"})
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(func() { srv.Close(); api.Shutdown(context.Background()) })
	nodetest.WaitReady(t, srv.URL+"/readyz", http.DefaultClient)

	ws, _, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http")+"/v1/ws?key=u1", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	resp, err := http.Post(srv.URL+"/v1/send?key=u1", "text/plain", strings.NewReader("hi"))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("send: %v %v", resp, err)
	}
	resp.Body.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, b, err := ws.Read(ctx); err != nil || !strings.Contains(string(b), `"data":"hi"`) {
		t.Fatalf("client read %s %v", b, err)
	}
}

// A developer fetches the API's description from any node.
func TestTheOpenAPIDocumentIsServed(t *testing.T) {
	api := newAPI(t, node.Config{NodeID: "a"})
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(func() { srv.Close(); api.Shutdown(context.Background()) })
	resp, err := http.Get(srv.URL + "/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, httpapi.OpenAPI()) {
		t.Fatalf("GET /v1/openapi.json: %d, %d bytes; want 200 and the document", resp.StatusCode, len(body))
	}
	var doc struct{ OpenAPI string }
	if err := json.Unmarshal(body, &doc); err != nil || doc.OpenAPI != "3.1.0" {
		t.Fatalf("served document says openapi %q (%v), want 3.1.0", doc.OpenAPI, err)
	}
}
