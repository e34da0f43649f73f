// Package node is herald's engine: one node of the cluster, as Go calls.
// It sends to keys (storing, waiting and deduplicating when asked),
// publishes to topics, broadcasts, answers presence and cluster questions,
// disconnects keys, and admits client connections. It knows nothing of any
// transport: pkg/httpapi puts the HTTP and WebSocket API in front of it.
//
// Local connections live in pkg/hub, presence in pkg/presence, routing
// between nodes in pkg/fanout, stored streams in pkg/inbox and their order
// on each connection in pkg/ordering.
package node

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/herald-push/herald/pkg/fanout"
	"github.com/herald-push/herald/pkg/hub"
	"github.com/herald-push/herald/pkg/idempotency"
	"github.com/herald-push/herald/pkg/inbox"
	"github.com/herald-push/herald/pkg/ordering"
	"github.com/herald-push/herald/pkg/presence"
	"github.com/herald-push/herald/pkg/protocol"
	"github.com/herald-push/herald/pkg/ratelimit"
	"github.com/herald-push/herald/pkg/reconcile"
	"github.com/herald-push/herald/pkg/redisconn"
	"github.com/herald-push/herald/pkg/redismem"
)

// redisTimeout bounds the Redis work of one operation.
const redisTimeout = redisconn.Timeout

// Node is one herald node. New builds it and starts its background work
// (cluster bus, presence heartbeats, ack flushing); Drain takes it out of
// service and Close stops it (Shutdown is both).
type Node struct {
	cfg     Config
	log     *slog.Logger
	started time.Time

	rdb      redis.UniversalClient // nil in single-node mode
	store    presence.Store
	inbox    inbox.Store
	idem     idempotency.Store
	acks     *ackBuffer
	waits    *waiters
	reports  chan *ordering.Notice // delivery reports for senders waiting on other nodes
	hub      *hub.Hub
	router   *fanout.Router
	catcher  *ordering.Catcher
	presence *reconcile.Loop // writes this node's key counts to the store
	metrics  *metrics
	ids      *idSource // message ids
	// mem says when Redis is above its high-water mark; nil without
	// Redis.
	mem *redismem.Watcher

	presenceOK  atomic.Bool  // joined, last heartbeat succeeded, no resync pending
	clockWarned atomic.Bool  // the clock offset was logged
	fence       *fence       // closes the clients once Redis is lost for FenceAfter
	skipLogged  atomic.Int64 // unix nanoseconds of the last skipped-entry log

	// connCtx outlives requests: connections run on it after the request
	// that admitted them returned, until the node stops.
	connCtx    context.Context
	connCancel context.CancelFunc
	stopBG     context.CancelFunc // ends the background loops
	loops      sync.WaitGroup
	// stopHeartbeats ends keepPresence and waits for it.
	stopHeartbeats func()
	closeOnce      sync.Once

	connRate *ratelimit.Keyed // new connections per client IP
	// storeRate is stored sends' cost to Redis, in bytes, per API key (or
	// client IP); nil: no limit.
	storeRate *ratelimit.Keyed

	mu       sync.Mutex
	draining bool
	drained  chan struct{}  // closed when Drain has finished
	stopped  chan struct{}  // closed when Close has finished
	perIP    map[string]int // open connections per client IP
	active   sync.WaitGroup // sessions between admission and their end
}

