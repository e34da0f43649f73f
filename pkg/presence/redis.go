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
	batched atomic.Bool // Run is merging concurrent lookups
	live    liveness

	mu  sync.Mutex
	inc string // this node's incarnation; "" before Join
	// retired is the incarnation this node left behind when it took a
	// new one while alive (a failover may have lost its writes): it
	// removes it itself once its keys are written again, rather than let
	// it expire, because a reaper of an expired incarnation drops every
	// subscription of the node older than its deadline, and this node's
	// live ones are.
	retired string
	left    bool
	epoch   string // redisconn.Epoch at the last heartbeat

	// reapHook, when set (tests only), runs after a reaper claimed an
	// incarnation and before it removes its entries.
	reapHook func(node string)

	liveNodes atomic.Int64 // live incarnations at the last heartbeat

	clock   func() time.Time
	offset  atomic.Int64 // Redis's clock minus clock, in nanoseconds: the best recent reading's
	synced  atomic.Bool  // offset was measured at least once
	clockMu sync.Mutex
	samples [clockSamples]clockSample // the last readings, a ring
	sampled int                       // readings taken
	rttBest time.Duration             // round trip of the reading offset came from
	reaped  func(node string, killed int, err error)
}

// RedisOptions tune a Redis store. Zero values take the defaults.
type RedisOptions struct {
	// Clock is the clock this node believes (default time.Now). Presence
	// never trusts it for a deadline: every reading is corrected by the
	// offset to Redis's TIME measured at each heartbeat, so that nodes
	// whose clocks disagree still agree on who is live. Tests set it to
	// run a node whose clock is off.
	Clock func() time.Time
	// Reaped, when set, is told of each dead incarnation this node reaped:
	// how many of the dead node's subscriptions it dropped in Redis, and
	// why it could not when err is set (the reap itself went on).
	Reaped func(node string, subscriptionsKilled int, err error)
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
func NewRedis(rdb redis.UniversalClient, id string, ttl time.Duration, opts RedisOptions) *Redis {
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.Reaped == nil {
		opts.Reaped = func(string, int, error) {}
	}
	r := &Redis{rdb: rdb, id: id, ttl: ttl, clock: opts.Clock, reaped: opts.Reaped}
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

// now is Redis's time as this node best knows it: its own clock corrected
// by the offset measured at the last heartbeat. Every deadline written,
// and every comparison with one, uses it.
func (r *Redis) now() time.Time {
	return r.clock().Add(time.Duration(r.offset.Load()))
}

// ClockOffset is Redis's clock minus this node's, as last measured (0
// before the first measurement).
func (r *Redis) ClockOffset() time.Duration { return time.Duration(r.offset.Load()) }

// clockSamples is how many readings of Redis's clock the offset is chosen
// from: a few heartbeats' worth.
const clockSamples = 4

type clockSample struct {
	offset, rtt time.Duration
}

// measured records Redis's TIME t, read by a round trip that left at sent
// and came back at back (both by r.clock): Redis read its clock about half
// way through, so a reading is off by at most half its round trip. The
// offset kept is that of the recent reading with the shortest round trip
// (as NTP does): one that also paid for a dial and handshake, or waited
// behind a slow command, would otherwise be taken for a skewed clock.
func (r *Redis) measured(t, sent, back time.Time) {
	rtt := back.Sub(sent)
	r.clockMu.Lock()
	r.samples[r.sampled%clockSamples] = clockSample{offset: t.Sub(sent.Add(rtt / 2)), rtt: rtt}
	r.sampled++
	best := r.samples[0]
	for _, c := range r.samples[1:min(r.sampled, clockSamples)] {
		if c.rtt < best.rtt {
			best = c
		}
	}
	r.rttBest = best.rtt
	r.clockMu.Unlock()
	r.offset.Store(int64(best.offset))
	r.synced.Store(true)
}

// LiveNodes is how many live incarnations the registry held at the last
// heartbeat (a node that just took a new one counts twice for a moment).
func (r *Redis) LiveNodes() int { return int(r.liveNodes.Load()) }

// ClockUncertainty is how far ClockOffset may be from the truth: half the
// round trip of the reading it came from.
func (r *Redis) ClockUncertainty() time.Duration {
	r.clockMu.Lock()
	defer r.clockMu.Unlock()
	return r.rttBest / 2
}

// syncClock measures the offset to Redis's clock on its own.
func (r *Redis) syncClock(ctx context.Context) error {
	sent := r.clock()
	t, err := r.rdb.Time(ctx).Result()
	if err != nil {
		return fmt.Errorf("read Redis time: %w", err)
	}
	r.measured(t, sent, r.clock())
	return nil
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
	// The replication id is read beside the rest: on a slow link to Redis
	// every round trip counts against the heartbeat's budget (a third of
	// the TTL), and a join that does not fit never happens.
	epochs := r.readEpoch(ctx)
	// Before any deadline is written: one computed from a clock that is
	// off would make this node dead, or immortal, to the others. The
	// previous incarnations are listed in the same round trip.
	sent := r.clock()
	var redisTime *redis.TimeCmd
	var listed *redis.StringSliceCmd
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		redisTime = p.Time(ctx)
		listed = p.ZRange(ctx, nodesKey, 0, -1)
		return nil
	})
	if err != nil {
		<-epochs
		return fmt.Errorf("read Redis time and list nodes: %w", err)
	}
	r.measured(redisTime.Val(), sent, r.clock())
	// Whatever a previous process with this id left is no longer connected.
	for _, m := range listed.Val() {
		if id, inc := splitMember(m); id == r.id {
			if err := r.rdb.ZRem(ctx, nodesKey, m).Err(); err != nil {
				<-epochs
				return fmt.Errorf("remove previous incarnation of node %s: %w", r.id, err)
			}
			if err := r.removeIncarnation(ctx, id, inc); err != nil {
				<-epochs
				return fmt.Errorf("clear previous entries of node %s: %w", r.id, err)
			}
		}
	}
	e := <-epochs
	if e.err != nil {
		return e.err
	}
	inc := newIncarnation()
	if err := r.register(ctx, n, inc); err != nil {
		return err
	}
	r.mu.Lock()
	r.inc, r.left, r.epoch = inc, false, e.epoch
	r.mu.Unlock()
	return nil
}

