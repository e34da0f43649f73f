package presence

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herald-push/herald/internal/batch"
	"github.com/herald-push/herald/pkg/redisconn"
)

// Redis layout. Every key's data lives under its own hash tag, and a node's
// data under the tag {node:<id>}, so that each command and script touches
// one slot and the layout works unchanged on Redis Cluster.
//
//	herald:nodes                   ZSET  <id>/<incarnation> -> liveness deadline (unix ms)
//	herald:{node:<id>}:info        STRING JSON Node, expires with the TTL
//	herald:{node:<id>}:keys:<inc>  SET   keys the incarnation holds (for reaping)
//	herald:{<key>}:nodes           HASH  node id -> "<incarnation>:<connection count>"
//
// An incarnation is a random tag a node takes when it joins and again
// whenever it learns that presence may have forgotten some of its writes
// (it was reaped, Redis restarted, a master failed over). Entries count only
// while their incarnation is live, and a reaper removes only the entries of
// the incarnation it saw expire, each with a check in the entry's own slot:
// a node that comes back while it is being reaped writes under a new
// incarnation, which the reaper leaves alone.
const nodesKey = "herald:nodes"

func infoKey(node string) string          { return "herald:{node:" + node + "}:info" }
func nodeKeysKey(node, inc string) string { return "herald:{node:" + node + "}:keys:" + inc }
func holdersKey(key string) string        { return "herald:{" + key + "}:nodes" }
func member(node, inc string) string      { return node + "/" + inc }

// splitMember is member's inverse; node ids never hold a '/'.
func splitMember(m string) (node, inc string) {
	i := strings.LastIndexByte(m, '/')
	if i < 0 {
		return m, ""
	}
	return m[:i], m[i+1:]
}

// reapBatch bounds how many dead nodes one heartbeat reaps, so a mass failure
// spreads its cleanup over the surviving nodes' heartbeats.
const reapBatch = 8

// refreshScript extends a live incarnation's deadline, and only a live one:
// an incarnation whose deadline passed may be being reaped, so its node must
// take a new one rather than revive it.
var refreshScript = redis.NewScript(`
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and tonumber(s) > tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
  return 0
end
return 1`)

// claimScript lets exactly one reaper take an expired incarnation.
var claimScript = redis.NewScript(`
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and tonumber(s) <= tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 1
end
return 0`)

// removeEntryScript deletes a key's entry of a node only if the entry still
// belongs to the given incarnation.
var removeEntryScript = redis.NewScript(`
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v and string.sub(v, 1, #ARGV[2] + 1) == ARGV[2] .. ':' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 1
end
return 0`)

// Redis is a Store backed by Redis. Each of its methods is one round trip
// (pipelined) in the common case.
type Redis struct {
	rdb redis.UniversalClient
	id  string
	ttl time.Duration

	lookups *batch.Batcher[lookupReq]
	routes  *batch.Batcher[routeReq]
	batched atomic.Bool // Run is merging concurrent lookups and routes
	live    liveness

	mu    sync.Mutex
	inc   string // this node's incarnation; "" before Join
	left  bool
	epoch string // redisconn.Epoch at the last heartbeat

	// reapHook, when set (tests only), runs after a reaper claimed an
	// incarnation and before it removes its entries.
	reapHook func(node string)
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
	r.routes = batch.New(256, r.routeBatch)
	return r
}

// Run merges concurrent Lookups into shared pipelines until ctx ends (see
// internal/batch). Without it each Lookup is its own round trip.
func (r *Redis) Run(ctx context.Context) {
	r.batched.Store(true)
	defer r.batched.Store(false)
	var routes sync.WaitGroup
	routes.Go(func() { r.routes.Run(ctx) })
	r.lookups.Run(ctx)
	routes.Wait()
}

func (r *Redis) deadline(now time.Time) int64 {
	return now.Add(r.ttl).UnixMilli()
}

func newIncarnation() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// current returns the node's incarnation, or ErrLeft.
func (r *Redis) current() (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.left {
		return "", ErrLeft
	}
	return r.inc, nil
}