// New builds a node from cfg and starts its background work. It does not
// wait for Redis: a node starts while Redis is down and becomes ready
// (Ready) when Redis answers.
func New(cfg Config) (*Node, error) {
	cfg, err := cfg.withDefaults(os.Hostname)
	if err != nil {
		return nil, err
	}
	if !protocol.ValidName(cfg.NodeID) {
		return nil, fmt.Errorf("node id %q must be 1-128 characters of [A-Za-z0-9_.:@-]", cfg.NodeID)
	}
	n := &Node{
		cfg:      cfg,
		log:      cfg.Logger.With("node", cfg.NodeID),
		started:  time.Now(),
		ids:      newIDSource(),
		perIP:    make(map[string]int),
		drained:  make(chan struct{}),
		stopped:  make(chan struct{}),
		connRate: ratelimit.New(cfg.ConnRatePerIP, cfg.ConnBurstPerIP),
	}
	if cfg.StoreRate > 0 {
		n.storeRate = ratelimit.New(float64(cfg.StoreRate), cfg.StoreBurst)
	}
	var bus fanout.Bus
	inboxOpts := inbox.Options{MaxLen: int64(cfg.InboxMaxLen), MaxAge: cfg.InboxMaxAge, DedupeTTL: cfg.IdempotencyTTL,
		MemoryBytes: int64(cfg.InboxMemoryBytes)}
	if cfg.Redis.Topology() == redisconn.None {
		n.store = presence.NewMemory(cfg.PresenceTTL).Store(cfg.NodeID)
		bus = fanout.NewMemory().Bus(cfg.NodeID)
		n.inbox = inbox.NewMemory(inboxOpts)
		n.idem = idempotency.NewMemory(cfg.IdempotencyTTL, int64(cfg.IdempotencyMemoryBytes))
	} else {
		rc := cfg.Redis
		rc.ClientName = redisconn.ClientName(cfg.NodeID)
		rdb, err := redisconn.New(rc)
		if err != nil {
			return nil, err
		}
		n.rdb = rdb
		repl := cfg.Redis.Replication()
		inboxOpts.Replication = repl
		n.store = presence.NewRedis(rdb, cfg.NodeID, cfg.PresenceTTL, presence.RedisOptions{Clock: cfg.Clock, Reaped: n.reaped})
		busOpts := fanout.RedisOptions{Logger: n.log, Resubscribed: n.resubscribed,
			UnknownVersion: func() { n.metrics.unknownVersion.Add(1) }}
		if cc, ok := rdb.(*redis.ClusterClient); ok {
			bus = fanout.NewRedisSharded(cc, cfg.NodeID, busOpts)
		} else {
			bus = fanout.NewRedis(rdb, cfg.NodeID, busOpts)
		}
		n.inbox = inbox.NewRedis(rdb, inboxOpts)
		n.idem = idempotency.NewRedis(rdb, cfg.IdempotencyTTL, repl)
		n.mem = redismem.NewWatcher(rdb, cfg.RedisHighWater, cfg.AllowEvictingRedis, n.log)
	}
	n.waits = newWaiters()
	n.reports = make(chan *ordering.Notice, 4096)
	n.metrics = newMetrics(n)
	n.hub = hub.New(hub.Options{
		QueueMessages:  cfg.QueueMessages,
		QueueBytes:     cfg.QueueBytes,
		MaxConns:       cfg.MaxConns,
		MaxConnsPerKey: cfg.MaxConnsPerKey,
		Removed:        n.connRemoved,
		Behind: func(c *hub.Conn, s ordering.StreamID) {
			go n.catcher.CatchUp(n.connCtx, c, c.Key, s, ordering.FromLast, protocol.StoredID{})
		},
		Delivered: n.delivered,
		Acked:     n.acked,
		FanoutDone: func(kind protocol.Kind, d time.Duration) {
			label := "topic"
			if kind == protocol.KindBroadcast {
				label = "broadcast"
			}
			n.metrics.fanout.WithLabelValues(label).Observe(d.Seconds())
		},
	})
	n.catcher = &ordering.Catcher{
		Store:       n.inbox,
		Page:        replayPage,
		MaxEntry:    cfg.MaxMessageBytes + frameOverhead,
		TopicReplay: cfg.HistoryReplay,
		Timeout:     redisTimeout,
		Replayed:    func(k int) { n.metrics.replayed.Add(uint64(k)) },
		ReadFailed:  func() { n.metrics.redisErrors.WithLabelValues("inbox_read").Inc() },
		Skipped:     n.storedSkipped,
		Log:         n.log,
	}
	n.router = fanout.NewRouter(fanout.RouterConfig{
		Self:        cfg.NodeID,
		Bus:         bus,
		Presence:    n.store,
		Local:       n.hub,
		Logger:      n.log,
		Unroutable:  func(k int) { n.metrics.dropUnroutable.Add(uint64(k)) },
		InvalidText: func() { n.metrics.dropInvalid.Add(1) },
		Delivered:   n.waits.delivered,
	})
	n.presence = reconcile.New(n.writePresence, time.Second)
	n.fence = &fence{after: cfg.FenceAfter, fire: n.fenceOff}
	n.acks = newAckBuffer(n.inbox, n.log)
	n.start()
	return n, nil
}

// replayPage is how many stored messages one read of a stream returns at
// most; fewer when the connection's queue has no room for that many of the
// largest (MaxMessageBytes + frameOverhead).
const replayPage = 256

// frameOverhead bounds what a frame adds to a message's data: its id, key
// or topic name and timestamp.
const frameOverhead = 512