type epochResult struct {
	epoch string
	err   error
}

// readEpoch reads redisconn.Epoch concurrently with the caller's own round
// trip (in a cluster it asks every master). A Redis that refuses INFO
// (NOPERM) has no epoch to compare: "" then, as every time.
func (r *Redis) readEpoch(ctx context.Context) <-chan epochResult {
	out := make(chan epochResult, 1)
	go func() {
		e, err := redisconn.Epoch(ctx, r.rdb)
		if err != nil && redis.HasErrorPrefix(err, "NOPERM") {
			err = nil
		}
		out <- epochResult{e, err}
	}()
	return out
}

func (r *Redis) Heartbeat(ctx context.Context, n Node) (Lost, error) {
	inc, err := r.current()
	if err != nil {
		return LostNothing, err
	}
	// A master replaced since the last heartbeat (failover, restart) may
	// have lost any of this node's recent writes, on any shard. Read
	// beside the refresh, so that a heartbeat is one round trip.
	epochs := r.readEpoch(ctx)
	gone, expired, err := r.refresh(ctx, n, inc)
	e := <-epochs
	if err != nil {
		return LostNothing, err
	}
	if e.err != nil {
		return LostNothing, e.err
	}
	r.mu.Lock()
	replaced := e.epoch != r.epoch
	r.epoch = e.epoch
	r.mu.Unlock()
	// An incarnation gone while every master stayed the same was reaped;
	// one gone with a replaced master was lost with that master's last
	// writes (a join a replica had not yet received), and nobody dropped
	// the node's subscriptions.
	lost := LostNothing
	switch {
	case gone && !replaced:
		lost = LostNode
	case gone || replaced:
		lost = LostWrites
	}
	if err := r.retire(ctx); err != nil {
		return LostNothing, err
	}
	if lost != LostNothing {
		// The old incarnation's entries still count until the next
		// heartbeat retires it, so the keys do not read offline while the
		// caller writes them again.
		next := newIncarnation()
		if err := r.register(ctx, n, next); err != nil {
			return LostNothing, err
		}
		r.mu.Lock()
		if r.left {
			r.mu.Unlock()
			return LostNothing, ErrLeft
		}
		r.inc = next
		r.retired = inc
		r.mu.Unlock()
	}
	return lost, r.reap(ctx, inc, expired)
}

