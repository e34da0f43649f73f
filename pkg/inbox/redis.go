package inbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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
//	herald:{<key>}:inbox   STREAM  fields d (data) or r (payload key), o (origin node), w (wait), p (previous id)
//	herald:{<key>}:acked   STRING  the acknowledged stream id
//	herald:{<key>}:dedupe  HASH    dedupe key -> stream id, for retried appends
//	herald:payload:{<sum>} STRING  data sent to many keys, stored once
//	herald:{<key>}:read    STRING  Redis Cluster only, with --redis-min-replicas: a marker a read writes to be confirmed, 1 s
//
// All expire after their last write: the per-key ones after MaxAge, so
// idle keys leave nothing; a payload after twice MaxAge (see payloadTTL).
func streamKey(key string) string { return "herald:{" + key + "}:inbox" }
func ackedKey(key string) string  { return "herald:{" + key + "}:acked" }
func dedupeKey(key string) string { return "herald:{" + key + "}:dedupe" }

// readMarker is what a read confirmed by the replicas writes
// (redisconn.Replication.Read): in Redis Cluster a key of the stream's slot
// that lives a second, elsewhere only a channel name.
func readMarker(key string) string { return "herald:{" + key + "}:read" }

// payloadKey names data by its content, so that a retried send (or the
// same data sent again) writes the same key rather than a second copy. It
// is its own hash tag: in a cluster payloads spread over the slots.
func payloadKey(data []byte) string {
	sum := sha256.Sum256(data)
	return "herald:payload:{" + hex.EncodeToString(sum[:16]) + "}"
}

// SharedMin is the smallest data that a send to more than one key stores
// once, referenced from each key's entry, instead of in every entry: below
// it the payload's own key and the references cost about what they save.
const SharedMin = 256

// EntryOverhead bounds what Redis holds for one key's entry besides its
// data, measured on Redis 7.0 (docs/operations.md): a key's first entry
// creates its stream, whose first node Redis preallocates at
// stream-node-max-bytes (4 KiB by default), about 4.7 KiB in all with its
// dedupe hash; later entries fill that node at about 100 bytes each. A
// sender choosing fresh keys pays the first, so it is what the
// stored-bytes rate counts per key.
const EntryOverhead = 5 << 10

// StoredCost is about what Append of data to n keys costs Redis: the data
// once when it is shared (see SharedMin), else once per key, and an entry
// per key.
func StoredCost(n, data int) int64 {
	if n > 1 && data >= SharedMin {
		return int64(data) + int64(n)*EntryOverhead
	}
	return int64(n) * int64(data+EntryOverhead)
}

