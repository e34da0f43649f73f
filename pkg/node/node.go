// Package node assembles a herald node: local connections (hub), presence,
// routing between nodes (fanout) and the HTTP and WebSocket API in front of
// them.
package node

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/redis/go-redis/v9"

	"github.com/herald-push/herald/pkg/fanout"
	"github.com/herald-push/herald/pkg/hub"
	"github.com/herald-push/herald/pkg/idempotency"
	"github.com/herald-push/herald/pkg/inbox"
	"github.com/herald-push/herald/pkg/presence"
	"github.com/herald-push/herald/pkg/protocol"
	"github.com/herald-push/herald/pkg/ratelimit"
	"github.com/herald-push/herald/pkg/reconcile"
	"github.com/herald-push/herald/pkg/redisconn"
)

// Node is one herald process. Build it with New, run it with Run or Serve.
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
	reports  chan *hub.Notice // delivery reports on their way to the waiting node
	hub      *hub.Hub
	router   *fanout.Router
	presence *reconcile.Loop // writes this node's key counts to the store
	metrics  *metrics
	engine   *gin.Engine
	ids      *idSource // message ids
	reqIDs   *idSource // request ids, for logs

	presenceOK atomic.Bool // joined, last heartbeat succeeded, no resync pending

	// connCtx outlives requests: WebSockets run on it after their handler
	// returned, until the node stops.
	connCtx    context.Context
	connCancel context.CancelFunc

	connRate   *ratelimit.Keyed // new connections per client IP
	publicRate *ratelimit.Keyed // posts to public topics per client IP and topic

	mu             sync.Mutex
	draining       bool
	stopHeartbeats func()         // ends keepPresence and waits for it; nil until Serve
	perIP          map[string]int // open connections per client IP
	active         sync.WaitGroup // WebSocket handlers between admission and return
}

// New builds a node from cfg. It does not contact Redis: a node starts while
// Redis is down and becomes ready when Redis answers.
func New(cfg Config) (*Node, error) {
	cfg, err := cfg.withDefaults(os.Hostname)
	if err != nil {
		return nil, err
	}
	if !protocol.ValidName(cfg.NodeID) {
		return nil, fmt.Errorf("node id %q must be 1-128 characters of [A-Za-z0-9_.:@-]", cfg.NodeID)
	}
	n := &Node{
		cfg:     cfg,
		log:     cfg.Logger.With("node", cfg.NodeID),
		started: time.Now(),
		ids:     newIDSource(),
		reqIDs:  newIDSource(),
		perIP:   make(map[string]int),

		connRate:   ratelimit.New(cfg.ConnRatePerIP, cfg.ConnBurstPerIP),
		publicRate: ratelimit.New(cfg.PublicRate, cfg.PublicBurst),
	}
	n.connCtx, n.connCancel = context.WithCancel(context.Background())
	var bus fanout.Bus
	inboxOpts := inbox.Options{MaxLen: int64(cfg.InboxMaxLen), MaxAge: cfg.InboxMaxAge, DedupeTTL: cfg.IdempotencyTTL}
	if cfg.Redis.Topology() == redisconn.None {
		n.store = presence.NewMemory(cfg.PresenceTTL).Store(cfg.NodeID)
		bus = fanout.NewMemory().Bus(cfg.NodeID)
		n.inbox = inbox.NewMemory(inboxOpts)
		n.idem = idempotency.NewMemory(cfg.IdempotencyTTL)
	} else {
		rdb, err := redisconn.New(cfg.Redis)
		if err != nil {
			return nil, err
		}
		n.rdb = rdb
		repl := cfg.Redis.Replication()
		inboxOpts.Replication = repl
		n.store = presence.NewRedis(rdb, cfg.NodeID, cfg.PresenceTTL)
		busOpts := fanout.RedisOptions{Logger: n.log, Resubscribed: n.resubscribed}
		if cc, ok := rdb.(*redis.ClusterClient); ok {
			bus = fanout.NewRedisSharded(cc, cfg.NodeID, busOpts)
		} else {
			bus = fanout.NewRedis(rdb, cfg.NodeID, busOpts)
		}
		n.inbox = inbox.NewRedis(rdb, inboxOpts)
		n.idem = idempotency.NewRedis(rdb, cfg.IdempotencyTTL, repl)
	}
	n.waits = newWaiters()
	n.reports = make(chan *hub.Notice, 4096)
	n.metrics = newMetrics(n)
	n.hub = hub.New(hub.Options{
		QueueMessages:  cfg.QueueMessages,
		QueueBytes:     cfg.QueueBytes,
		MaxConns:       cfg.MaxConns,
		MaxConnsPerKey: cfg.MaxConnsPerKey,
		Removed:        n.connRemoved,
		Behind:         func(c *hub.Conn, stream string) { go n.catchUp(n.connCtx, c, stream, nil, false) },
		Delivered:      n.reportDelivered,
		Acked:          n.acked,
		FanoutDone: func(kind protocol.Kind, d time.Duration) {
			label := "topic"
			if kind == protocol.KindBroadcast {
				label = "broadcast"
			}
			n.metrics.fanout.WithLabelValues(label).Observe(d.Seconds())
		},
	})
	n.router = fanout.NewRouter(fanout.RouterConfig{
		Self:       cfg.NodeID,
		Bus:        bus,
		Presence:   n.store,
		Local:      n.hub,
		Logger:     n.log,
		Unroutable: func(k int) { n.metrics.dropUnroutable.Add(uint64(k)) },
		Delivered:  n.waits.delivered,
	})
	n.presence = reconcile.New(n.writePresence, time.Second)
	n.acks = newAckBuffer(n.inbox, n.log)
	if n.engine, err = n.routes(); err != nil {
		return nil, err
	}
	return n, nil
}

