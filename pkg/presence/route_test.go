package presence_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/pkg/presence"
)

// A send through node a to keys held on b and c is one script: it finds the
// live holders and publishes once to each other node, and says how many
// listened. A node that stopped heartbeating gets nothing, and a cluster
// client is refused the shortcut.
func TestRouteLooksUpAndPublishesInOneRoundTrip(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	ctx := context.Background()
	const ttl = 2 * time.Second
	stores := map[string]*presence.Redis{}
	for _, id := range []string{"a", "b", "c", "dead"} {
		s := presence.NewRedis(rdb, id, ttl)
		if err := s.Join(ctx, presence.Node{ID: id}); err != nil {
			t.Fatal(err)
		}
		stores[id] = s
	}
	set := func(id, key string, conns int) {
		if err := stores[id].Set(ctx, []presence.Count{{Key: key, Conns: conns}}); err != nil {
			t.Fatal(err)
		}
	}
	set("a", "u1", 1)
	set("b", "u1", 2)
	set("c", "u2", 1)
	set("dead", "u2", 5)
	// dead's deadline lapses, as when it stops heartbeating.
	members, err := rdb.ZRange(ctx, "herald:nodes", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		if strings.HasPrefix(m, "dead/") {
			rdb.ZAdd(ctx, "herald:nodes", redis.Z{Score: 1, Member: m})
		}
	}

	sub := rdb.Subscribe(ctx, "herald:node:b")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	// The first Route loads the script; count the round trips of the next.
	if _, err := stores["a"].Route(ctx, []string{"warm-up"}, "a", "herald:node:", nil); err != nil {
		t.Fatal(err)
	}
	trips := &roundTrips{}
	rdb.AddHook(trips)
	routed, err := stores["a"].Route(ctx, []string{"u1", "u2", "nobody"}, "a", "herald:node:", []byte("payload"))
	if err != nil {
		t.Fatal(err)
	}
	if n := trips.n.Load(); n != 1 {
		t.Errorf("Route took %d round trips, want 1", n)
	}
	want := [][]presence.Holder{{{Node: "a", Conns: 1}, {Node: "b", Conns: 2}}, {{Node: "c", Conns: 1}}, nil}
	for i := range want {
		if len(routed.Holders[i]) != len(want[i]) {
			t.Fatalf("holders of key %d: %v, want %v", i, routed.Holders[i], want[i])
		}
		for j := range want[i] {
			if routed.Holders[i][j] != want[i][j] {
				t.Fatalf("holders of key %d: %v, want %v", i, routed.Holders[i], want[i])
			}
		}
	}
	if routed.Receivers["b"] != 1 || routed.Receivers["c"] != 0 || len(routed.Receivers) != 2 {
		t.Fatalf("receivers %v: want b 1 (it subscribed), c 0, a skipped, dead not published to", routed.Receivers)
	}
	msg, err := sub.ReceiveMessage(ctx)
	if err != nil || msg.Payload != "payload" {
		t.Fatalf("b's channel got %v %v", msg, err)
	}
}

// roundTrips counts the commands and pipelines a client sends.
type roundTrips struct{ n atomic.Int64 }

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { h.n.Add(1); return next(ctx, cmd) }
}

func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { h.n.Add(1); return next(ctx, cmds) }
}