// appendScript adds one entry and trims by length and by age in one step.
// The entry holds the data (ARGV[9] 'd') or the name of its payload key
// (ARGV[9] 'r').
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
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', ARGV[9], ARGV[4], 'o', ARGV[5], 'w', ARGV[6], 'p', prev)
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
	var notReplicated error
	field, value := "d", any(e.Data)
	if len(keys) > 1 && len(e.Data) >= SharedMin {
		// Stored once, before any entry refers to it, and confirmed by the
		// replicas like the entries are.
		ref := payloadKey(e.Data)
		err := repl.Write(ctx, r.rdb, ref, func(p redis.Pipeliner) { p.Set(ctx, ref, e.Data, r.payloadTTL()) })
		switch {
		case errors.Is(err, redisconn.ErrNotReplicated):
			notReplicated = err
		case err != nil:
			return nil, nil, fmt.Errorf("store message for %d keys: %w", len(keys), err)
		}
		field, value = "r", ref
	}
	cmds := make([]*redis.Cmd, len(keys))
	pending := make([]int, len(keys)) // indexes of keys not stored yet
	for i := range pending {
		pending[i] = i
	}
	var failed []int // keys whose script failed: not stored
	var failure error
	for attempt := 0; len(pending) > 0; attempt++ {
		for _, i := range pending {
			cmds[i] = nil
		}
		groups, err := r.groupByMaster(ctx, keys, pending)
		if err != nil {
			return nil, nil, err
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, g := range groups {
			wg.Go(func() {
				_, err := repl.Pipeline(ctx, r.rdb, streamKey(keys[g[0]]), func(p redis.Pipeliner) {
					for _, i := range g {
						cmds[i] = appendScript.EvalSha(ctx, p, []string{streamKey(keys[i]), dedupeKey(keys[i])},
							maxLen, minID, ttl, value, e.Origin, wait, e.Dedupe, dedupeTTL, field)
					}
				})
				if errors.Is(err, redisconn.ErrNotReplicated) {
					mu.Lock()
					notReplicated = err
					mu.Unlock()
				}
				if cmds[g[0]] == nil { // the pipeline never ran: no master
					for _, i := range g {
						cmds[i] = redis.NewCmd(ctx)
						cmds[i].SetErr(err)
					}
				}
			})
		}
		wg.Wait()
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
				// Out of memory, say: this key's entry is not stored, the
				// others' may be.
				failed = append(failed, i)
				if failure == nil {
					failure = fmt.Errorf("store message for %s: %w", keys[i], err)
				}
			}
		}
		pending = again
		if len(pending) == 0 {
			break
		}
		if attempt == 5 {
			failed = append(failed, pending...)
			if failure == nil {
				failure = fmt.Errorf("store message for %d keys: %w", len(pending), cmds[pending[0]].Err())
			}
			break
		}
		if noScript {
			// First use on this Redis, a restart or a promoted replica:
			// load the script everywhere and retry.
			if err := appendScript.Load(ctx, r.rdb).Err(); err != nil {
				return nil, nil, fmt.Errorf("load append script: %w", err)
			}
		} else if !redisconn.Backoff(ctx, r.rdb, attempt) {
			failed = append(failed, pending...)
			if failure == nil {
				failure = fmt.Errorf("store message: %w", ctx.Err())
			}
			break
		}
	}
	if len(failed) == len(keys) {
		if redisconn.OutOfMemory(failure) {
			return nil, nil, fmt.Errorf("%w: %w", ErrFull, failure)
		}
		return nil, nil, failure
	}
	ids := make([]protocol.StoredID, len(keys))
	prevs := make([]protocol.StoredID, len(keys))
	for i, c := range cmds {
		if c.Err() != nil {
			continue // not stored: zero ids
		}
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
	if len(failed) > 0 {
		return ids, prevs, fmt.Errorf("%w: %d of %d keys not stored: %w", ErrPartiallyStored, len(failed), len(keys), failure)
	}
	// Stored on every master; not confirmed on enough replicas.
	return ids, prevs, notReplicated
}

// payloadTTL is how long a shared payload is kept: longer than the entries
// that refer to it, whose stream lives MaxAge after its last append and
// whose trimming by age is approximate. An entry that outlives it anyway
// reads back with no data (see Store).
func (r *Redis) payloadTTL() time.Duration { return 2 * r.opts.MaxAge }

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
	var msgs []redis.XMessage
	err := r.opts.Replication.Read(ctx, r.rdb, streamKey(key), readMarker(key), func(c redis.Cmdable) (bool, error) {
		var err error
		msgs, err = c.XRangeN(ctx, streamKey(key), "("+after.String(), "+", int64(limit)).Result()
		return len(msgs) > 0, err
	})
	if err != nil {
		return nil, fmt.Errorf("read inbox of %s: %w", key, err)
	}
	out := make([]Entry, len(msgs))
	var refs []string
	for i, m := range msgs {
		var ref string
		out[i], ref, err = entryOf(m.ID, func(f string) (string, bool) { s, ok := m.Values[f].(string); return s, ok })
		if err != nil {
			return nil, err
		}
		refs = addRef(refs, i, len(msgs), ref)
	}
	if err := r.resolve(ctx, out, refs); err != nil {
		return nil, fmt.Errorf("read inbox of %s: %w", key, err)
	}
	return out, nil
}