// Handler is the node's HTTP handler: API, WebSocket endpoint, metrics,
// health and the demo.
func (n *Node) Handler() http.Handler { return n.engine }

// Run listens on Config.Listen and serves until ctx ends, then shuts down
// gracefully.
func (n *Node) Run(ctx context.Context) error {
	l, err := net.Listen("tcp", n.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	return n.Serve(ctx, l)
}

// Serve serves on l until ctx ends, then drains: /readyz turns 503 and new
// WebSockets are refused at once, open ones are closed with 1012 spread over
// the drain window, presence is cleared, and Serve returns.
func (n *Node) Serve(ctx context.Context, l net.Listener) error {
	bg, stopBG := context.WithCancel(context.Background())
	var loops sync.WaitGroup
	loops.Go(func() {
		if err := n.router.Run(bg); err != nil {
			n.log.Error("router stopped", "err", err)
		}
	})
	loops.Go(func() { n.presence.Run(bg) })
	if r, ok := n.store.(interface{ Run(context.Context) }); ok {
		loops.Go(func() { r.Run(bg) })
	}
	loops.Go(func() { n.acks.loop.Run(bg) })
	loops.Go(func() { n.sendReports(bg) })
	// Heartbeats stop before Shutdown leaves presence: one racing with
	// Leave would write the node back for a TTL.
	heartbeats, stopHeartbeats := context.WithCancel(bg)
	heartbeatsDone := make(chan struct{})
	go func() { defer close(heartbeatsDone); n.keepPresence(heartbeats) }()
	n.mu.Lock()
	n.stopHeartbeats = func() { stopHeartbeats(); <-heartbeatsDone }
	n.mu.Unlock()

	srv := &http.Server{
		Handler:           n.engine,
		ReadHeaderTimeout: n.cfg.HTTPReadHeaderTimeout,
		ReadTimeout:       n.cfg.HTTPReadTimeout,
		WriteTimeout:      n.cfg.HTTPWriteTimeout,
		IdleTimeout:       n.cfg.HTTPIdleTimeout,
		MaxHeaderBytes:    n.cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelDebug),
	}
	serveErr := make(chan error, 1)
	tls := n.cfg.TLSCertFile != ""
	go func() {
		if tls {
			serveErr <- srv.ServeTLS(l, n.cfg.TLSCertFile, n.cfg.TLSKeyFile)
		} else {
			serveErr <- srv.Serve(l)
		}
	}()
	n.log.Info("node serving", "addr", l.Addr().String(), "tls", tls, "redis", n.cfg.Redis.Topology().String())
	if n.cfg.Open() {
		n.log.Warn("OPEN DEVELOPMENT MODE: without API keys anyone who reaches this node may send, " +
			"and without a token key any client may claim any key; do not expose it")
	}

	var err error
	select {
	case <-ctx.Done():
	case err = <-serveErr:
		err = fmt.Errorf("serve: %w", err)
	}

	sctx, cancel := context.WithTimeout(context.Background(), n.cfg.DrainWindow+10*time.Second)
	defer cancel()
	n.Shutdown(sctx)
	if serr := srv.Shutdown(sctx); serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		n.log.Warn("http shutdown", "err", serr)
	}
	n.connCancel() // whatever survived the drain ends now
	stopBG()
	loops.Wait()
	if n.rdb != nil {
		_ = n.rdb.Close()
	}
	n.log.Info("node stopped")
	return err
}