// storedSkipped counts a stored entry no client can be given and logs it,
// at most once a second: a poisoned stream would otherwise log on every
// reconnect of every client.
func (n *Node) storedSkipped(reason, stream string, id protocol.StoredID) {
	n.metrics.storedSkipped.WithLabelValues(reason).Inc()
	now := time.Now().UnixNano()
	last := n.skipLogged.Load()
	if now-last < int64(time.Second) || !n.skipLogged.CompareAndSwap(last, now) {
		return
	}
	n.log.Warn("skipped a stored message no client can decode", "reason", reason, "stream", stream, "id", id.String())
}

// sweeper is an in-process store that frees what expired only when told:
// one loop here drives them all, rather than a ticker in each.
type sweeper interface{ Sweep(now time.Time) }

// sweepStores frees what the in-process stores hold past its age every
// second until ctx ends, so that memory comes back while no request comes.
func (n *Node) sweepStores(ctx context.Context) {
	var stores []sweeper
	for _, s := range []any{n.store, n.inbox, n.idem} {
		if sw, ok := s.(sweeper); ok {
			stores = append(stores, sw)
		}
	}
	if len(stores) == 0 {
		return // Redis expires its own keys
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for _, s := range stores {
				s.Sweep(now)
			}
		}
	}
}

// start runs the background loops until Close.
func (n *Node) start() {
	n.connCtx, n.connCancel = context.WithCancel(context.Background())
	bg, stop := context.WithCancel(context.Background())
	n.stopBG = stop
	n.loops.Go(func() {
		if err := n.router.Run(bg); err != nil {
			n.log.Error("router stopped", "err", err)
		}
	})
	n.loops.Go(func() { n.presence.Run(bg) })
	n.loops.Go(func() { n.sweepStores(bg) })
	n.loops.Go(func() { n.acks.loop.Run(bg) })
	n.loops.Go(func() { n.sendReports(bg) })
	if n.mem != nil {
		n.loops.Go(func() { n.mem.Run(bg, time.Second) })
	}
	// Heartbeats stop before Drain leaves presence: one racing with
	// Leave would write the node back for a TTL.
	heartbeats, stopHeartbeats := context.WithCancel(bg)
	done := make(chan struct{})
	go func() { defer close(done); n.keepPresence(heartbeats) }()
	n.stopHeartbeats = func() { stopHeartbeats(); <-done }
}

// Config returns the node's configuration, defaults filled in.
func (n *Node) Config() Config { return n.cfg }

// Logger is the node's logger.
func (n *Node) Logger() *slog.Logger { return n.log }

// Metrics is the node's Prometheus registry; transports register their own
// metrics in it.
func (n *Node) Metrics() *prometheus.Registry { return n.metrics.reg }

// Drain takes the node out of service without stopping it. It refuses new
// connections at once (Connect returns ErrDraining, Ready reports not
// ready), closes open ones with 1012 spread over the drain window (at once
// if ctx ends first) and removes the node from presence. Sends, publishes
// and the other calls keep working, and reach the connections of other
// nodes and those that remain here, until Close: a transport drains the
// node, then lets its requests in flight finish, then closes it. A second
// call waits for the first.
func (n *Node) Drain(ctx context.Context) error {
	n.mu.Lock()
	already := n.draining
	n.draining = true
	n.mu.Unlock()
	if already {
		select {
		case <-n.drained:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	defer close(n.drained)
	n.drain(ctx)
	n.stopHeartbeats()
	if err := n.store.Leave(ctx); err != nil {
		n.log.Warn("leaving presence failed; entries expire with the TTL", "err", err)
	}
	return ctx.Err()
}

// Close stops the node: it drains it first if Drain was not called, ends
// whatever connection survived the drain, stops the background work (the
// cluster bus, heartbeats, ack flushing) and closes the Redis clients.
// Calls made after Close reach no connection: with Redis they fail (its
// clients are closed); a single node still answers them from its
// in-process stores, delivering nothing. Close does not wait for calls in
// flight, so a transport lets its requests finish before it closes the
// node. Close is idempotent: a second call waits for the first.
func (n *Node) Close(ctx context.Context) error {
	err := n.Drain(ctx)
	first := false
	n.closeOnce.Do(func() { first = true })
	if !first {
		select {
		case <-n.stopped:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	defer close(n.stopped)
	n.connCancel() // whatever survived the drain ends now
	n.hub.CloseNow()
	n.stopBG()
	n.loops.Wait()
	if n.rdb != nil {
		_ = n.rdb.Close()
	}
	n.log.Info("node stopped")
	return err
}

// Shutdown is Drain then Close, for a program that embeds the engine
// without a transport of its own, or that stops its transport between the
// two itself. httpapi.Server.Shutdown calls Drain and Close with the HTTP
// server's shutdown between them, so that requests in flight finish while
// Redis is still there.
func (n *Node) Shutdown(ctx context.Context) error { return n.Close(ctx) }

// Stopped is closed once Close (or Shutdown) has finished.
func (n *Node) Stopped() <-chan struct{} { return n.stopped }

// drain closes the connections with 1012 over the drain window and waits
// until their sessions ended.
func (n *Node) drain(ctx context.Context) {
	conns := n.hub.Conns()
	n.log.Info("draining", "connections", len(conns), "window", n.cfg.DrainWindow)
	start := time.Now()
	for i, c := range conns {
		at := start.Add(n.cfg.DrainWindow * time.Duration(i) / time.Duration(len(conns)))
		if d := time.Until(at); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
			}
		}
		c.Close(protocol.CloseServiceRestart, "server shutting down")
	}
	done := make(chan struct{})
	go func() { n.active.Wait(); close(done) }()
	// A session admitted just before draining began may register its
	// connection after the snapshot above: close such stragglers too.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
			for _, c := range n.hub.Conns() {
				c.Close(protocol.CloseServiceRestart, "server shutting down")
			}
		case <-ctx.Done():
			n.log.Warn("connections still closing at the end of the drain", "err", ctx.Err())
			return
		}
	}
}

