// Package redismem watches how full Redis's memory is, so that a node stops
// taking what only grows Redis (stored sends, history posts, Idempotency-Key
// records) while the headroom left still carries what keeps the cluster
// alive: heartbeats, presence and pub/sub. It is a package of its own rather
// than part of redisconn because it is state a node polls and consults on
// its hot paths, not a way to connect.
package redismem

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Reading is one master's INFO memory, as far as herald cares.
type Reading struct {
	Addr string // the master's address, for messages
	// Used is used_memory less what Redis leaves out when it decides
	// whether it is full (mem_not_counted_for_evict: replication and AOF
	// buffers): the figure noeviction compares with Max.
	Used   int64
	Max    int64  // maxmemory; 0: no limit
	Policy string // maxmemory_policy
}

// Ratio is Used/Max, or 0 when Redis has no maxmemory.
func (r Reading) Ratio() float64 {
	if r.Max <= 0 {
		return 0
	}
	return float64(r.Used) / float64(r.Max)
}

// Evicting reports whether Redis may delete keys to make room: every policy
// but noeviction does. The volatile-* policies are no safer for herald, all
// of whose keys have a TTL.
func (r Reading) Evicting() bool { return r.Policy != "noeviction" }

// Read returns INFO memory of every master rdb writes to: the one server,
// the Sentinel's master, or each master of a Redis Cluster. INFO, not
// CONFIG GET, because managed Redis services often rename or forbid CONFIG.
func Read(ctx context.Context, rdb redis.UniversalClient) ([]Reading, error) {
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		r, err := readOne(ctx, rdb, "")
		if err != nil {
			return nil, err
		}
		return []Reading{r}, nil
	}
	var mu sync.Mutex
	var out []Reading
	err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		r, err := readOne(ctx, c, c.Options().Addr)
		if err != nil {
			return err
		}
		mu.Lock()
		out = append(out, r)
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func readOne(ctx context.Context, c redis.Cmdable, addr string) (Reading, error) {
	info, err := c.Info(ctx, "memory").Result()
	if err != nil {
		return Reading{}, fmt.Errorf("read INFO memory: %w", err)
	}
	r, err := parse(info)
	r.Addr = addr
	return r, err
}

func parse(info string) (Reading, error) {
	var r Reading
	var used, notCounted int64
	var haveUsed, haveMax bool
	for line := range strings.SplitSeq(info, "\r\n") {
		name, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch name {
		case "used_memory":
			used, _ = strconv.ParseInt(v, 10, 64)
			haveUsed = true
		case "mem_not_counted_for_evict":
			notCounted, _ = strconv.ParseInt(v, 10, 64)
		case "maxmemory":
			r.Max, _ = strconv.ParseInt(v, 10, 64)
			haveMax = true
		case "maxmemory_policy":
			r.Policy = v
		}
	}
	if !haveUsed || !haveMax || r.Policy == "" {
		return r, errors.New("INFO memory lacks used_memory, maxmemory or maxmemory_policy")
	}
	r.Used = used - notCounted
	return r, nil
}

// Watcher reads Redis's memory every interval and says whether it is above
// a high-water mark. Its methods may be called on a nil *Watcher (a node
// without Redis): it is then never over.
type Watcher struct {
	rdb  redis.UniversalClient
	mark float64 // of maxmemory; 0 or less: never over
	log  *slog.Logger
	// allowEvicting silences the error an evicting policy is logged with.
	allowEvicting bool

	last atomic.Pointer[Reading] // the fullest master at the last reading
	// grown is what this node has added since the last reading, as
	// estimated by its callers, so that a burst between two readings
	// cannot run past the mark on this node's account alone.
	grown atomic.Int64
	// inflight is what reserved writes not yet settled will add: a reading
	// may come before Redis has them, so they stay counted past it.
	inflight atomic.Int64
	// sharers is how many nodes write to this Redis (at least 1): each may
	// have grown it as much as this one since the last reading.
	sharers atomic.Int64
	// full: Redis refused a write for memory since the last reading.
	full atomic.Bool
	// evicting: the last reading found a policy that evicts keys, and the
	// node was not told to accept that.
	evicting atomic.Bool

	policyLogged string // the evicting policy last logged; Run's goroutine only
}

// NewWatcher returns a watcher of rdb's memory with its high-water mark at
// mark (a fraction of maxmemory; 0 or less disables refusing). An evicting
// maxmemory-policy found while running is logged as an error, unless
// allowEvicting.
func NewWatcher(rdb redis.UniversalClient, mark float64, allowEvicting bool, log *slog.Logger) *Watcher {
	return &Watcher{rdb: rdb, mark: mark, allowEvicting: allowEvicting, log: log}
}

