// Package nodetest runs real herald nodes inside tests.
package nodetest

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/herald-push/herald/pkg/httpapi"
	"github.com/herald-push/herald/pkg/node"
)

// Node is a node serving on a loopback port.
type Node struct {
	Addr string // host:port
	// Stop shuts the node down gracefully and waits for it; it is also
	// called when the test ends.
	Stop func()
}

// URL is the node's http:// address with path appended.
func (n *Node) URL(path string) string { return "http://" + n.Addr + path }

// Start serves a node built from cfg on a free loopback port, with the
// HTTP adapter's defaults, and returns once /readyz answers 200. Without a
// NodeID it is "node"; without an AdvertiseAddr it advertises the port.
func Start(t testing.TB, cfg node.Config) *Node {
	t.Helper()
	return StartWith(t, "127.0.0.1:0", cfg, httpapi.Config{})
}

// StartAt is Start on addr, for a node that comes back on the address it
// had (waiting up to 5s for the address to be free again).
func StartAt(t testing.TB, addr string, cfg node.Config) *Node {
	t.Helper()
	return StartWith(t, addr, cfg, httpapi.Config{})
}

// StartWith is StartAt with the HTTP adapter configured by api (its
// Listen is set to the address served).
func StartWith(t testing.TB, addr string, cfg node.Config, api httpapi.Config) *Node {
	t.Helper()
	var l net.Listener
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if l, err = net.Listen("tcp", addr); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	api.Listen = l.Addr().String()
	if cfg.AdvertiseAddr == "" {
		cfg.AdvertiseAddr = api.Listen
	}
	if cfg.NodeID == "" {
		cfg.NodeID = "node"
	}
	n, err := node.New(cfg)
	if err != nil {
		t.Fatalf("new node %s: %v", cfg.NodeID, err)
	}
	srv, err := httpapi.New(n, api)
	if err != nil {
		n.Shutdown(context.Background())
		l.Close()
		t.Fatalf("api of node %s: %v", cfg.NodeID, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ctx, l); err != nil {
			t.Errorf("node %s: %v", cfg.NodeID, err)
		}
	}()
	tn := &Node{Addr: l.Addr().String(), Stop: func() { cancel(); <-done }}
	t.Cleanup(tn.Stop)
	WaitReady(t, tn.URL("/readyz"), http.DefaultClient)
	return tn
}

// WaitReady polls url until it answers 200, for up to 10 seconds.
func WaitReady(t testing.TB, url string, client *http.Client) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if resp, err := client.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready within 10s", url)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