func (n *Node) isDraining() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.draining
}

// Ready returns nil when the node takes traffic, or an error saying why not.
func (n *Node) Ready() error {
	switch {
	case n.isDraining():
		return retryLater(Errorf(KindUnavailable, "not_ready", "node is draining"), time.Second)
	case !n.presenceOK.Load() && n.mem.Full():
		return retryLater(Errorf(KindUnavailable, "not_ready", "presence heartbeats refused: Redis is out of memory (at its maxmemory; free memory or raise it)"), time.Second)
	case !n.presenceOK.Load():
		return retryLater(Errorf(KindUnavailable, "not_ready", "presence not registered (redis unreachable?)"), time.Second)
	case !n.router.Ready():
		return retryLater(Errorf(KindUnavailable, "not_ready", "not subscribed to the cluster bus (redis unreachable?)"), time.Second)
	}
	return nil
}

// connRemoved keeps presence and topic subscriptions in line when a
// connection leaves, whatever made it leave.
func (n *Node) connRemoved(c *hub.Conn) {
	n.presence.Mark(c.Key)
	n.router.KeysChanged(c.Key)
	if len(c.Topics) > 0 {
		n.router.TopicsChanged(c.Topics...)
	}
}

func (n *Node) writePresence(ctx context.Context, keys []string) error {
	counts := make([]presence.Count, len(keys))
	for i, k := range keys {
		counts[i] = presence.Count{Key: k, Conns: n.hub.KeyConns(k)}
	}
	if err := n.store.Set(ctx, counts); err != nil {
		n.metrics.redisErrors.WithLabelValues("presence_write").Inc()
		n.log.Warn("presence write failed; retrying", "keys", len(keys), "err", err)
		return err
	}
	return nil
}

