package presence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herald-push/herald/internal/batch"
)

// Redis layout. Every key's data lives under its own hash tag, and a node's
// data under the tag {node:<id>}, so that each command touches one slot and
// Redis Cluster needs no redesign.
//
//	herald:nodes               ZSET  node id -> liveness deadline (unix ms)
//	herald:{node:<id>}:info    STRING JSON Node, expires with the TTL
//	herald:{node:<id>}:keys    SET   keys the node holds (for reaping)
//	herald:{<key>}:nodes       HASH  node id -> connection count
const nodesKey = "herald:nodes"

func infoKey(node string) string     { return "herald:{node:" + node + "}:info" }
func nodeKeysKey(node string) string { return "herald:{node:" + node + "}:keys" }
func holdersKey(key string) string   { return "herald:{" + key + "}:nodes" }

// reapBatch bounds how many dead nodes one heartbeat reaps, so a mass failure
// spreads its cleanup over the surviving nodes' heartbeats.
const reapBatch = 8

// Redis is a Store backed by Redis. Each of its methods is one round trip
// (pipelined) in the common case.
type Redis struct {
	rdb redis.UniversalClient
	id  string
	ttl time.Duration

	lookups *batch.Batcher[lookupReq]
	batched atomic.Bool // Run is merging concurrent lookups
}

type lookupReq struct {
	keys []string
	done chan lookupRes
}

type lookupRes struct {
	holders [][]Holder
	err     error
}

// NewRedis returns the Store of node id on rdb; entries of a node count as
// live until ttl after its last heartbeat.
func NewRedis(rdb redis.UniversalClient, id string, ttl time.Duration) *Redis {
	r := &Redis{rdb: rdb, id: id, ttl: ttl}
	r.lookups = batch.New(256, r.lookupBatch)
	return r
}

// Run merges concurrent Lookups into shared pipelines until ctx ends (see
// internal/batch). Without it each Lookup is its own round trip.
func (r *Redis) Run(ctx context.Context) {
	r.batched.Store(true)
	defer r.batched.Store(false)
	r.lookups.Run(ctx)
}

func (r *Redis) deadline(now time.Time) float64 {
	return float64(now.Add(r.ttl).UnixMilli())
}

func (r *Redis) Join(ctx context.Context, n Node) error {
	if err := r.removeNode(ctx, r.id); err != nil {
		return fmt.Errorf("clear previous entries of node %s: %w", r.id, err)
	}
	_, err := r.register(ctx, n, false)
	return err
}

func (r *Redis) Heartbeat(ctx context.Context, n Node) (bool, error) {
	lost, err := r.register(ctx, n, true)
	if err != nil {
		return false, err
	}
	return lost, r.reap(ctx)
}

// register refreshes the node's record; with checkLost it also reports
// whether the record was gone before this refresh.
func (r *Redis) register(ctx context.Context, n Node, checkLost bool) (bool, error) {
	n.ID = r.id
	info, err := json.Marshal(n)
	if err != nil {
		return false, fmt.Errorf("encode node info: %w", err)
	}
	now := time.Now()
	var score *redis.FloatCmd
	_, err = r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		if checkLost {
			score = p.ZScore(ctx, nodesKey, r.id)
		}
		p.ZAdd(ctx, nodesKey, redis.Z{Score: r.deadline(now), Member: r.id})
		p.Set(ctx, infoKey(r.id), info, r.ttl)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return false, fmt.Errorf("register node %s: %w", r.id, err)
	}
	if score == nil {
		return false, nil
	}
	if err := score.Err(); errors.Is(err, redis.Nil) {
		return true, nil
	}
	// A record that had already expired may have been reaped in part by
	// another node: treat it as lost so every entry is written again.
	return score.Val() <= float64(now.UnixMilli()), nil
}

// reap removes the entries of nodes whose liveness ran out. ZREM decides
// which live node does the work when several notice the same death.
func (r *Redis) reap(ctx context.Context) error {
	dead, err := r.rdb.ZRangeByScore(ctx, nodesKey, &redis.ZRangeBy{
		Min: "-inf", Max: strconv.FormatInt(time.Now().UnixMilli(), 10), Count: reapBatch,
	}).Result()
	if err != nil {
		return fmt.Errorf("find expired nodes: %w", err)
	}
	for _, id := range dead {
		if id == r.id {
			continue
		}
		won, err := r.rdb.ZRem(ctx, nodesKey, id).Result()
		if err != nil {
			return fmt.Errorf("claim expired node %s: %w", id, err)
		}
		if won == 0 {
			continue
		}
		if err := r.removeNode(ctx, id); err != nil {
			return err
		}
	}
	return nil
}

