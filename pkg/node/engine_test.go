package node_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/herald-push/herald/pkg/inbox"
	"github.com/herald-push/herald/pkg/node"
)

// A Go program embeds the engine and drives it with plain calls: no HTTP,
// typed results, typed errors.
func TestTheEngineIsDrivenWithoutHTTP(t *testing.T) {
	n, err := node.New(node.Config{NodeID: "embedded", Storage: node.Storage{HistoryTopics: []string{"board"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown(context.Background()) })
	ctx := context.Background()

	res, err := n.Send(ctx, node.SendRequest{Keys: []string{"u1", "u2", "u1"}, Data: []byte(`{"gold":5}`), Store: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Offline, []string{"u1", "u2"}) || res.Results["u1"].Status != node.StatusStored {
		t.Fatalf("stored send to two offline keys: %+v", res)
	}

	_, err = n.Send(ctx, node.SendRequest{Keys: []string{"no spaces"}, Data: []byte(`1`)})
	var e *node.Error
	if !errors.As(err, &e) || e.Kind != node.KindInvalid || e.Code != "invalid_key" {
		t.Fatalf("send to an invalid key: %v, want an invalid_key *node.Error", err)
	}
	_, err = n.Send(ctx, node.SendRequest{Keys: []string{"u1"}, Data: make([]byte, 70<<10)})
	if !errors.As(err, &e) || e.Kind != node.KindTooLarge {
		t.Fatalf("oversized send: %v", err)
	}

	first, err := n.Publish(ctx, node.PublishRequest{Topic: "board", Data: []byte(`"hello"`), IdempotencyKey: "post-1"})
	if err != nil {
		t.Fatal(err)
	}
	again, err := n.Publish(ctx, node.PublishRequest{Topic: "board", Data: []byte(`"hello"`), IdempotencyKey: "post-1"})
	if err != nil || !again.Replayed || again.ID != first.ID {
		t.Fatalf("retried publish: %+v %v, want the first result %+v replayed", again, err, first)
	}

	p, err := n.Presence(ctx, "u1")
	if err != nil || p.Online {
		t.Fatalf("presence of an offline key: %+v %v", p, err)
	}
	_, err = n.Send(ctx, node.SendRequest{Keys: []string{"u1"}, Data: []byte(`1`), Wait: inbox.WaitAcked, Timeout: -1})
	if !errors.As(err, &e) || e.Code != "invalid_timeout" {
		t.Fatalf("negative wait timeout: %v", err)
	}
}
