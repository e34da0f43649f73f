package node_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/pkg/node"
	"github.com/herald-push/herald/pkg/redisconn"
)

// redisTopology is a Redis that the nodes of a story share.
type redisTopology struct {
	name   string
	config redisconn.Config
	// subscribers counts the nodes subscribed to a pub/sub channel.
	subscribers func(t *testing.T, channel string) int64
	// flush empties Redis between stories.
	flush func(t *testing.T)
}

func singleRedis(t *testing.T) redisTopology {
	r := redistest.Start(t)
	rdb := r.Client()
	return redisTopology{
		name:   "single",
		config: redisconn.Config{URL: r.URL()},
		subscribers: func(t *testing.T, channel string) int64 {
			n, err := rdb.PubSubNumSub(t.Context(), channel).Result()
			if err != nil {
				t.Fatal(err)
			}
			return n[channel]
		},
		flush: func(t *testing.T) {
			if err := rdb.FlushAll(t.Context()).Err(); err != nil {
				t.Fatal(err)
			}
		},
	}
}

// redisCluster is three masters with a replica each; channels are sharded,
// so a channel's subscribers are counted on the master that owns it.
func redisCluster(t *testing.T) redisTopology {
	c := redistest.StartCluster(t)
	cc := c.Client()
	return redisTopology{
		name:   "cluster",
		config: redisconn.Config{ClusterAddrs: c.Addrs()},
		subscribers: func(t *testing.T, channel string) int64 {
			master, err := cc.MasterForKey(t.Context(), channel)
			if err != nil {
				t.Fatal(err)
			}
			res, err := master.Do(t.Context(), "pubsub", "shardnumsub", channel).Slice()
			if err != nil || len(res) != 2 {
				t.Fatalf("pubsub shardnumsub: %v %v", res, err)
			}
			n, _ := res[1].(int64)
			return n
		},
		flush: func(t *testing.T) {
			err := cc.ForEachMaster(t.Context(), func(ctx context.Context, m *redis.Client) error { return m.FlushAll(ctx).Err() })
			if err != nil {
				t.Fatal(err)
			}
		},
	}
}

// threeNodesOn starts nodes a, b and c on topo.
func threeNodesOn(t *testing.T, topo redisTopology, tune ...func(*node.Config)) (*testNode, *testNode, *testNode) {
	t.Helper()
	with := append([]func(*node.Config){func(c *node.Config) { c.Redis = topo.config }}, tune...)
	return startNode(t, "a", "", with...), startNode(t, "b", "", with...), startNode(t, "c", "", with...)
}
