package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/internal/wait"
)

// stall stops p with SIGSTOP, as a long GC pause or a frozen VM would, and
// makes sure the test ends with it running again (a stopped process would
// outlive its kill in the cleanup only as a zombie).
func stall(t *testing.T, p *process) (resume func()) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	resume = func() { once.Do(func() { _ = p.cmd.Process.Signal(syscall.SIGCONT) }) }
	t.Cleanup(resume)
	return resume
}

// postJSON posts body to p's path and decodes the answer.
func postJSON(t *testing.T, p *process, path, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post("http://"+p.addr+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("POST %s: %d %s", path, resp.StatusCode, b)
	}
	return resp.StatusCode, out
}

// frames reads ws's text frames onto a channel until it closes.
func frames(ws *websocket.Conn) <-chan string {
	ch := make(chan string, 1024)
	go func() {
		defer close(ch)
		for {
			_, b, err := ws.Read(context.Background())
			if err != nil {
				return
			}
			ch <- string(b)
		}
	}()
	return ch
}

// A backend's stored sends to a key whose node is stalled past its TTL are
// answered 200 stored (the node was reaped, so the key reads offline); the
// client, still connected to the stalled node the whole time, gets every
// one of them once the node runs again — without any later send and
// without reconnecting. Before, the node wrote its presence back and
// turned ready but read nothing from the inbox: the messages waited for
// the next send to the key to show the gap.
func TestStoredSendsToAStalledNodesKeyReachItsConnectedClientWhenItResumes(t *testing.T) {
	r := redistest.Start(t)
	const ttl = 2 * time.Second
	a := startProcess(t, "--node-id", "a", "--redis-url", r.URL(), "--presence-ttl", ttl.String())
	b := startProcess(t, "--node-id", "b", "--redis-url", r.URL(), "--presence-ttl", ttl.String())
	got := frames(connect(t, b, "key=u1"))
	wait.Until(t, 5*time.Second, "u1 online", func() bool { return online(t, a, "u1") })

	resume := stall(t, b)
	wait.Until(t, ttl+3*time.Second, "a reaps the stalled b", func() bool { return !online(t, a, "u1") })
	const n = 20
	for i := range n {
		status, out := postJSON(t, a, "/v1/send", fmt.Sprintf(`{"key":"u1","data":"m%d","store":true}`, i))
		if status != http.StatusOK {
			t.Fatalf("stored send %d: %d %v", i, status, out)
		}
	}
	resume()
	resumed := time.Now()

	seen := map[string]bool{}
	deadline := time.After(10 * time.Second)
	for len(seen) < n {
		select {
		case f, ok := <-got:
			if !ok {
				t.Fatalf("the client's connection closed after %d of %d stored messages", len(seen), n)
			}
			var m struct{ Data string }
			_ = json.Unmarshal([]byte(f), &m)
			seen[m.Data] = true
		case <-deadline:
			t.Fatalf("the client got %d of %d stored messages within 10s of the node resuming, with no later send", len(seen), n)
		}
	}
	t.Logf("all %d stored messages reached the client %v after the node resumed", n, time.Since(resumed).Round(time.Millisecond))
}

// A node stalled past its TTL still has its subscription open in Redis,
// which counted it as a receiver: publishes to it counted 1 and were lost.
// The node that reaps it drops that subscription, so with the node still
// stopped a broadcast counts only the live node and a send to its key
// reads offline.
func TestTheReaperDropsAStalledNodesSubscriptionSoRedisNoLongerCountsItAsListening(t *testing.T) {
	r := redistest.Start(t)
	const ttl = 2 * time.Second
	a := startProcess(t, "--node-id", "a", "--redis-url", r.URL(), "--presence-ttl", ttl.String())
	b := startProcess(t, "--node-id", "b", "--redis-url", r.URL(), "--presence-ttl", ttl.String())
	connect(t, b, "key=u1")
	wait.Until(t, 5*time.Second, "u1 online", func() bool { return online(t, a, "u1") })
	broadcastNodes := func() float64 {
		status, out := postJSON(t, a, "/v1/broadcast", `{"data":"hello"}`)
		if status != http.StatusOK {
			t.Fatalf("broadcast: %d %v", status, out)
		}
		n, _ := out["nodes"].(float64)
		return n
	}
	if n := broadcastNodes(); n != 2 {
		t.Fatalf("before the stall a broadcast reached %v nodes, want 2", n)
	}

	stall(t, b)
	stopped := time.Now()
	wait.Until(t, ttl+3*time.Second, "u1 offline once a reaped b", func() bool { return !online(t, a, "u1") })
	// The kill comes with the reap, in the same heartbeat of a.
	wait.Until(t, 2*time.Second, "a broadcast counts only a", func() bool { return broadcastNodes() == 1 })
	t.Logf("with b stopped, Redis stopped counting its subscription %v after the stall (ttl %v)", time.Since(stopped).Round(time.Millisecond), ttl)
	status, out := postJSON(t, a, "/v1/send", `{"key":"u1","data":"lost?"}`)
	if status != http.StatusOK || strings.Join(anyStrings(out["offline"]), ",") != "u1" {
		t.Fatalf("a send to the stalled node's key: %d %v, want 200 with u1 offline", status, out)
	}
}

func anyStrings(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, x := range list {
		out = append(out, fmt.Sprint(x))
	}
	return out
}
