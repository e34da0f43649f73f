package node_test

import (
	"context"
	"errors"
	"testing"

	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/pkg/node"
	"github.com/herald-push/herald/pkg/redisconn"
)

// A Go program embedding the engine stops it in two steps: Drain takes it
// out of service (not ready, no new connections) while sends still work,
// so that what its own transport has in flight can finish; Close then
// stops it, and may be called again.
func TestAnEmbeddedEngineDrainsThenCloses(t *testing.T) {
	r := redistest.Start(t)
	n, err := node.New(node.Config{NodeID: "embedded", Redis: redisconn.Config{URL: r.URL()}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := n.Drain(ctx); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if err := n.Drain(ctx); err != nil {
		t.Fatalf("a second Drain: %v", err)
	}
	var e *node.Error
	if err := n.Ready(); !errors.As(err, &e) || e.Code != "not_ready" {
		t.Fatalf("Ready while drained: %v, want not_ready", err)
	}
	if _, err := n.Connect(ctx, node.ConnectRequest{Key: "u1", IP: "127.0.0.1"}); !errors.As(err, &e) || e.Kind != node.KindUnavailable {
		t.Fatalf("Connect while drained: %v, want the node's draining error", err)
	}
	first, err := n.Send(ctx, node.SendRequest{Keys: []string{"u1"}, Data: []byte(`"gold"`), Store: true, IdempotencyKey: "order-1"})
	if err != nil || first.Results["u1"].Status != node.StatusStored {
		t.Fatalf("stored send while drained: %+v %v, want it stored", first, err)
	}
	again, err := n.Send(ctx, node.SendRequest{Keys: []string{"u1"}, Data: []byte(`"gold"`), Store: true, IdempotencyKey: "order-1"})
	if err != nil || !again.Replayed || again.ID != first.ID {
		t.Fatalf("its retry while drained: %+v %v, want the first answer replayed", again, err)
	}

	if err := n.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case <-n.Stopped():
	default:
		t.Fatal("Stopped not closed after Close returned")
	}
	if err := n.Close(ctx); err != nil {
		t.Fatalf("a second Close: %v", err)
	}
	if err := n.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown after Close: %v", err)
	}
	if _, err := n.Send(ctx, node.SendRequest{Keys: []string{"u1"}, Data: []byte(`"gold"`), Store: true}); err == nil {
		t.Fatal("a stored send after Close succeeded; the engine's Redis clients are closed")
	}
}