func (r *Redis) Join(ctx context.Context, n Node) error {
	// Whatever a previous process with this id left is no longer connected.
	all, err := r.rdb.ZRange(ctx, nodesKey, 0, -1).Result()
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	for _, m := range all {
		if id, inc := splitMember(m); id == r.id {
			if err := r.rdb.ZRem(ctx, nodesKey, m).Err(); err != nil {
				return fmt.Errorf("remove previous incarnation of node %s: %w", r.id, err)
			}
			if err := r.removeIncarnation(ctx, id, inc); err != nil {
				return fmt.Errorf("clear previous entries of node %s: %w", r.id, err)
			}
		}
	}
	epoch, err := redisconn.Epoch(ctx, r.rdb)
	if err != nil && !redis.HasErrorPrefix(err, "NOPERM") {
		return err
	}
	inc := newIncarnation()
	if err := r.register(ctx, n, inc); err != nil {
		return err
	}
	r.mu.Lock()
	r.inc, r.left, r.epoch = inc, false, epoch
	r.mu.Unlock()
	return nil
}

func (r *Redis) Heartbeat(ctx context.Context, n Node) (bool, error) {
	inc, err := r.current()
	if err != nil {
		return false, err
	}
	lost, err := r.refresh(ctx, n, inc)
	if err != nil {
		return false, err
	}
	// A master replaced since the last heartbeat (failover, restart) may
	// have lost any of this node's recent writes, on any shard.
	epoch, err := redisconn.Epoch(ctx, r.rdb)
	if err != nil && !redis.HasErrorPrefix(err, "NOPERM") {
		return false, err
	}
	r.mu.Lock()
	if epoch != r.epoch {
		lost = true
		r.epoch = epoch
	}
	r.mu.Unlock()
	if lost {
		// The old incarnation expires by itself and is reaped like a dead
		// node's; until then its entries still count, so the keys do not
		// read offline while the caller writes them again.
		next := newIncarnation()
		if err := r.register(ctx, n, next); err != nil {
			return false, err
		}
		r.mu.Lock()
		if r.left {
			r.mu.Unlock()
			return false, ErrLeft
		}
		r.inc = next
		r.mu.Unlock()
	}
	return lost, r.reap(ctx, inc)
}

// register adds a new live incarnation of the node.
func (r *Redis) register(ctx context.Context, n Node, inc string) error {
	n.ID = r.id
	info, err := json.Marshal(n)
	if err != nil {
		return fmt.Errorf("encode node info: %w", err)
	}
	_, err = r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, nodesKey, redis.Z{Score: float64(r.deadline(time.Now())), Member: member(r.id, inc)})
		p.Set(ctx, infoKey(r.id), info, r.ttl)
		return nil
	})
	if err != nil {
		return fmt.Errorf("register node %s: %w", r.id, err)
	}
	return nil
}

// refresh extends the live incarnation inc and reports whether it had
// already expired (or was gone), in which case it was not extended.
func (r *Redis) refresh(ctx context.Context, n Node, inc string) (lost bool, err error) {
	n.ID = r.id
	info, err := json.Marshal(n)
	if err != nil {
		return false, fmt.Errorf("encode node info: %w", err)
	}
	now := time.Now()
	var res *redis.Cmd
	_, err = r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		res = refreshScript.EvalSha(ctx, p, []string{nodesKey}, member(r.id, inc), r.deadline(now), now.UnixMilli())
		p.Set(ctx, infoKey(r.id), info, r.ttl)
		return nil
	})
	if isNoScript(err) {
		res = refreshScript.Run(ctx, r.rdb, []string{nodesKey}, member(r.id, inc), r.deadline(now), now.UnixMilli())
		err = res.Err()
	}
	if err != nil {
		return false, fmt.Errorf("heartbeat of node %s: %w", r.id, err)
	}
	gone, _ := res.Int()
	return gone == 1, nil
}