// Run reads Redis's memory every interval until ctx ends. A failed
// reading keeps the previous one: Redis unreachable fails the writes
// anyway, and a stale reading errs on the side it erred before.
func (w *Watcher) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		w.refresh(ctx, interval)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (w *Watcher) refresh(ctx context.Context, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	readings, err := Read(ctx, w.rdb)
	if err != nil || len(readings) == 0 {
		if ctx.Err() == nil {
			w.log.Debug("could not read Redis memory", "err", err)
		}
		return
	}
	fullest := readings[0]
	for _, r := range readings[1:] {
		if r.Ratio() > fullest.Ratio() {
			fullest = r
		}
	}
	w.last.Store(&fullest)
	w.grown.Store(w.inflight.Load())
	w.full.Store(false)
	evicting := false
	for _, r := range readings {
		if r.Evicting() && !w.allowEvicting {
			evicting = true
		}
	}
	w.evicting.Store(evicting)
	for _, r := range readings {
		if r.Evicting() && !w.allowEvicting {
			if r.Policy != w.policyLogged {
				w.policyLogged = r.Policy
				w.log.Error("Redis evicts keys when full (maxmemory-policy "+r.Policy+"): it may silently drop stored messages, "+
					"presence and the node registry; set maxmemory-policy noeviction", "redis", r.Addr)
			}
			return
		}
	}
	w.policyLogged = ""
}

// Grew tells the watcher this node just added about bytes to Redis.
func (w *Watcher) Grew(bytes int64) {
	if w != nil {
		w.grown.Add(bytes)
	}
}

// Shared tells the watcher how many nodes write to this Redis (itself
// included). Two nodes racing to the mark between readings would
// otherwise each spend the whole headroom, and together run Redis past
// maxmemory, where heartbeats are refused too.
func (w *Watcher) Shared(nodes int) {
	if w != nil {
		w.sharers.Store(int64(max(1, nodes)))
	}
}

// Evicting reports whether the last reading found a maxmemory-policy that
// evicts keys (changed at run time: a node refuses to start on one), which
// the node was not told to accept: a message stored there may vanish.
func (w *Watcher) Evicting() bool { return w != nil && w.evicting.Load() }

// Refused tells the watcher Redis refused a write for lack of memory: it
// reads as over the mark until the next reading.
func (w *Watcher) Refused() {
	if w != nil {
		w.full.Store(true)
	}
}

// Ratio is the fullest master's used memory over its maxmemory at the last
// reading (0 before one, or when Redis has no maxmemory).
func (w *Watcher) Ratio() float64 {
	if w == nil {
		return 0
	}
	if r := w.last.Load(); r != nil {
		return r.Ratio()
	}
	return 0
}

// Full reports whether Redis was at or past its maxmemory at the last
// reading, or refused a write for memory since: then it refuses writes
// that may grow its memory, heartbeats included.
func (w *Watcher) Full() bool {
	return w != nil && (w.full.Load() || w.Ratio() >= 1)
}

// Over reports whether Redis is at or above the high-water mark, counting
// what this node added since the last reading once for every node that
// shares Redis (see Shared), and the ratio it counted.
func (w *Watcher) Over() (ratio float64, over bool) {
	if w == nil || w.mark <= 0 {
		return 0, false
	}
	if w.full.Load() {
		return max(1, w.Ratio()), true
	}
	r := w.last.Load()
	if r == nil || r.Max <= 0 {
		return 0, false
	}
	ratio = float64(r.Used+w.grown.Load()*max(1, w.sharers.Load())) / float64(r.Max)
	return ratio, ratio >= w.mark
}

// Reserve counts bytes this node is about to add to Redis, unless that
// would take Redis to the high-water mark (see Over), and reports the
// ratio it counted and whether it reserved. Counting before the write,
// not after, keeps concurrent writes (a batch runs many at once) from all
// passing one check together.
//
// Every reservation made (ok) must be Settled once its write is done.
func (w *Watcher) Reserve(bytes int64) (ratio float64, ok bool) {
	if w == nil {
		return 0, true
	}
	if w.mark <= 0 {
		w.inflight.Add(bytes)
		return 0, true
	}
	if w.full.Load() {
		return max(1, w.Ratio()), false
	}
	r := w.last.Load()
	if r == nil || r.Max <= 0 {
		w.inflight.Add(bytes)
		return 0, true
	}
	share := max(1, w.sharers.Load())
	for {
		grown := w.grown.Load()
		ratio = float64(r.Used+(grown+bytes)*share) / float64(r.Max)
		if ratio >= w.mark {
			return ratio, false
		}
		if w.grown.CompareAndSwap(grown, grown+bytes) {
			w.inflight.Add(bytes)
			return ratio, true
		}
	}
}

// Settled tells the watcher a write Reserve counted is done (or failed):
// the next reading sees what it added.
func (w *Watcher) Settled(bytes int64) {
	if w != nil {
		w.inflight.Add(-bytes)
	}
}

// Mark is the high-water mark (0 or less: off).
func (w *Watcher) Mark() float64 {
	if w == nil {
		return 0
	}
	return w.mark
}
