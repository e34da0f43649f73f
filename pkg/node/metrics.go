package node

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/herald-push/herald/pkg/inbox"
)

// metrics is the node's Prometheus registry. Counters the hot paths bump are
// plain atomics read at scrape time, so a send pays no label lookup.
type metrics struct {
	reg *prometheus.Registry

	accepted    *prometheus.CounterVec   // kind
	redisErrors *prometheus.CounterVec   // op
	connEnds    *prometheus.CounterVec   // reason
	fanout      *prometheus.HistogramVec // kind
	// notReplicated counts sends whose stored messages too few replicas
	// confirmed in time (answered 503 not_replicated).
	notReplicated prometheus.Counter
	// storedSkipped counts stored entries replay skipped, by reason.
	storedSkipped *prometheus.CounterVec
	// catchUps counts the times every connection was caught up from its
	// stored streams, by why delivery may have been interrupted.
	catchUps *prometheus.CounterVec

	sent           atomic.Uint64 // messages accepted, all kinds
	dropOffline    atomic.Uint64
	dropUnroutable atomic.Uint64
	dropInvalid    atomic.Uint64 // bus messages whose data is not valid text
	unknownVersion atomic.Uint64 // bus frames of a wire version this node does not read
	stored         atomic.Uint64
	replayed       atomic.Uint64
	acks           atomic.Uint64
	idemReplays    atomic.Uint64
	fences         atomic.Uint64
}

