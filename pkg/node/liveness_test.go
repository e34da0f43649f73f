package node_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/internal/wait"
	"github.com/herald-push/herald/pkg/node"
	"github.com/herald-push/herald/pkg/protocol"
)

// skewed runs a node whose clock is off by skew.
func skewed(skew time.Duration) func(*node.Config) {
	return func(c *node.Config) { c.Clock = func() time.Time { return time.Now().Add(skew) } }
}

// staysOnline checks, over several heartbeats, that key reads online from n.
func staysOnline(t *testing.T, n *testNode, key string, over time.Duration) {
	t.Helper()
	for end := time.Now().Add(over); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if p := presenceOf(t, n, key); p["online"] != true {
			t.Fatalf("%s read offline from %s: %v", key, n.ID, p)
		}
	}
}

// A node whose wall clock is 20 s behind holds its clients like any other:
// their keys read online from the other nodes, plain sends reach them and
// stored ones are delivered. Before, its heartbeats wrote deadlines 20 s
// in the past, so every other node read it as dead, answered its keys
// offline and reaped it, while its own /readyz said 200.
func TestANodeWhoseClockIs20sBehindKeepsItsKeysOnlineAndGetsTheirSends(t *testing.T) {
	r := redistest.Start(t)
	a := startNode(t, "a", r.URL())
	b := startNode(t, "b", r.URL(), skewed(-20*time.Second))
	phone := dial(t, b, "key=u1")
	wait.Until(t, 5*time.Second, "u1 online from a", func() bool { return presenceOf(t, a, "u1")["online"] == true })
	staysOnline(t, a, "u1", 2*time.Second) // the TTL is 3s: heartbeats and reaps happened

	out := sendJSON(t, a, `{"key":"u1","data":"plain"}`)
	if strs(out["online"])[0] != "u1" {
		t.Fatalf("plain send to u1: %v", out)
	}
	if f := phone.next(); string(f.Data) != `"plain"` {
		t.Fatalf("got %s, want the plain send", f.Data)
	}
	sendJSON(t, a, `{"key":"u1","data":"kept","store":true}`)
	if f := phone.next(); string(f.Data) != `"kept"` {
		t.Fatalf("got %s, want the stored send", f.Data)
	}

	line := metricLine(t, b, "herald_clock_offset_seconds")
	v, _ := strconv.ParseFloat(strings.TrimPrefix(line, "herald_clock_offset_seconds "), 64)
	if v < 19 || v > 21 {
		t.Fatalf("b's clock offset metric reads %q, want about 20", line)
	}
}

// A node whose wall clock is 20 s ahead does not reap the healthy nodes:
// their keys stay online over several heartbeats and reach their clients.
// Before, it found every other node's deadline past at each heartbeat and
// removed their keys.
func TestANodeWhoseClockIs20sAheadDoesNotReapHealthyNodes(t *testing.T) {
	r := redistest.Start(t)
	a := startNode(t, "a", r.URL())
	b := startNode(t, "b", r.URL(), skewed(20*time.Second))
	phone := dial(t, a, "key=u2")
	wait.Until(t, 5*time.Second, "u2 online from b", func() bool { return presenceOf(t, b, "u2")["online"] == true })
	staysOnline(t, b, "u2", 2*time.Second)
	staysOnline(t, a, "u2", 300*time.Millisecond)

	sendJSON(t, b, `{"key":"u2","data":"hi"}`)
	if f := phone.next(); string(f.Data) != `"hi"` {
		t.Fatalf("got %s", f.Data)
	}
}

// A node cut off from Redis (Redis stops answering: heartbeats hang as in
// a partition) closes its clients with 1013 "node lost Redis; reconnect"
// once its heartbeats have failed for --fence-after, so they reconnect to
// a node that still reaches Redis instead of waiting on one whose keys
// read offline everywhere. When Redis answers again it takes clients again.
func TestANodeThatLostRedisClosesItsClientsWith1013SoTheyReconnectElsewhere(t *testing.T) {
	r := redistest.Start(t)
	const fenceAfter = time.Second
	n := startNode(t, "a", r.URL(), func(c *node.Config) { c.FenceAfter = fenceAfter })
	phone := dial(t, n, "key=u1")

	r.Pause()
	paused := time.Now()
	t.Cleanup(r.Resume)
	err := phone.closeErr(10 * time.Second)
	if code := protocol.CloseCode(websocket.CloseStatus(err)); code != protocol.CloseTryAgainLater {
		t.Fatalf("client closed with %v (%v), want 1013", code, err)
	}
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Reason != "node lost Redis; reconnect" {
		t.Fatalf("close reason %q, want %q", ce.Reason, "node lost Redis; reconnect")
	}
	// The last good heartbeat came at most TTL/3 before the pause; one
	// that hangs fails after TTL/3 at most.
	t.Logf("client closed with 1013 %v after Redis stopped answering (fence after %v, ttl 3s)", time.Since(paused).Round(time.Millisecond), fenceAfter)
	if line := metricLine(t, n, "herald_fences_total"); line != "herald_fences_total 1" {
		t.Errorf("fence metric: %q", line)
	}

	r.Resume()
	waitReady(t, n)
	again := dial(t, n, "key=u1")
	sendJSON(t, n, `{"key":"u1","data":"back"}`)
	if f := again.next(); string(f.Data) != `"back"` {
		t.Fatalf("got %s", f.Data)
	}
}

// closeErr waits up to within for the connection to end and returns the
// error that ended it.
func (c *client) closeErr(within time.Duration) error {
	c.t.Helper()
	deadline := time.After(within)
	for {
		select {
		case <-c.frames:
		case err := <-c.closed:
			return err
		case <-deadline:
			c.t.Fatalf("connection still open after %v", within)
		}
	}
}
