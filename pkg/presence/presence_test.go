package presence_test

import (
	"context"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
	"testing"
	"time"

	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/pkg/presence"
	"github.com/herald-push/herald/pkg/presence/presencetest"
)

func TestMemoryStore(t *testing.T) {
	presencetest.Run(t, func(t *testing.T, ttl time.Duration) func(string) presence.Store {
		m := presence.NewMemory(ttl)
		return m.Store
	})
}

func TestRedisStore(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	presencetest.Run(t, func(t *testing.T, ttl time.Duration) func(string) presence.Store {
		if err := rdb.FlushAll(t.Context()).Err(); err != nil {
			t.Fatal(err)
		}
		return func(id string) presence.Store { return presence.NewRedis(rdb, id, ttl, presence.RedisOptions{}) }
	})
}

func TestRedisStoreWithBatchedLookups(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	presencetest.Run(t, func(t *testing.T, ttl time.Duration) func(string) presence.Store {
		if err := rdb.FlushAll(t.Context()).Err(); err != nil {
			t.Fatal(err)
		}
		return func(id string) presence.Store {
			s := presence.NewRedis(rdb, id, ttl, presence.RedisOptions{})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { s.Run(ctx); close(done) }()
			t.Cleanup(func() { cancel(); <-done })
			return s
		}
	})
}

// commandsProcessed reads Redis's running count of executed commands.
func commandsProcessed(t *testing.T, rdb *redis.Client) int64 {
	t.Helper()
	info, err := rdb.Info(t.Context(), "stats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "total_commands_processed:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no total_commands_processed in INFO")
	return 0
}

func TestHeartbeatUpkeepDoesNotGrowWithTheNumberOfKeys(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	ctx := t.Context()
	const heartbeats = 20
	perHeartbeat := map[int]float64{}
	for _, keys := range []int{10, 15000} {
		if err := rdb.FlushAll(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		s := presence.NewRedis(rdb, "a", time.Minute, presence.RedisOptions{})
		if err := s.Join(ctx, presence.Node{}); err != nil {
			t.Fatal(err)
		}
		counts := make([]presence.Count, keys)
		for i := range counts {
			counts[i] = presence.Count{Key: "u" + strconv.Itoa(i), Conns: 1}
		}
		// The first heartbeat on a Redis loads its script.
		if _, err := s.Heartbeat(ctx, presence.Node{}); err != nil {
			t.Fatal(err)
		}
		before := commandsProcessed(t, rdb)
		if err := s.Set(ctx, counts); err != nil {
			t.Fatal(err)
		}
		afterSet := commandsProcessed(t, rdb)
		for range heartbeats {
			if _, err := s.Heartbeat(ctx, presence.Node{}); err != nil {
				t.Fatal(err)
			}
		}
		afterBeats := commandsProcessed(t, rdb)
		// Each INFO counts itself once.
		perHeartbeat[keys] = float64(afterBeats-afterSet-1) / heartbeats
		t.Logf("%5d keys: registering them took %.2f commands per key; a heartbeat takes %.1f commands",
			keys, float64(afterSet-before-1)/float64(keys), perHeartbeat[keys])
	}
	if perHeartbeat[10] != perHeartbeat[15000] {
		t.Fatalf("heartbeat cost grew with keys: %v", perHeartbeat)
	}
}

// expire moves every liveness deadline of node into the past, as if the node
// had stalled (a GC pause, a long Redis blip) for longer than the TTL.
func expire(t *testing.T, rdb redis.UniversalClient, node string) {
	t.Helper()
	members, err := rdb.ZRange(t.Context(), "herald:nodes", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		if strings.HasPrefix(m, node+"/") {
			if err := rdb.ZAdd(t.Context(), "herald:nodes", redis.Z{Score: 1, Member: m}).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestANodeThatComesBackWhileBeingReapedKeepsItsKeys(t *testing.T) {
	ctx := t.Context()
	rdb := redistest.Start(t).Client()
	a := presence.NewRedis(rdb, "a", time.Minute, presence.RedisOptions{})
	b := presence.NewRedis(rdb, "b", time.Minute, presence.RedisOptions{})
	for _, s := range []*presence.Redis{a, b} {
		if err := s.Join(ctx, presence.Node{}); err != nil {
			t.Fatal(err)
		}
	}
	held := []presence.Count{{Key: "u1", Conns: 1}, {Key: "u2", Conns: 2}}
	if err := a.Set(ctx, held); err != nil {
		t.Fatal(err)
	}
	expire(t, rdb, "a")

	// a wakes up after b claimed it and before b removed its entries, and
	// does what a node does when presence lost it: write its keys again.
	woke := false
	presence.SetReapHook(b, func(node string) {
		if node != "a" {
			return
		}
		woke = true
		lost, err := a.Heartbeat(ctx, presence.Node{})
		if err != nil || lost != presence.LostNode {
			t.Errorf("a's heartbeat while being reaped: lost=%v err=%v, want LostNode", lost, err)
		}
		if err := a.Set(ctx, held); err != nil {
			t.Error(err)
		}
	})
	if _, err := b.Heartbeat(ctx, presence.Node{}); err != nil {
		t.Fatal(err)
	}
	if !woke {
		t.Fatal("b did not reap a: the test did not exercise the interleaving")
	}
	if lost, err := a.Heartbeat(ctx, presence.Node{}); err != nil || lost != presence.LostNothing {
		t.Fatalf("a's next heartbeat: lost=%v err=%v, want alive", lost, err)
	}
	got, err := b.Lookup(ctx, []string{"u1", "u2"})
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range held {
		if len(got[i]) != 1 || got[i][0] != (presence.Holder{Node: "a", Conns: c.Conns}) {
			t.Errorf("%s after a came back = %v, want held by a with %d connections", c.Key, got[i], c.Conns)
		}
	}
}

func TestRedisClusterStore(t *testing.T) {
	cluster := redistest.StartCluster(t)
	cc := cluster.Client()
	presencetest.Run(t, func(t *testing.T, ttl time.Duration) func(string) presence.Store {
		if err := cluster.FlushAll(t.Context()); err != nil {
			t.Fatal(err)
		}
		return func(id string) presence.Store { return presence.NewRedis(cc, id, ttl, presence.RedisOptions{}) }
	})
}
