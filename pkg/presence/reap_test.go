package presence_test

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/internal/wait"
	"github.com/herald-push/herald/pkg/presence"
	"github.com/herald-push/herald/pkg/redisconn"
)

// subscribeAs opens a connection to addr named name and subscribes it, as
// a node's bus does.
func subscribeAs(t *testing.T, addr, name string) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, ClientName: name})
	t.Cleanup(func() { c.Close() })
	ps := c.Subscribe(t.Context(), "herald:node:"+name)
	t.Cleanup(func() { ps.Close() })
	if _, err := ps.Receive(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// subscribers counts, per connection name, the subscribed connections addr
// holds.
func subscribers(t *testing.T, addr string) map[string]int {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	list, err := c.ClientList(t.Context()).Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for line := range strings.SplitSeq(list, "\n") {
		var name string
		subs := 0
		for f := range strings.FieldsSeq(line) {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "name":
				name = v
			case "sub", "ssub":
				n, _ := strconv.Atoi(v)
				subs += n
			}
		}
		if subs > 0 {
			out[name]++
		}
	}
	return out
}

// The node that reaps a dead node drops, on every master, the dead node's
// subscriptions that were open before it expired — Redis would count them
// as receivers until TCP gives up on them — and leaves alone the
// subscriptions of live nodes and one the dead node opened again after it
// expired (it came back).
func TestAReaperDropsTheDeadNodesOldSubscriptionsOnEveryMasterAndNoOtherConnection(t *testing.T) {
	for _, topo := range []struct {
		name  string
		start func(t *testing.T) (redis.UniversalClient, []string)
	}{
		{"single", func(t *testing.T) (redis.UniversalClient, []string) {
			s := redistest.Start(t)
			return s.Client(), []string{s.Addr()}
		}},
		{"cluster", func(t *testing.T) (redis.UniversalClient, []string) {
			cl := redistest.StartCluster(t)
			cc := cl.Client()
			var mu sync.Mutex
			var masters []string
			err := cc.ForEachMaster(t.Context(), func(ctx context.Context, m *redis.Client) error {
				mu.Lock()
				defer mu.Unlock()
				masters = append(masters, m.Options().Addr)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(masters)
			return cc, masters
		}},
	} {
		t.Run(topo.name, func(t *testing.T) {
			rdb, masters := topo.start(t)
			var killed []int
			reaper := presence.NewRedis(rdb, "a", time.Minute, presence.RedisOptions{
				Reaped: func(node string, n int, err error) {
					if err != nil || node != "b" {
						t.Errorf("reaped %s: %d, %v", node, n, err)
					}
					killed = append(killed, n)
				},
			})
			// Its subscriptions are older than its deadline by the TTL:
			// ages are whole seconds, so the reaper wants two of margin.
			dead := presence.NewRedis(rdb, "b", 3*time.Second, presence.RedisOptions{})
			if err := reaper.Join(t.Context(), presence.Node{}); err != nil {
				t.Fatal(err)
			}
			for _, m := range masters {
				subscribeAs(t, m, redisconn.ClientName("a"))
				subscribeAs(t, m, redisconn.ClientName("b"))
			}
			if err := dead.Join(t.Context(), presence.Node{}); err != nil {
				t.Fatal(err)
			}
			wait.Until(t, 10*time.Second, "b expired", func() bool {
				nodes, err := reaper.Nodes(t.Context())
				return err == nil && len(nodes) == 1
			})
			for _, m := range masters {
				subscribeAs(t, m, redisconn.ClientName("b")) // b came back
			}

			if _, err := reaper.Heartbeat(t.Context(), presence.Node{}); err != nil {
				t.Fatal(err)
			}
			if len(killed) != 1 || killed[0] != len(masters) {
				t.Errorf("the reaper dropped %v subscriptions, want one reap dropping %d", killed, len(masters))
			}
			for _, m := range masters {
				got := subscribers(t, m)
				if got[redisconn.ClientName("b")] != 1 || got[redisconn.ClientName("a")] != 1 {
					t.Errorf("subscribers on %s after the reap: %v, want b's new one and a's", m, got)
				}
			}
		})
	}
}

// A failover (here: Redis handed a new replication id, as a promoted
// replica has) makes a live node take a new incarnation, since the new
// master may have lost its writes. The incarnation it left behind must not
// be reaped like a dead node's: the reaper would drop every subscription
// the node holds, all of them older than that incarnation's deadline, and
// its keys would read offline while it runs. The node retires it itself.
func TestANodeThatTookANewIncarnationAfterAFailoverKeepsItsSubscriptions(t *testing.T) {
	const ttl = 3 * time.Second
	s := redistest.StartWith(t, "--enable-debug-command", "yes")
	rdb := s.Client()
	var reaps []string
	other := presence.NewRedis(rdb, "b", ttl, presence.RedisOptions{
		Reaped: func(node string, n int, err error) { reaps = append(reaps, node+":"+strconv.Itoa(n)) },
	})
	live := presence.NewRedis(rdb, "a", ttl, presence.RedisOptions{})
	for _, p := range []*presence.Redis{other, live} {
		if err := p.Join(t.Context(), presence.Node{}); err != nil {
			t.Fatal(err)
		}
	}
	subscribeAs(t, s.Addr(), redisconn.ClientName("a"))

	if err := rdb.Do(t.Context(), "DEBUG", "CHANGE-REPL-ID").Err(); err != nil {
		t.Fatal(err)
	}
	if lost, err := live.Heartbeat(t.Context(), presence.Node{}); err != nil || lost != presence.LostWrites {
		t.Fatalf("the heartbeat after the failover: lost=%v err=%v, want LostWrites (its registration stands)", lost, err)
	}
	// Both keep beating well past the old incarnation's deadline.
	for end := time.Now().Add(ttl + 2*time.Second); time.Now().Before(end); time.Sleep(ttl / 3) {
		for _, p := range []*presence.Redis{live, other} {
			if _, err := p.Heartbeat(t.Context(), presence.Node{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got := subscribers(t, s.Addr())[redisconn.ClientName("a")]; got != 1 {
		t.Errorf("a's live subscription was dropped (%d left; reaps: %v)", got, reaps)
	}
	if len(reaps) != 0 {
		t.Errorf("b reaped %v, want nothing: a retired its old incarnation itself", reaps)
	}
	members, err := rdb.ZRange(t.Context(), "herald:nodes", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(members) != 2 {
		t.Errorf("registry holds %v, want one incarnation of a and one of b", members)
	}
}
