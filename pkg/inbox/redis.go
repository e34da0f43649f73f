package inbox

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herald-push/herald/pkg/protocol"
	"github.com/herald-push/herald/pkg/redisconn"
)

// Redis layout, under each key's hash tag so every script touches one slot:
//
//	herald:{<key>}:inbox   STREAM  fields d (data), o (origin node), w (wait), p (previous id)
//	herald:{<key>}:acked   STRING  the acknowledged stream id
//	herald:{<key>}:dedupe  HASH    dedupe key -> stream id, for retried appends
//
// Both expire MaxAge after their last write, so idle keys leave nothing.
func streamKey(key string) string { return "herald:{" + key + "}:inbox" }
func ackedKey(key string) string  { return "herald:{" + key + "}:acked" }
func dedupeKey(key string) string { return "herald:{" + key + "}:dedupe" }

// appendScript adds one entry and trims by length and by age in one step.
// It returns the new id and the newest id before it, which is also stored
// in the entry (field p) so that replayed entries carry it too.
//
// With a dedupe key (ARGV[7]) it first looks the key up in the stream's
// dedupe hash (KEYS[2]): a retry of an append that is still in the stream
// gets that entry's ids back instead of a second entry. The hash is written
// by the same script as the entry, so the two share one fate in a failover:
// a retry finds the first entry exactly when it survived, and a WAIT after
// the retry confirms the replicas have it.
var appendScript = redis.NewScript(`
if ARGV[7] ~= '' then
  local seen = redis.call('HGET', KEYS[2], ARGV[7])
  if seen then
    local e = redis.call('XRANGE', KEYS[1], seen, seen)
    if e[1] then
      -- A write, so that a WAIT after this script also covers the first
      -- append, which came earlier in the replication stream.
      redis.call('PEXPIRE', KEYS[2], ARGV[8])
      local f = e[1][2]
      for i = 1, #f, 2 do
        if f[i] == 'p' then return {seen, f[i + 1]} end
      end
      return {seen, ''}
    end
  end
end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local prev = ''
if last[1] then prev = last[1][1] end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'd', ARGV[4], 'o', ARGV[5], 'w', ARGV[6], 'p', prev)
redis.call('XTRIM', KEYS[1], 'MINID', '~', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if ARGV[7] ~= '' then
  redis.call('HSET', KEYS[2], ARGV[7], id)
  redis.call('PEXPIRE', KEYS[2], ARGV[8])
  -- Forget the keys of entries trimmed away, now and then.
  if redis.call('HLEN', KEYS[2]) > 2 * tonumber(ARGV[1]) then
    local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
    local oldest = first[1] and first[1][1] or id
    local all = redis.call('HGETALL', KEYS[2])
    for i = 1, #all, 2 do
      local a, b = string.match(all[i + 1], '^(%d+)-(%d+)$')
      local c, d = string.match(oldest, '^(%d+)-(%d+)$')
      a, b, c, d = tonumber(a), tonumber(b), tonumber(c), tonumber(d)
      if a < c or (a == c and b < d) then redis.call('HDEL', KEYS[2], all[i]) end
    end
  end
end
return {id, prev}`)

// pendingScript reads the acknowledged position and what follows it at one
// instant, in one round trip.
var pendingScript = redis.NewScript(`
local acked = redis.call('GET', KEYS[2])
local from = '-'
if acked then from = '(' .. acked end
return {acked or '', redis.call('XRANGE', KEYS[1], from, '+', 'COUNT', ARGV[1])}`)