// reap removes the entries of incarnations whose liveness ran out, this
// node's own earlier ones included; mine is the node's current incarnation.
func (r *Redis) reap(ctx context.Context, mine string) error {
	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	dead, err := r.rdb.ZRangeByScore(ctx, nodesKey, &redis.ZRangeBy{Min: "-inf", Max: now, Count: reapBatch}).Result()
	if err != nil {
		return fmt.Errorf("find expired nodes: %w", err)
	}
	for _, m := range dead {
		if m == member(r.id, mine) {
			continue
		}
		won, err := claimScript.Run(ctx, r.rdb, []string{nodesKey}, m, now).Int()
		if err != nil {
			return fmt.Errorf("claim expired node %s: %w", m, err)
		}
		if won == 0 {
			continue
		}
		id, inc := splitMember(m)
		if r.reapHook != nil {
			r.reapHook(id)
		}
		if err := r.removeIncarnation(ctx, id, inc); err != nil {
			return err
		}
	}
	return nil
}

// removeIncarnation deletes every entry incarnation inc of node id wrote,
// sparing any entry the node has since rewritten under another incarnation.
func (r *Redis) removeIncarnation(ctx context.Context, id, inc string) error {
	const chunk = 1000
	setKey := nodeKeysKey(id, inc)
	var cursor uint64
	for {
		keys, next, err := r.rdb.SScan(ctx, setKey, cursor, "", chunk).Result()
		if err != nil {
			return fmt.Errorf("list keys of node %s: %w", id, err)
		}
		if len(keys) > 0 {
			if err := r.removeEntries(ctx, id, inc, keys); err != nil {
				return fmt.Errorf("remove keys of node %s: %w", id, err)
			}
		}
		if next == 0 {
			break
		}
		cursor = next
	}
	if err := r.rdb.Del(ctx, setKey).Err(); err != nil {
		return fmt.Errorf("remove node %s: %w", id, err)
	}
	return nil
}

func (r *Redis) removeEntries(ctx context.Context, id, inc string, keys []string) error {
	run := func() error {
		_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range keys {
				removeEntryScript.EvalSha(ctx, p, []string{holdersKey(k)}, id, inc)
			}
			return nil
		})
		return err
	}
	err := run()
	if isNoScript(err) {
		if err := loadScript(ctx, r.rdb, removeEntryScript); err != nil {
			return err
		}
		err = run()
	}
	return err
}

// loadScript loads s on every master (in a cluster, each shard needs it).
func loadScript(ctx context.Context, rdb redis.UniversalClient, s *redis.Script) error {
	if err := s.Load(ctx, rdb).Err(); err != nil {
		return fmt.Errorf("load script: %w", err)
	}
	return nil
}

func isNoScript(err error) bool {
	return err != nil && redis.HasErrorPrefix(err, "NOSCRIPT")
}

func (r *Redis) Set(ctx context.Context, counts []Count) error {
	if len(counts) == 0 {
		return nil
	}
	inc, err := r.current()
	if err != nil {
		return err
	}
	setKey := nodeKeysKey(r.id, inc)
	prefix := inc + ":"
	_, err = r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, c := range counts {
			if c.Conns > 0 {
				p.HSet(ctx, holdersKey(c.Key), r.id, prefix+strconv.Itoa(c.Conns))
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

func (r *Redis) Nodes(ctx context.Context) ([]Node, error) {
	members, err := r.rdb.ZRangeByScore(ctx, nodesKey, &redis.ZRangeBy{
		Min: "(" + strconv.FormatInt(time.Now().UnixMilli(), 10), Max: "+inf",
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	// A node that just took a new incarnation is live twice for a moment.
	var ids []string
	for _, m := range members {
		if id, _ := splitMember(m); !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
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
	r.mu.Lock()
	inc, already := r.inc, r.left
	r.left = true
	r.mu.Unlock()
	if already || inc == "" {
		return nil
	}
	if err := r.rdb.ZRem(ctx, nodesKey, member(r.id, inc)).Err(); err != nil {
		return fmt.Errorf("deregister node %s: %w", r.id, err)
	}
	return r.removeIncarnation(ctx, r.id, inc)
}