func (r *Redis) Pending(ctx context.Context, key string, limit int) (protocol.StoredID, []Entry, error) {
	var res []any
	err := r.opts.Replication.Read(ctx, r.rdb, streamKey(key), readMarker(key), func(c redis.Cmdable) (bool, error) {
		var err error
		res, err = pendingScript.Run(ctx, c, []string{streamKey(key), ackedKey(key)}, limit).Slice()
		if err != nil {
			return false, err
		}
		if len(res) != 2 {
			return false, fmt.Errorf("pending messages: %d values, want 2", len(res))
		}
		entries, _ := res[1].([]any)
		return len(entries) > 0, nil
	})
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
	out := make([]Entry, len(raw))
	var refs []string
	for j, item := range raw {
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
		var ref string
		out[j], ref, err = entryOf(id, func(f string) (string, bool) { v, ok := values[f]; return v, ok })
		if err != nil {
			return acked, nil, err
		}
		refs = addRef(refs, j, len(raw), ref)
	}
	if err := r.resolve(ctx, out, refs); err != nil {
		return acked, nil, fmt.Errorf("read pending messages of %s: %w", key, err)
	}
	return acked, out, nil
}

// entryOf decodes a stream entry. Its data is in the entry, or in the
// payload key ref it names, which the caller resolves.
func entryOf(id string, field func(string) (string, bool)) (e Entry, ref string, err error) {
	sid, ok := protocol.ParseStoredID(id)
	if !ok {
		return Entry{}, "", fmt.Errorf("inbox entry with bad id %q", id)
	}
	ws, _ := field("w")
	w, _ := strconv.Atoi(ws)
	ps, _ := field("p")
	prev, _ := protocol.ParseStoredID(ps)
	o, _ := field("o")
	e = Entry{ID: sid, Prev: prev, Origin: o, Wait: Wait(w)}
	if d, ok := field("d"); ok {
		e.Data = []byte(d)
	}
	ref, _ = field("r")
	return e, ref, nil
}

// addRef records entry i's payload key in refs (one per entry, allocated at
// the first reference: most inboxes hold none).
func addRef(refs []string, i, n int, ref string) []string {
	if ref == "" {
		return refs
	}
	if refs == nil {
		refs = make([]string, n)
	}
	refs[i] = ref
	return refs
}

// resolve reads the shared payloads that entries refer to (refs[i] for
// out[i]), each once, in one pipeline: a cluster client splits it by slot.
// An entry whose payload is gone keeps no data.
func (r *Redis) resolve(ctx context.Context, out []Entry, refs []string) error {
	if refs == nil {
		return nil
	}
	gets := map[string]*redis.StringCmd{}
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, ref := range refs {
			if _, ok := gets[ref]; ref != "" && !ok {
				gets[ref] = p.Get(ctx, ref)
			}
		}
		return nil
	})
	var reply redis.Error
	if err != nil && !errors.Is(err, redis.Nil) && !errors.As(err, &reply) {
		return fmt.Errorf("read shared payloads: %w", err)
	}
	for i, ref := range refs {
		if ref == "" {
			continue
		}
		b, err := gets[ref].Bytes()
		switch {
		case errors.Is(err, redis.Nil), errors.As(err, &reply):
			// Expired or lost, or an entry written by hand that names a
			// key of another type (WRONGTYPE): this entry is unreadable,
			// the page is not; failing it would close every reconnect.
			out[i].Data = nil
		case err != nil:
			return fmt.Errorf("read shared payload %s: %w", ref, err)
		default:
			out[i].Data = b
		}
	}
	return nil
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
	var msgs []redis.XMessage
	err := r.opts.Replication.Read(ctx, r.rdb, streamKey(key), readMarker(key), func(c redis.Cmdable) (bool, error) {
		var err error
		msgs, err = c.XRevRangeN(ctx, streamKey(key), "+", "-", int64(n)).Result()
		return len(msgs) > 0, err
	})
	if err != nil {
		return nil, fmt.Errorf("read the newest of %s: %w", key, err)
	}
	out := make([]Entry, len(msgs))
	var refs []string
	for i, m := range msgs {
		j := len(msgs) - 1 - i
		var ref string
		out[j], ref, err = entryOf(m.ID, func(f string) (string, bool) { s, ok := m.Values[f].(string); return s, ok })
		if err != nil {
			return nil, err
		}
		refs = addRef(refs, j, len(msgs), ref)
	}
	if err := r.resolve(ctx, out, refs); err != nil {
		return nil, fmt.Errorf("read the newest of %s: %w", key, err)
	}
	return out, nil
}
