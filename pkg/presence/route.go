package presence

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herald-push/herald/pkg/redisconn"
)

// routeScript looks up keys' holders and publishes a payload to each live
// holder but one (the caller), in one step: a cross-node send then costs
// one round trip instead of two. KEYS are the keys' holders hashes, then
// herald:nodes; ARGV the time (ms), the node to skip, the channel prefix,
// the payload, then the incarnations the caller's copy of the registry
// holds as live (see liveness). Only an incarnation not among them is
// looked up in herald:nodes: each redis.call from a script costs Redis
// about 3 µs on top of the command, which one ZSCORE per holder paid on
// every send. It answers, per key, node/count pairs of its live holders,
// then node/receivers pairs of the nodes it published to. It reads
// herald:nodes, so it runs only where every key lives on one server (not
// in Redis Cluster).
var routeScript = redis.NewScript(`
local n = #KEYS - 1
local now = tonumber(ARGV[1])
local known = {}
for i = 5, #ARGV do known[ARGV[i]] = true end
local out, reached, order = {}, {}, {}
for i = 1, n do
  local h = redis.call('HGETALL', KEYS[i])
  local entry = {}
  for j = 1, #h, 2 do
    local node, v = h[j], h[j + 1]
    local sep = string.find(v, ':', 1, true)
    local count = sep and tonumber(string.sub(v, sep + 1))
    if count and count > 0 then
      local member = node .. '/' .. string.sub(v, 1, sep - 1)
      local alive = known[member]
      if not alive then
        local deadline = redis.call('ZSCORE', KEYS[#KEYS], member)
        alive = deadline and tonumber(deadline) > now
      end
      if alive then
        entry[#entry + 1] = node
        entry[#entry + 1] = count
        if node ~= ARGV[2] and reached[node] == nil then
          reached[node] = redis.call('PUBLISH', ARGV[3] .. node, ARGV[4])
          order[#order + 1] = node
        end
      end
    end
  end
  out[i] = entry
end
local pub = {}
for _, node in ipairs(order) do
  pub[#pub + 1] = node
  pub[#pub + 1] = reached[node]
end
out[n + 1] = pub
return out`)

// Routed is what Route did: each key's live holders, and how many
// subscribers each node it published to had (0: the node no longer
// listens).
type Routed struct {
	Holders   [][]Holder
	Receivers map[string]int
}

// Route looks up keys' holders and publishes payload to the channel
// channelPrefix+<node> of every live holder except skip, in one round trip
// (concurrent Routes share a pipeline while Run runs). Only on a client
// whose keys all live on one server: one Redis, or Sentinel.
func (r *Redis) Route(ctx context.Context, keys []string, skip, channelPrefix string, payload []byte) (Routed, error) {
	if _, cluster := r.rdb.(*redis.ClusterClient); cluster {
		return Routed{}, errors.New("route: not available in Redis Cluster")
	}
	req := routeReq{keys: keys, skip: skip, prefix: channelPrefix, payload: payload, done: make(chan routeRes, 1)}
	if !r.batched.Load() {
		r.routeBatch(ctx, []routeReq{req})
	} else if err := r.routes.Do(ctx, req); err != nil {
		return Routed{}, err
	}
	select {
	case res := <-req.done:
		return res.routed, res.err
	case <-ctx.Done():
		return Routed{}, ctx.Err()
	}
}

// maxKnownLive bounds the incarnations handed to the route script with
// each call; a registry larger than that is checked in Redis instead.
const maxKnownLive = 64

type routeReq struct {
	keys         []string
	skip, prefix string
	payload      []byte
	done         chan routeRes
}

type routeRes struct {
	routed Routed
	err    error
}

// routeBatch runs concurrent Routes in one pipeline of EVALSHAs, loading
// the script first when Redis does not have it (after a restart).
func (r *Redis) routeBatch(ctx context.Context, reqs []routeReq) {
	ctx, cancel := context.WithTimeout(ctx, redisconn.Timeout)
	defer cancel()
	nowMS := r.now().UnixMilli()
	now := strconv.FormatInt(nowMS, 10)
	// The registry copy lookups use: when it cannot be had, the script
	// checks every holder in Redis itself.
	live, _ := r.live.get(ctx, r.readLive, time.Time{})
	args := []any{now, "", "", nil}
	if len(live) <= maxKnownLive {
		for m, deadline := range live {
			if deadline > nowMS {
				args = append(args, m)
			}
		}
	}
	run := func() ([]*redis.Cmd, error) {
		cmds := make([]*redis.Cmd, len(reqs))
		_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, q := range reqs {
				keys := make([]string, 0, len(q.keys)+1)
				for _, k := range q.keys {
					keys = append(keys, holdersKey(k))
				}
				keys = append(keys, nodesKey)
				a := slices.Clone(args)
				a[1], a[2], a[3] = q.skip, q.prefix, q.payload
				cmds[i] = routeScript.EvalSha(ctx, p, keys, a...)
			}
			return nil
		})
		return cmds, err
	}
	cmds, err := run()
	if isNoScript(err) {
		if err = loadScript(ctx, r.rdb, routeScript); err == nil {
			cmds, err = run()
		}
	}
	for i, q := range reqs {
		if err != nil {
			q.done <- routeRes{err: fmt.Errorf("route: %w", err)}
			continue
		}
		routed, perr := parseRouted(cmds[i], len(q.keys))
		q.done <- routeRes{routed: routed, err: perr}
	}
}

func parseRouted(cmd *redis.Cmd, keys int) (Routed, error) {
	v, err := cmd.Slice()
	if err != nil {
		return Routed{}, fmt.Errorf("route: %w", err)
	}
	if len(v) != keys+1 {
		return Routed{}, fmt.Errorf("route: %d answers for %d keys", len(v), keys)
	}
	out := Routed{Holders: make([][]Holder, keys), Receivers: map[string]int{}}
	for i := range keys {
		pairs, _ := v[i].([]any)
		for j := 0; j+1 < len(pairs); j += 2 {
			node, _ := pairs[j].(string)
			n, _ := pairs[j+1].(int64)
			out.Holders[i] = append(out.Holders[i], Holder{Node: node, Conns: int(n)})
		}
		slices.SortFunc(out.Holders[i], func(a, b Holder) int { return strings.Compare(a.Node, b.Node) })
	}
	pub, _ := v[keys].([]any)
	for j := 0; j+1 < len(pub); j += 2 {
		node, _ := pub[j].(string)
		n, _ := pub[j+1].(int64)
		out.Receivers[node] = int(n)
	}
	return out, nil
}