// keepPresence joins presence and heartbeats every third of the TTL, every
// second while Redis fails. When the store forgot this node (Redis restarted
// empty, or a peer reaped it) every local key is written again before the
// node reads ready. Whenever delivery to local connections may have been
// interrupted meanwhile — the node was reaped or forgotten, its heartbeats
// stopped for longer than they should (a stall, a partition), or it fenced
// itself off — every connection is caught up from its stored streams once
// the keys are written again, so that no stored message waits for a later
// send.
func (n *Node) keepPresence(ctx context.Context) {
	joined := false
	var lastOK time.Time // when the last heartbeat succeeded
	gap := n.cfg.PresenceTTL/3 + time.Second
	for {
		info := n.info()
		// A heartbeat must land before the deadline the previous one set;
		// a join has no deadline yet, and on a slow link (a few round
		// trips, a fresh connection's handshake) it needs more time.
		budget := n.cfg.PresenceTTL / 3
		if !joined {
			budget = 2 * n.cfg.PresenceTTL / 3
		}
		hctx, cancel := context.WithTimeout(ctx, budget)
		var err error
		resync, forgotten := false, false
		if !joined {
			err = n.store.Join(hctx, info)
			joined, resync = err == nil, err == nil
		} else {
			var lost presence.Lost
			lost, err = n.store.Heartbeat(hctx, info)
			resync, forgotten = lost != presence.LostNothing, lost == presence.LostNode
		}
		cancel()
		if err == nil && forgotten {
			// A reaper dropped this node's subscription, or Redis lost it:
			// keys written before a subscription is back would read online
			// while nothing reaches them. Not after a failover alone: the
			// subscriptions on healthy masters stand, and renewing them all
			// would turn every key offline for a moment.
			n.router.RenewSubscription("presence had forgotten this node (it was reaped)")
			n.awaitBus(ctx, n.cfg.PresenceTTL/3)
		}
		if err == nil && resync {
			keys := n.hub.Keys()
			if len(keys) > 0 {
				n.log.Warn("presence may have lost this node's entries (Redis restarted or failed over, or the node was reaped); writing its keys again", "keys", len(keys))
			}
			mctx, cancel := context.WithTimeout(ctx, n.cfg.PresenceTTL/3)
			err = n.presence.Mark(keys...).Wait(mctx)
			cancel()
		}
		if err != nil && ctx.Err() == nil {
			n.metrics.redisErrors.WithLabelValues("heartbeat").Inc()
			if n.presenceOK.Load() {
				n.log.Warn("presence heartbeat failed", "err", err)
			}
		}
		if err == nil {
			now := time.Now()
			stalled := !lastOK.IsZero() && now.Sub(lastOK) > gap
			lifted := n.fence.ok()
			n.presenceOK.Store(true)
			switch {
			case forgotten:
				n.catchUpAll("forgotten")
			case lifted:
				n.catchUpAll("fence_lifted")
			case stalled:
				n.log.Warn("no presence heartbeat for longer than the interval (the process stalled, or Redis was slow)", "since_last", now.Sub(lastOK).Round(time.Millisecond).String())
				n.catchUpAll("heartbeat_gap")
			}
			lastOK = now
			n.checkClock()
			if c, ok := n.store.(liveCounter); ok {
				n.mem.Shared(c.LiveNodes())
			}
		} else {
			n.presenceOK.Store(false)
			if joined {
				n.fence.failed(lastOK)
			}
		}
		wait := n.cfg.PresenceTTL / 3
		if err != nil {
			wait = min(wait, time.Second)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// awaitBus waits, at most for limit, for the bus subscription to be in
// place.
func (n *Node) awaitBus(ctx context.Context, limit time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !n.router.Ready() {
		select {
		case <-ctx.Done():
			n.log.Warn("bus subscription not back; writing the keys again anyway", "err", ctx.Err())
			return
		case <-t.C:
		}
	}
}

// clockWarnAt is the offset to Redis's clock past which a node says its
// clock is off.
const clockWarnAt = time.Second

// checkClock logs, once, that the node's clock is far from Redis's.
// Presence does not mind (it corrects every reading), but what else the
// host runs may.
func (n *Node) checkClock() {
	c, ok := n.store.(clockOffsetter)
	if !ok {
		return
	}
	// A reading is only as good as half its round trip: on a slow link
	// to Redis a sound clock must not be reported as skewed.
	off, within := c.ClockOffset(), c.ClockUncertainty()
	if (off-within > clockWarnAt || off+within < -clockWarnAt) && n.clockWarned.CompareAndSwap(false, true) {
		n.log.Warn("this host's clock is far from Redis's; presence uses Redis's clock", "offset", off.Round(time.Millisecond).String(),
			"uncertainty", within.Round(time.Millisecond).String())
	}
}

// liveCounter is a presence store that counts the live nodes as it
// heartbeats.
type liveCounter interface{ LiveNodes() int }

// clockOffsetter is a presence store that measures Redis's clock.
type clockOffsetter interface {
	ClockOffset() time.Duration
	ClockUncertainty() time.Duration
}

// info is what this node tells the cluster about itself.
func (n *Node) info() presence.Node {
	return presence.Node{ID: n.cfg.NodeID, Addr: n.cfg.AdvertiseAddr, Started: n.started, Conns: n.hub.Len(), Open: n.cfg.Open(),
		Sent: n.metrics.sent.Load(), Dropped: n.metrics.dropped(n)}
}

// idSource makes message ids unique across the cluster without
// coordination: the node's start time and a random tag, then a counter.
type idSource struct {
	prefix string
	seq    atomic.Uint64
}

func newIDSource() *idSource {
	tag := make([]byte, 4)
	_, _ = rand.Read(tag)
	const alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
	for i, b := range tag {
		tag[i] = alphabet[int(b)%len(alphabet)]
	}
	return &idSource{prefix: strconv.FormatInt(time.Now().UnixMilli(), 36) + "-" + string(tag) + "-"}
}

func (s *idSource) next() string {
	return s.prefix + strconv.FormatUint(s.seq.Add(1), 36)
}