// Shutdown drains the node: it refuses new WebSockets, closes open ones with
// 1012 spread over the drain window and removes the node from presence. The
// HTTP API keeps answering meanwhile (sends still reach the connections that
// remain). If ctx ends first the remaining connections close at once.
func (n *Node) Shutdown(ctx context.Context) {
	n.mu.Lock()
	already := n.draining
	n.draining = true
	n.mu.Unlock()
	if already {
		return
	}
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
	// A handler admitted just before draining began may register its
	// connection after the snapshot above: close such stragglers too.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case <-done:
			break wait
		case <-tick.C:
			for _, c := range n.hub.Conns() {
				c.Close(protocol.CloseServiceRestart, "server shutting down")
			}
		case <-ctx.Done():
			n.log.Warn("connections still closing at the end of the drain", "err", ctx.Err())
			break wait
		}
	}
	n.mu.Lock()
	stop := n.stopHeartbeats
	n.mu.Unlock()
	if stop != nil {
		stop()
	}
	if err := n.store.Leave(ctx); err != nil {
		n.log.Warn("leaving presence failed; entries expire with the TTL", "err", err)
	}
}

func (n *Node) isDraining() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.draining
}

// notReady returns why the node is not ready, or "" when it is.
func (n *Node) notReady() string {
	switch {
	case n.isDraining():
		return "node is draining"
	case !n.presenceOK.Load():
		return "presence not registered (redis unreachable?)"
	case !n.router.Ready():
		return "not subscribed to the cluster bus (redis unreachable?)"
	}
	return ""
}

// connRemoved keeps presence and topic subscriptions in line when a
// connection leaves, whatever made it leave.
func (n *Node) connRemoved(c *hub.Conn) {
	n.presence.Mark(c.Key)
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
// empty) every local key is written again before the node reads ready.
func (n *Node) keepPresence(ctx context.Context) {
	joined := false
	for {
		info := n.info()
		hctx, cancel := context.WithTimeout(ctx, n.cfg.PresenceTTL/3)
		var err error
		resync := false
		if !joined {
			err = n.store.Join(hctx, info)
			joined, resync = err == nil, err == nil
		} else {
			resync, err = n.store.Heartbeat(hctx, info)
		}
		if err == nil && resync {
			keys := n.hub.Keys()
			if len(keys) > 0 {
				n.log.Warn("presence may have lost this node's entries (Redis restarted or failed over, or the node was reaped); writing its keys again", "keys", len(keys))
			}
			err = n.presence.Mark(keys...).Wait(hctx)
		}
		cancel()
		if err != nil && ctx.Err() == nil {
			n.metrics.redisErrors.WithLabelValues("heartbeat").Inc()
			if n.presenceOK.Load() {
				n.log.Warn("presence heartbeat failed", "err", err)
			}
		}
		n.presenceOK.Store(err == nil)
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

// info is what this node tells the cluster about itself.
func (n *Node) info() presence.Node {
	return presence.Node{ID: n.cfg.NodeID, Addr: n.cfg.AdvertiseAddr, Started: n.started, Conns: n.hub.Len(),
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
