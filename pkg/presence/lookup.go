package presence

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herald-push/herald/pkg/redisconn"
)

// Lookup reads where keys are held, from live incarnations only.
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
	ctx, cancel := context.WithTimeout(ctx, redisconn.Timeout)
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

// lookup reads the holders of several key sets in one pipeline. Which
// incarnations are live comes from the registry kept in this process (see
// liveness), so a send reads only its keys' shards: no shard is read by
// every send of the cluster.
func (r *Redis) lookup(ctx context.Context, sets [][]string) ([][][]Holder, error) {
	cmds := make([][]*redis.MapStringStringCmd, len(sets))
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, keys := range sets {
			cmds[i] = make([]*redis.MapStringStringCmd, len(keys))
			for j, k := range keys {
				cmds[i][j] = p.HGetAll(ctx, holdersKey(k))
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("look up keys: %w", err)
	}
	entriesRead := time.Now()
	now := r.now().UnixMilli()
	live, err := r.live.get(ctx, r.readLive, time.Time{})
	if err != nil {
		return nil, err
	}
	// An incarnation this process does not know, or thinks expired, sends
	// it to the registry once: a node joined, or heartbeated since.
	if !allKnownLive(cmds, live, now) {
		if live, err = r.live.get(ctx, r.readLive, entriesRead); err != nil {
			return nil, err
		}
	}
	out := make([][][]Holder, len(sets))
	for i := range sets {
		out[i] = make([][]Holder, len(sets[i]))
		for j, cmd := range cmds[i] {
			for node, v := range cmd.Val() {
				inc, count, ok := strings.Cut(v, ":")
				if !ok || live[member(node, inc)] <= now {
					continue
				}
				n, err := strconv.Atoi(count)
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

// allKnownLive reports whether every entry in cmds names an incarnation
// that live holds as alive at now.
func allKnownLive(cmds [][]*redis.MapStringStringCmd, live map[string]int64, now int64) bool {
	for _, set := range cmds {
		for _, cmd := range set {
			for node, v := range cmd.Val() {
				if inc, _, ok := strings.Cut(v, ":"); ok && live[member(node, inc)] <= now {
					return false
				}
			}
		}
	}
	return true
}

// readLive reads every incarnation whose deadline has not passed, with
// its deadline.
func (r *Redis) readLive(ctx context.Context) (map[string]int64, error) {
	zs, err := r.rdb.ZRangeByScoreWithScores(ctx, nodesKey, &redis.ZRangeBy{
		Min: "(" + strconv.FormatInt(r.now().UnixMilli(), 10), Max: "+inf",
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("read live nodes: %w", err)
	}
	out := make(map[string]int64, len(zs))
	for _, z := range zs {
		m, _ := z.Member.(string)
		out[m] = int64(z.Score)
	}
	return out, nil
}
