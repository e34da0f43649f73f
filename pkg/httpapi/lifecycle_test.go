package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/herald-push/herald/internal/nodetest"
	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/internal/wait"
	"github.com/herald-push/herald/pkg/httpapi"
	"github.com/herald-push/herald/pkg/node"
	"github.com/herald-push/herald/pkg/redisconn"
)

// A backend sends a stored message with an Idempotency-Key through node a
// and waits for the client's ack; the client is on node b. While the send
// waits, node a is shut down (a rolling restart). The send still finishes
// — the client's ack, which arrives during the shutdown, comes back to it —
// and its answer is recorded, so the backend's retry through node b gets
// that answer back and the client gets the message once.
func TestASendInFlightDuringShutdownFinishesAndItsRetryIsAnsweredNotSentAgain(t *testing.T) {
	r := redistest.Start(t)
	b := nodetest.Start(t, node.Config{NodeID: "b", Redis: redisconn.Config{URL: r.URL()}})

	var logs lockedBuffer
	n, err := node.New(node.Config{
		NodeID:   "a",
		Redis:    redisconn.Config{URL: r.URL()},
		Logger:   slog.New(slog.NewTextHandler(&logs, nil)),
		Liveness: node.Liveness{DrainWindow: 100 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	api, err := httpapi.New(n, httpapi.Config{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- api.Serve(context.Background(), l) }()
	a := "http://" + l.Addr().String()
	nodetest.WaitReady(t, a+"/readyz", http.DefaultClient)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+b.Addr+"/v1/ws?key=u1", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	frames := make(chan []byte, 16)
	go func() {
		for {
			_, f, err := ws.Read(ctx)
			if err != nil {
				close(frames)
				return
			}
			frames <- f
		}
	}()
	wait.Until(t, 10*time.Second, "u1 online on node a", func() bool {
		resp, err := http.Get(a + "/v1/presence/u1")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var p struct{ Online bool }
		return json.NewDecoder(resp.Body).Decode(&p) == nil && p.Online
	})

	const body = `{"key":"u1","data":"the sword","wait":"acked","timeout_ms":10000}`
	type answer struct {
		status   int
		replayed string
		body     map[string]any
	}
	sendTo := func(base string) answer {
		req, _ := http.NewRequest(http.MethodPost, base+"/v1/send", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", "purchase-7731")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return answer{body: map[string]any{"transport_error": err.Error()}}
		}
		defer resp.Body.Close()
		var out map[string]any
		raw, _ := io.ReadAll(resp.Body)
		_ = json.Unmarshal(raw, &out)
		return answer{status: resp.StatusCode, replayed: resp.Header.Get("Idempotent-Replayed"), body: out}
	}
	first := make(chan answer, 1)
	go func() { first <- sendTo(a) }()

	var msg struct{ ID string }
	select {
	case f := <-frames:
		if err := json.Unmarshal(f, &msg); err != nil || msg.ID == "" {
			t.Fatalf("frame %s: %v", f, err)
		}
	case <-ctx.Done():
		t.Fatal("the client got no message")
	}

	// The send now waits for the ack. Shut node a down meanwhile.
	shut := make(chan error, 1)
	go func() { shut <- api.Shutdown(ctx) }()
	wait.Until(t, 10*time.Second, "node a shutting down", func() bool {
		resp, err := http.Get(a + "/readyz")
		if err != nil {
			return true
		}
		resp.Body.Close()
		return resp.StatusCode != http.StatusOK
	})
	ack, _ := json.Marshal(map[string]string{"type": "ack", "id": msg.ID})
	if err := ws.Write(ctx, websocket.MessageText, ack); err != nil {
		t.Fatal(err)
	}

	got := <-first
	results, _ := got.body["results"].(map[string]any)
	u1, _ := results["u1"].(map[string]any)
	if got.status != http.StatusOK || u1["status"] != "acked" {
		t.Fatalf("the send in flight during the shutdown answered %d %v, want 200 with u1 acked", got.status, got.body)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-served; !errors.Is(err, httpapi.ErrServerClosed) {
		t.Fatalf("Serve returned %v, want ErrServerClosed", err)
	}
	for _, bad := range []string{"could not record an idempotent answer", "client is closed"} {
		if strings.Contains(logs.String(), bad) {
			t.Errorf("node a logged %q during the shutdown:\n%s", bad, logs.String())
		}
	}

	again := sendTo("http://" + b.Addr)
	if again.status != http.StatusOK || again.replayed != "true" || again.body["id"] != got.body["id"] {
		t.Fatalf("the retry through node b answered %d replayed=%q %v; want the first answer %v replayed", again.status, again.replayed, again.body, got.body)
	}
	select {
	case f, ok := <-frames:
		if ok {
			t.Fatalf("the client got a second frame %s after the retry; it must get the message once", f)
		}
		t.Fatal("the client's connection to node b ended")
	case <-time.After(500 * time.Millisecond):
	}
}

// An operator who cannot wait gives Shutdown a short deadline while a send
// waits for an ack: the request is cut off rather than outliving the
// deadline, Shutdown says the deadline passed, and Serve still returns
// ErrServerClosed.
func TestAShutdownWhoseDeadlinePassesCutsOffTheRequestsInFlight(t *testing.T) {
	n, err := node.New(node.Config{NodeID: "a", Liveness: node.Liveness{DrainWindow: 50 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	api, err := httpapi.New(n, httpapi.Config{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- api.Serve(context.Background(), l) }()
	a := "http://" + l.Addr().String()
	nodetest.WaitReady(t, a+"/readyz", http.DefaultClient)
	ws, _, err := websocket.Dial(context.Background(), "ws://"+l.Addr().String()+"/v1/ws?key=u1", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()

	sent := make(chan error, 1)
	go func() {
		resp, err := http.Post(a+"/v1/send", "application/json",
			strings.NewReader(`{"key":"u1","data":"x","wait":"acked","timeout_ms":20000}`))
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			err = errors.New("answered " + resp.Status)
		}
		sent <- err
	}()
	if _, _, err := ws.Read(context.Background()); err != nil {
		t.Fatalf("the client got no message: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := api.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown past its deadline: %v, want context.DeadlineExceeded", err)
	}
	select {
	case err := <-sent:
		if err == nil || strings.HasPrefix(err.Error(), "answered") {
			t.Fatalf("the send in flight: %v, want it cut off", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the send in flight outlived the shutdown")
	}
	if err := <-served; !errors.Is(err, httpapi.ErrServerClosed) {
		t.Fatalf("Serve returned %v, want ErrServerClosed", err)
	}
}