func newMetrics(n *Node) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.accepted = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_messages_accepted_total",
		Help: "Messages accepted, by kind (send, topic, broadcast).",
	}, []string{"kind"})
	m.redisErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_redis_errors_total",
		Help: "Failed Redis operations, by operation.",
	}, []string{"op"})
	m.connEnds = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_connections_closed_total",
		Help: "Client connections (WebSockets and event streams) ended, by reason: client_closed, read_limit (1009), read_failed, write_failed, ping_timeout, slow_consumer (1008), shutdown (1012), disconnected (4001), token_expired (4002), upgrade_failed, stopped.",
	}, []string{"reason"})
	m.fanout = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "herald_fanout_seconds",
		Help:    "Time from a topic or broadcast message reaching this node's hub to its write on the last local connection, by kind.",
		Buckets: []float64{.0001, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"kind"})
	m.notReplicated = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "herald_not_replicated_total",
		Help: "Stored sends answered 503 not_replicated: fewer Redis replicas than --redis-min-replicas confirmed them in time.",
	})
	m.storedSkipped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_stored_skipped_total",
		Help: "Stored messages skipped at replay because no client can decode them, by reason: missing_data (no data), invalid_text (not valid UTF-8 text), invalid_json (not one JSON value).",
	}, []string{"reason"})
	m.catchUps = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_catchups_total",
		Help: "Times every local connection was caught up from its stored streams because delivery may have been interrupted, by reason: resubscribed (the bus subscription came back), forgotten (presence had forgotten this node: reaped, or Redis lost its writes), heartbeat_gap (no good heartbeat for over a third of the TTL plus 1s: a stall or a partition), fence_lifted.",
	}, []string{"reason"})
	for _, r := range []string{"resubscribed", "forgotten", "heartbeat_gap", "fence_lifted"} {
		m.catchUps.WithLabelValues(r)
	}
	m.storedSkipped.WithLabelValues("missing_data")
	m.storedSkipped.WithLabelValues("invalid_text")
	m.fanout.WithLabelValues("topic")
	m.fanout.WithLabelValues("broadcast")
	drop := func(reason, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "herald_drops_total",
			Help:        "Messages or connections dropped, by reason: " + help,
			ConstLabels: prometheus.Labels{"reason": reason},
		}, f)
	}
	const dropHelp = "offline (a key of a send had no connection), unroutable (the node presence named no longer listened), slow_consumer (a connection closed because its queue overflowed), invalid_text (a message from another node whose data was not valid UTF-8 text, never written to a client)."
	// Series exist at 0 from the start, so that rates and dashboards show 0
	// rather than "no data" before the first event.
	for _, kind := range []string{"send", "topic", "broadcast"} {
		m.accepted.WithLabelValues(kind)
	}
	for _, op := range []string{"heartbeat", "presence_write", "presence_lookup", "publish", "cluster", "disconnect",
		"inbox_write", "inbox_read", "idempotency", "delivery_report"} {
		m.redisErrors.WithLabelValues(op)
	}
	for _, reason := range []string{"client_closed", "read_limit", "read_failed", "write_failed", "ping_timeout",
		"slow_consumer", "shutdown", "disconnected", "token_expired", "upgrade_failed", "stopped"} {
		m.connEnds.WithLabelValues(reason)
	}
	m.reg.MustRegister(
		m.accepted, m.redisErrors, m.connEnds, m.fanout, m.notReplicated, m.storedSkipped, m.catchUps,
		counterFunc("herald_bus_unknown_version_total", "Messages from other nodes dropped because their wire version is newer than this node reads: a node more than one release newer runs beside it (logged once).", &m.unknownVersion),
		counterFunc("herald_fences_total", "Times this node closed its clients with 1013 because its presence heartbeats had failed for --fence-after.", &m.fences),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "herald_clock_offset_seconds",
			Help: "Redis's clock minus this node's, measured at each presence heartbeat; presence uses Redis's clock (0 in single-node mode).",
		}, func() float64 {
			if c, ok := n.store.(clockOffsetter); ok {
				return c.ClockOffset().Seconds()
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "herald_connections",
			Help: "Open client connections (WebSockets and event streams) on this node.",
		}, func() float64 { return float64(n.hub.Len()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "herald_deliveries_total",
			Help: "Frames handed to local connections' outgoing queues.",
		}, func() float64 { return float64(n.hub.Stats().Queued) }),
		drop("offline", dropHelp, func() float64 { return float64(m.dropOffline.Load()) }),
		drop("unroutable", dropHelp, func() float64 { return float64(m.dropUnroutable.Load()) }),
		drop("invalid_text", dropHelp, func() float64 { return float64(m.dropInvalid.Load()) }),
		drop("slow_consumer", dropHelp, func() float64 { return float64(n.hub.Stats().SlowConsumer) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "herald_ready",
			Help: "1 when the node is ready to take traffic.",
		}, func() float64 {
			if n.Ready() == nil {
				return 1
			}
			return 0
		}),
		counterFunc("herald_inbox_stored_total", "Messages stored in key inboxes (one per key).", &m.stored),
		counterFunc("herald_inbox_replayed_total", "Stored messages replayed to connections resuming or catching up.", &m.replayed),
		counterFunc("herald_acks_total", "Acknowledgements received from clients.", &m.acks),
		counterFunc("herald_idempotent_replays_total", "Sends answered from an earlier request with the same Idempotency-Key.", &m.idemReplays),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "herald_inbox_memory_bytes",
			Help: "Single-node mode: bytes the in-process inbox counts for what it holds (bounded by --inbox-memory-bytes); 0 with Redis.",
		}, func() float64 {
			if m, ok := n.inbox.(*inbox.Memory); ok {
				_, bytes := m.Usage()
				return float64(bytes)
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "herald_redis_memory_ratio",
			Help: "Redis used memory over maxmemory at the last reading (each second; the fullest master of a cluster); 0 without maxmemory or Redis. Past --redis-high-water stored sends are refused 503 storage_full.",
		}, func() float64 { return n.mem.Ratio() }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

func counterFunc(name, help string, v *atomic.Uint64) prometheus.Collector {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v.Load()) })
}

// dropped is every drop so far, whatever the reason.
func (m *metrics) dropped(n *Node) uint64 {
	return m.dropOffline.Load() + m.dropUnroutable.Load() + n.hub.Stats().SlowConsumer
}