// retire removes the incarnation this node left behind at its previous
// heartbeat, by then written again under its new one, before it expires.
func (r *Redis) retire(ctx context.Context) error {
	r.mu.Lock()
	old := r.retired
	r.mu.Unlock()
	if old == "" {
		return nil
	}
	if err := r.rdb.ZRem(ctx, nodesKey, member(r.id, old)).Err(); err != nil {
		return fmt.Errorf("retire incarnation %s: %w", old, err)
	}
	if err := r.removeIncarnation(ctx, r.id, old); err != nil {
		return fmt.Errorf("retire incarnation %s: %w", old, err)
	}
	r.mu.Lock()
	if r.retired == old {
		r.retired = ""
	}
	r.mu.Unlock()
	return nil
}

// register adds a new live incarnation of the node.
func (r *Redis) register(ctx context.Context, n Node, inc string) error {
	n.ID = r.id
	info, err := json.Marshal(n)
	if err != nil {
		return fmt.Errorf("encode node info: %w", err)
	}
	_, err = r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, nodesKey, redis.Z{Score: float64(r.deadline(r.now())), Member: member(r.id, inc)})
		p.Set(ctx, infoKey(r.id), info, r.ttl)
		return nil
	})
	if err != nil {
		return fmt.Errorf("register node %s: %w", r.id, err)
	}
	return nil
}

// refresh extends the live incarnation inc and reports whether it had
// already expired (or was gone), in which case it was not extended, and
// which incarnations' deadlines have passed (at most reapBatch), read in
// the same round trip.
func (r *Redis) refresh(ctx context.Context, n Node, inc string) (lost bool, expired []redis.Z, err error) {
	n.ID = r.id
	info, err := json.Marshal(n)
	if err != nil {
		return false, nil, fmt.Errorf("encode node info: %w", err)
	}
	// The clock is read again with every heartbeat, in the same round
	// trip; the deadline written now uses the previous reading, which is a
	// heartbeat old at most.
	now := r.now()
	sent := r.clock()
	var res *redis.Cmd
	var redisTime *redis.TimeCmd
	var dead *redis.ZSliceCmd
	var live *redis.IntCmd
	_, err = r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		redisTime = p.Time(ctx)
		res = refreshScript.EvalSha(ctx, p, []string{nodesKey}, member(r.id, inc), r.deadline(now), now.UnixMilli())
		p.Set(ctx, infoKey(r.id), info, r.ttl)
		dead = p.ZRangeByScoreWithScores(ctx, nodesKey, &redis.ZRangeBy{Min: "-inf", Max: strconv.FormatInt(now.UnixMilli(), 10), Count: reapBatch})
		live = p.ZCount(ctx, nodesKey, "("+strconv.FormatInt(now.UnixMilli(), 10), "+inf")
		return nil
	})
	if isNoScript(err) {
		res = refreshScript.Run(ctx, r.rdb, []string{nodesKey}, member(r.id, inc), r.deadline(now), now.UnixMilli())
		err = res.Err()
	}
	if err == nil {
		err = dead.Err()
	}
	if err != nil {
		return false, nil, fmt.Errorf("heartbeat of node %s: %w", r.id, err)
	}
	if t, err := redisTime.Result(); err == nil {
		r.measured(t, sent, r.clock())
	}
	if n, err := live.Result(); err == nil {
		r.liveNodes.Store(n)
	}
	gone, _ := res.Int()
	return gone == 1, dead.Val(), nil
}

