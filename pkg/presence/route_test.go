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
// listened. A node that stopped heartbeating gets nothing. Only holders
// the caller's copy of the registry does not hold as live (the dead one,
// and one that joined after the copy was read) are looked up in the
// registry by the script.
func TestRouteLooksUpAndPublishesInOneRoundTrip(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	ctx := context.Background()
	const ttl = 2 * time.Second
	stores := map[string]*presence.Redis{}
	for _, id := range []string{"a", "b", "c", "dead"} {
		s := presence.NewRedis(rdb, id, ttl, presence.RedisOptions{})
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
	late := presence.NewRedis(rdb, "late", ttl, presence.RedisOptions{})
	if err := late.Join(ctx, presence.Node{ID: "late"}); err != nil {
		t.Fatal(err)
	}
	if err := late.Set(ctx, []presence.Count{{Key: "u3", Conns: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	trips := &roundTrips{}
	rdb.AddHook(trips)
	routed, err := stores["a"].Route(ctx, []string{"u1", "u2", "nobody", "u3"}, "a", "herald:node:", []byte("payload"))
	if err != nil {
		t.Fatal(err)
	}
	if n := trips.n.Load(); n != 1 {
		t.Errorf("Route took %d round trips, want 1", n)
	}
	want := [][]presence.Holder{{{Node: "a", Conns: 1}, {Node: "b", Conns: 2}}, {{Node: "c", Conns: 1}}, nil, {{Node: "late", Conns: 1}}}
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
	if routed.Receivers["b"] != 1 || routed.Receivers["c"] != 0 || routed.Receivers["late"] != 0 || len(routed.Receivers) != 3 {
		t.Fatalf("receivers %v: want b 1 (it subscribed), c and late 0, a skipped, dead not published to", routed.Receivers)
	}
	stats, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stats, "cmdstat_zscore:calls=2,") {
		t.Errorf("the script looked up the registry other than for dead and late only:\n%s", stats)
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