// removeNode deletes every entry node id wrote.
func (r *Redis) removeNode(ctx context.Context, id string) error {
	const chunk = 1000
	setKey := nodeKeysKey(id)
	var cursor uint64
	for {
		keys, next, err := r.rdb.SScan(ctx, setKey, cursor, "", chunk).Result()
		if err != nil {
			return fmt.Errorf("list keys of node %s: %w", id, err)
		}
		if len(keys) > 0 {
			_, err = r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				for _, k := range keys {
					p.HDel(ctx, holdersKey(k), id)
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("remove keys of node %s: %w", id, err)
			}
		}
		if next == 0 {
			break
		}
		cursor = next
	}
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, setKey)
		p.Del(ctx, infoKey(id))
		return nil
	})
	if err != nil {
		return fmt.Errorf("remove node %s: %w", id, err)
	}
	return nil
}

func (r *Redis) Set(ctx context.Context, counts []Count) error {
	if len(counts) == 0 {
		return nil
	}
	setKey := nodeKeysKey(r.id)
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, c := range counts {
			if c.Conns > 0 {
				p.HSet(ctx, holdersKey(c.Key), r.id, c.Conns)
				p.SAdd(ctx, setKey, c.Key)
			} else {
				p.HDel(ctx, holdersKey(c.Key), r.id)
				p.SRem(ctx, setKey, c.Key)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write presence of %d keys: %w", len(counts), err)
	}
	return nil
}

func (r *Redis) Lookup(ctx context.Context, keys []string) ([][]Holder, error) {
	if !r.batched.Load() {
		out, err := r.lookup(ctx, [][]string{keys})
		if err != nil {
			return nil, err
		}
		return out[0], nil
	}
	req := lookupReq{keys: keys, done: make(chan lookupRes, 1)}
	if err := r.lookups.Do(ctx, req); err != nil {
		return nil, err
	}
	select {
	case res := <-req.done:
		return res.holders, res.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (r *Redis) lookupBatch(ctx context.Context, reqs []lookupReq) {
	sets := make([][]string, len(reqs))
	for i, q := range reqs {
		sets[i] = q.keys
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := r.lookup(ctx, sets)
	for i, q := range reqs {
		if err != nil {
			q.done <- lookupRes{err: err}
		} else {
			q.done <- lookupRes{holders: out[i]}
		}
	}
}

// lookup reads the holders of several key sets in one pipeline, with one
// read of the live nodes for all of them.
func (r *Redis) lookup(ctx context.Context, sets [][]string) ([][][]Holder, error) {
	cmds := make([][]*redis.MapStringStringCmd, len(sets))
	var live *redis.StringSliceCmd
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, keys := range sets {
			cmds[i] = make([]*redis.MapStringStringCmd, len(keys))
			for j, k := range keys {
				cmds[i][j] = p.HGetAll(ctx, holdersKey(k))
			}
		}
		live = p.ZRangeByScore(ctx, nodesKey, &redis.ZRangeBy{
			Min: "(" + strconv.FormatInt(time.Now().UnixMilli(), 10), Max: "+inf",
		})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("look up keys: %w", err)
	}
	alive := live.Val()
	out := make([][][]Holder, len(sets))
	for i := range sets {
		out[i] = make([][]Holder, len(sets[i]))
		for j, cmd := range cmds[i] {
			for node, v := range cmd.Val() {
				if !slices.Contains(alive, node) {
					continue
				}
				n, err := strconv.Atoi(v)
				if err != nil || n <= 0 {
					continue
				}
				out[i][j] = append(out[i][j], Holder{Node: node, Conns: n})
			}
			slices.SortFunc(out[i][j], func(a, b Holder) int { return strings.Compare(a.Node, b.Node) })
		}
	}
	return out, nil
}

func (r *Redis) Nodes(ctx context.Context) ([]Node, error) {
	ids, err := r.rdb.ZRangeByScore(ctx, nodesKey, &redis.ZRangeBy{
		Min: "(" + strconv.FormatInt(time.Now().UnixMilli(), 10), Max: "+inf",
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	cmds := make([]*redis.StringCmd, len(ids))
	_, err = r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.Get(ctx, infoKey(id))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read node info: %w", err)
	}
	out := make([]Node, 0, len(ids))
	for i, cmd := range cmds {
		var n Node
		if b, err := cmd.Bytes(); err != nil || json.Unmarshal(b, &n) != nil {
			n = Node{ID: ids[i]}
		}
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b Node) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

func (r *Redis) Leave(ctx context.Context) error {
	if err := r.rdb.ZRem(ctx, nodesKey, r.id).Err(); err != nil {
		return fmt.Errorf("deregister node %s: %w", r.id, err)
	}
	return r.removeNode(ctx, r.id)
}