// reap removes the entries of incarnations whose liveness ran out, this
// node's own earlier ones included; mine is the node's current incarnation.
func (r *Redis) reap(ctx context.Context, mine string, dead []redis.Z) error {
	now := strconv.FormatInt(r.now().UnixMilli(), 10)
	for _, z := range dead {
		m, _ := z.Member.(string)
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
		// Redis still counts a cut-off node's subscription, which hangs
		// until TCP gives up, as a receiver: a publish to it would count
		// 1 and be lost. Dropping it makes the next publish count 0. Not
		// this node's own: an incarnation of its own that expired is one
		// it left behind, and the connections under its name are its live
		// ones.
		killed, kerr := 0, error(nil)
		if id != r.id {
			killed, kerr = r.killSubscriptions(ctx, id, int64(z.Score))
		}
		r.reaped(id, killed, kerr)
		if r.reapHook != nil {
			r.reapHook(id)
		}
		if err := r.removeIncarnation(ctx, id, inc); err != nil {
			return err
		}
	}
	return nil
}

// killSubscriptions drops, on every master, the pub/sub connections of
// node id (named redisconn.ClientName(id)) that were open when its
// incarnation expired at deadline (unix ms, Redis's clock). CLIENT LIST
// gives a connection's age in whole seconds of the server's cached clock,
// read here with the server's TIME in the same round trip; a connection is
// dropped only when its age proves it older than the deadline even with
// both roundings and the cache against it, so a node that came back and
// subscribed again after it expired keeps its new subscription. One opened
// within the two seconds before the deadline is left to TCP (and to the
// node's own fence).
func (r *Redis) killSubscriptions(ctx context.Context, id string, deadline int64) (int, error) {
	name := redisconn.ClientName(id)
	var killed atomic.Int64
	kill := func(ctx context.Context, c redis.Cmdable) error {
		var now *redis.TimeCmd
		var list *redis.StringCmd
		if _, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			now = p.Time(ctx)
			list = p.ClientList(ctx)
			return nil
		}); err != nil {
			return fmt.Errorf("list connections: %w", err)
		}
		minAge := now.Val().Unix() - deadline/1000 + 2
		ids := deadSubscriptions(list.Val(), name, minAge)
		if len(ids) == 0 {
			return nil
		}
		_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, cid := range ids {
				p.ClientKillByFilter(ctx, "ID", cid)
			}
			return nil
		})
		if err != nil && !redis.HasErrorPrefix(err, "ERR No such client") {
			return fmt.Errorf("drop %d subscriptions: %w", len(ids), err)
		}
		killed.Add(int64(len(ids)))
		return nil
	}
	var err error
	if cc, ok := r.rdb.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return kill(ctx, c) })
	} else {
		err = kill(ctx, r.rdb)
	}
	if err != nil {
		return int(killed.Load()), fmt.Errorf("drop subscriptions of node %s: %w", id, err)
	}
	return int(killed.Load()), nil
}

// deadSubscriptions picks from a CLIENT LIST the ids of the pub/sub
// connections named name that are at least minAge seconds old.
func deadSubscriptions(list, name string, minAge int64) []string {
	var ids []string
	for line := range strings.SplitSeq(list, "\n") {
		var id, cname, flags string
		age, subs := int64(-1), 0
		for f := range strings.FieldsSeq(line) {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "id":
				id = v
			case "name":
				cname = v
			case "age":
				age, _ = strconv.ParseInt(v, 10, 64)
			case "flags":
				flags = v
			case "sub", "psub", "ssub":
				n, _ := strconv.Atoi(v)
				subs += n
			}
		}
		// A connection subscribed to anything (flag P, or a count of
		// subscriptions: RESP3 connections keep flag N).
		pubsub := strings.Contains(flags, "P") || subs > 0
		if id != "" && cname == name && pubsub && age >= minAge {
			ids = append(ids, id)
		}
	}
	return ids
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
	// A store that never joined (a check before starting) has no offset yet.
	if !r.synced.Load() {
		if err := r.syncClock(ctx); err != nil {
			return nil, err
		}
	}
	members, err := r.rdb.ZRangeByScore(ctx, nodesKey, &redis.ZRangeBy{
		Min: "(" + strconv.FormatInt(r.now().UnixMilli(), 10), Max: "+inf",
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