// ackScript moves the acknowledged position forward, never back.
var ackScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur then
  local cm, cs = string.match(cur, '^(%d+)-(%d+)$')
  local nm, ns = string.match(ARGV[1], '^(%d+)-(%d+)$')
  cm, cs, nm, ns = tonumber(cm), tonumber(cs), tonumber(nm), tonumber(ns)
  if cm > nm or (cm == nm and cs >= ns) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`)

// Redis is a Store on Redis Streams.
type Redis struct {
	rdb  redis.UniversalClient
	opts Options
}

// NewRedis returns a Store on rdb.
func NewRedis(rdb redis.UniversalClient, opts Options) *Redis {
	return &Redis{rdb: rdb, opts: opts}
}

func (r *Redis) Append(ctx context.Context, keys []string, e Entry) ([]protocol.StoredID, []protocol.StoredID, error) {
	minID := strconv.FormatInt(time.Now().Add(-r.opts.MaxAge).UnixMilli(), 10)
	ttl := strconv.FormatInt(r.opts.MaxAge.Milliseconds(), 10)
	maxLen := strconv.FormatInt(r.opts.MaxLen, 10)
	wait := strconv.Itoa(int(e.Wait))
	dedupeTTL := strconv.FormatInt(max(r.opts.DedupeTTL, r.opts.MaxAge).Milliseconds(), 10)
	repl := r.opts.Replication
	cmds := make([]*redis.Cmd, len(keys))
	pending := make([]int, len(keys)) // indexes of keys not stored yet
	for i := range pending {
		pending[i] = i
	}
	var notReplicated error
	for attempt := 0; len(pending) > 0; attempt++ {
		groups, err := r.groupByMaster(ctx, keys, pending)
		if err != nil {
			return nil, nil, err
		}
		var mu sync.Mutex
		var failed error
		var wg sync.WaitGroup
		for _, g := range groups {
			wg.Go(func() {
				_, err := repl.Pipeline(ctx, r.rdb, streamKey(keys[g[0]]), func(p redis.Pipeliner) {
					for _, i := range g {
						cmds[i] = appendScript.EvalSha(ctx, p, []string{streamKey(keys[i]), dedupeKey(keys[i])},
							maxLen, minID, ttl, e.Data, e.Origin, wait, e.Dedupe, dedupeTTL)
					}
				})
				mu.Lock()
				defer mu.Unlock()
				switch {
				case errors.Is(err, redisconn.ErrNotReplicated):
					notReplicated = err
				case err != nil && failed == nil && !redisconn.Redirected(err) && !isNoScript(err):
					failed = err
				}
			})
		}
		wg.Wait()
		if failed != nil {
			return nil, nil, fmt.Errorf("store message for %d keys: %w", len(keys), failed)
		}
		// Retry only what did not run: a script that ran must not run twice.
		var again []int
		noScript := false
		for _, i := range pending {
			switch err := cmds[i].Err(); {
			case isNoScript(err):
				noScript = true
				again = append(again, i)
			case redisconn.Redirected(err):
				again = append(again, i)
			case err != nil:
				return nil, nil, fmt.Errorf("store message for %s: %w", keys[i], err)
			}
		}
		pending = again
		if len(pending) == 0 {
			break
		}
		if attempt == 5 {
			return nil, nil, fmt.Errorf("store message for %d keys: %w", len(keys), cmds[pending[0]].Err())
		}
		if noScript {
			// First use on this Redis, a restart or a promoted replica:
			// load the script everywhere and retry.
			if err := appendScript.Load(ctx, r.rdb).Err(); err != nil {
				return nil, nil, fmt.Errorf("load append script: %w", err)
			}
		} else if !redisconn.Backoff(ctx, r.rdb, attempt) {
			return nil, nil, fmt.Errorf("store message: %w", ctx.Err())
		}
	}
	ids := make([]protocol.StoredID, len(keys))
	prevs := make([]protocol.StoredID, len(keys))
	for i, c := range cmds {
		res, _ := c.Val().([]any)
		var s, p string
		if len(res) == 2 {
			s, _ = res[0].(string)
			p, _ = res[1].(string)
		}
		id, ok := protocol.ParseStoredID(s)
		if !ok {
			return nil, nil, fmt.Errorf("store message: unexpected stream id %q", s)
		}
		ids[i] = id
		prevs[i], _ = protocol.ParseStoredID(p) // "" for a key's first message
	}
	// Stored on every master; not confirmed on enough replicas.
	return ids, prevs, notReplicated
}

// groupByMaster splits the keys at idx into groups served by one master
// each, so that each group's WAIT counts its own writes. Without a replica
// requirement one pipeline carries them all (a cluster client splits it).
func (r *Redis) groupByMaster(ctx context.Context, keys []string, idx []int) ([][]int, error) {
	if r.opts.Replication.Min <= 0 {
		return [][]int{idx}, nil
	}
	byMaster := map[any][]int{}
	var order []any
	for _, i := range idx {
		m, err := redisconn.MasterOf(ctx, r.rdb, streamKey(keys[i]))
		if err != nil {
			return nil, fmt.Errorf("store message: %w", err)
		}
		if _, ok := byMaster[m]; !ok {
			order = append(order, m)
		}
		byMaster[m] = append(byMaster[m], i)
	}
	groups := make([][]int, len(order))
	for j, m := range order {
		groups[j] = byMaster[m]
	}
	return groups, nil
}

func isNoScript(err error) bool {
	return err != nil && redis.HasErrorPrefix(err, "NOSCRIPT")
}

func (r *Redis) After(ctx context.Context, key string, after protocol.StoredID, limit int) ([]Entry, error) {
	msgs, err := r.rdb.XRangeN(ctx, streamKey(key), "("+after.String(), "+", int64(limit)).Result()
	if err != nil {
		return nil, fmt.Errorf("read inbox of %s: %w", key, err)
	}
	out := make([]Entry, 0, len(msgs))
	for _, m := range msgs {
		e, err := entryOf(m.ID, func(f string) string { s, _ := m.Values[f].(string); return s })
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

func (r *Redis) Pending(ctx context.Context, key string, limit int) (protocol.StoredID, []Entry, error) {
	res, err := pendingScript.Run(ctx, r.rdb, []string{streamKey(key), ackedKey(key)}, limit).Slice()
	if err != nil {
		return protocol.StoredID{}, nil, fmt.Errorf("read pending messages of %s: %w", key, err)
	}
	var acked protocol.StoredID
	if s, _ := res[0].(string); s != "" {
		if acked, _ = protocol.ParseStoredID(s); acked.IsZero() {
			return acked, nil, fmt.Errorf("acked position of %s: bad id %q", key, s)
		}
	}
	raw, _ := res[1].([]any)
	out := make([]Entry, 0, len(raw))
	for _, item := range raw {
		pair, _ := item.([]any)
		if len(pair) != 2 {
			return acked, nil, errors.New("pending messages: malformed stream entry")
		}
		id, _ := pair[0].(string)
		fields, _ := pair[1].([]any)
		values := map[string]string{}
		for i := 0; i+1 < len(fields); i += 2 {
			f, _ := fields[i].(string)
			v, _ := fields[i+1].(string)
			values[f] = v
		}
		e, err := entryOf(id, func(f string) string { return values[f] })
		if err != nil {
			return acked, nil, err
		}
		out = append(out, e)
	}
	return acked, out, nil
}

func entryOf(id string, field func(string) string) (Entry, error) {
	sid, ok := protocol.ParseStoredID(id)
	if !ok {
		return Entry{}, fmt.Errorf("inbox entry with bad id %q", id)
	}
	w, _ := strconv.Atoi(field("w"))
	prev, _ := protocol.ParseStoredID(field("p"))
	return Entry{ID: sid, Prev: prev, Data: []byte(field("d")), Origin: field("o"), Wait: Wait(w)}, nil
}

func (r *Redis) Ack(ctx context.Context, key string, id protocol.StoredID) error {
	err := ackScript.Run(ctx, r.rdb, []string{ackedKey(key)}, id.String(), r.opts.MaxAge.Milliseconds()).Err()
	if err != nil {
		return fmt.Errorf("record ack of %s: %w", key, err)
	}
	return nil
}

func (r *Redis) Acked(ctx context.Context, key string) (protocol.StoredID, error) {
	s, err := r.rdb.Get(ctx, ackedKey(key)).Result()
	if errors.Is(err, redis.Nil) {
		return protocol.StoredID{}, nil
	}
	if err != nil {
		return protocol.StoredID{}, fmt.Errorf("read ack of %s: %w", key, err)
	}
	id, ok := protocol.ParseStoredID(s)
	if !ok {
		return protocol.StoredID{}, fmt.Errorf("acked position of %s: bad id %q", key, s)
	}
	return id, nil
}

func (r *Redis) Tail(ctx context.Context, key string, n int) ([]Entry, error) {
	if n <= 0 {
		return nil, nil // COUNT 0 would mean no limit
	}
	msgs, err := r.rdb.XRevRangeN(ctx, streamKey(key), "+", "-", int64(n)).Result()
	if err != nil {
		return nil, fmt.Errorf("read the newest of %s: %w", key, err)
	}
	out := make([]Entry, len(msgs))
	for i, m := range msgs {
		e, err := entryOf(m.ID, func(f string) string { s, _ := m.Values[f].(string); return s })
		if err != nil {
			return nil, err
		}
		out[len(msgs)-1-i] = e
	}
	return out, nil
}
