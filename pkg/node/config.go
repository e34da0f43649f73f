package node

import (
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"time"

	"github.com/herald-push/herald/pkg/auth"
	"github.com/herald-push/herald/pkg/redisconn"
)

// Config is everything the engine is built from; what only a transport
// reads (the HTTP server's address, TLS, timeouts, origins, proxies and
// request limits) is the transport's own (httpapi.Config). cmd/server fills
// both from flags and HERALD_* variables, whose defaults are DefaultConfig's
// and httpapi.DefaultConfig's.
//
// A zero number, duration or string means the field's default from
// DefaultConfig; a nil list or pointer means none (no API keys, no history
// topics). Fields are grouped by what they govern; the groups are embedded,
// so cfg.MaxConns reads as well as cfg.Limits.MaxConns.
type Config struct {
	// AdvertiseAddr is the address other nodes and operators see in
	// /v1/cluster (default: none; cmd/server gives its listen address).
	AdvertiseAddr string
	// NodeID names the node in the cluster; it must be unique among running
	// nodes (default: the host name). A node restarted with the same id
	// takes over, and clears, what its previous process left in Redis.
	NodeID string
	// Redis joins the cluster through Redis: one server, Sentinel or Redis
	// Cluster. The zero value runs the node alone with in-process presence
	// and routing.
	Redis redisconn.Config
	// Logger receives the node's logs (default: discarded).
	Logger *slog.Logger
	// Clock is the clock the node believes (default time.Now). Presence
	// deadlines, heartbeats and reaping never trust it alone: they use it
	// corrected by the offset to Redis's clock measured at each heartbeat
	// (herald_clock_offset_seconds). Tests set it to run a node whose
	// clock is off.
	Clock func() time.Time

	Liveness
	Limits
	Security
	Storage
}

// Liveness is how the node keeps its place in the cluster and its clients
// alive.
type Liveness struct {
	// PresenceTTL is how long a node counts as holding its keys after its
	// last heartbeat; heartbeats come every third of it.
	PresenceTTL time.Duration
	// FenceAfter is how long after its last good heartbeat a node whose
	// heartbeats fail closes its clients with 1013 so that they reconnect
	// to a node that reaches Redis (default: PresenceTTL, when the other
	// nodes reap it).
	FenceAfter time.Duration
	// PingInterval is how often each client is pinged.
	PingInterval time.Duration
	// WriteTimeout bounds one write, or one ping's pong, to a client; past
	// it the client is disconnected.
	WriteTimeout time.Duration
	// DrainWindow spreads the closing of connections at shutdown so that
	// clients do not all reconnect in the same instant.
	DrainWindow time.Duration
}

// Limits bound what one client, sender or address may cost. For the
// connection limits a negative value means no limit.
type Limits struct {
	// QueueMessages and QueueBytes bound each connection's outgoing queue;
	// overflow closes it with 1008.
	QueueMessages int
	QueueBytes    int
	// MaxMessageBytes bounds a message's data.
	MaxMessageBytes int
	// MaxKeysPerSend bounds the keys of one send.
	MaxKeysPerSend int
	// MaxTopicsPerConn bounds the topics one connection joins.
	MaxTopicsPerConn int
	// ReadLimit bounds a client frame; larger frames close the connection
	// with 1009.
	ReadLimit int64
	// MaxConns, MaxConnsPerKey and MaxConnsPerIP bound the connections of
	// the node, of one key and of one client IP; ConnRatePerIP and
	// ConnBurstPerIP bound new connections per second per client IP.
	MaxConns       int
	MaxConnsPerKey int
	MaxConnsPerIP  int
	ConnRatePerIP  float64
	ConnBurstPerIP int
	// MaxWait caps a send's "timeout_ms" when it waits for delivery or an
	// ack; keep it under the transport's write timeout
	// (httpapi.Config.HTTPWriteTimeout).
	MaxWait time.Duration
	// StoreRate and StoreBurst bound, per API key (open mode: per client
	// IP) and per node, what stored sends cost Redis, in bytes per second
	// and bytes (inbox.StoredCost); a send costing more than StoreBurst is
	// refused outright. StoreRate -1: no limit.
	StoreRate  int
	StoreBurst int
}

// Security is who may send and who may connect as whom.
type Security struct {
	// APIKeys authenticates publishers. Nil leaves the HTTP API open. The
	// transports check the keys; the engine reads only whether there are
	// any (Open), which it tells the cluster and cmd/server's checks.
	APIKeys *auth.Keyring
	// Tokens verifies subscribers' connection tokens. Nil trusts ?key=.
	Tokens *auth.Verifier
	// AllowOpenJoin lets a node without APIKeys and Tokens start on a Redis
	// where authenticated nodes are registered (cmd/server checks at
	// start). Dangerous: the open node takes anyone's sends to that
	// cluster's clients, and lets anyone connect as any of its keys.
	AllowOpenJoin bool
}

// Storage is what the node keeps in Redis for clients that were away.
type Storage struct {
	// HistoryTopics keep their messages (bounded like inboxes): a
	// subscriber that reconnects with since.<topic>=<id> gets what it
	// missed.
	HistoryTopics []string
	// HistoryReplay is how many of a history topic's newest messages a new
	// subscriber (one without since.<topic>) gets, at most InboxMaxLen.
	// NoReplay gives it none; 0, like every zero here, is the default
	// (DefaultConfig's 20), not "none": say NoReplay for that.
	HistoryReplay int
	// StoreByDefault stores every send in its keys' inboxes, as if each
	// said "store":true.
	StoreByDefault bool
	// InboxMaxLen and InboxMaxAge bound each key's inbox.
	InboxMaxLen int
	InboxMaxAge time.Duration
	// IdempotencyTTL is how long the answer to a request with an
	// Idempotency-Key is kept for retries.
	IdempotencyTTL time.Duration
	// InboxMemoryBytes bounds what the single-node mode's in-process inbox
	// holds, all keys together; stored sends beyond it are refused with
	// 503 storage_full (-1: no bound).
	InboxMemoryBytes int
	// IdempotencyMemoryBytes bounds the answers to Idempotency-Keys the
	// single-node mode remembers; idempotent sends beyond it are refused
	// with 503 storage_full (-1: no bound).
	IdempotencyMemoryBytes int
	// RedisHighWater is the fraction of Redis's maxmemory past which stored
	// sends, history posts and Idempotency-Key requests are refused with
	// 503 storage_full, so that the rest of maxmemory stays for heartbeats,
	// presence and pub/sub (-1: never refuse; Redis without maxmemory is
	// never refused on).
	RedisHighWater float64
	// AllowEvictingRedis lets a node start on a Redis whose
	// maxmemory-policy is not noeviction (cmd/server checks at start).
	// Such a Redis may silently drop stored messages and presence.
	AllowEvictingRedis bool
}

// NoReplay as Storage.HistoryReplay shows a new subscriber of a history
// topic nothing from before it joined. It is the only negative value
// accepted.
const NoReplay = -1

// DefaultConfig is the configuration of a node run without flags: the one
// place where defaults are written.
func DefaultConfig() Config {
	return Config{
		Logger: slog.New(slog.DiscardHandler),
		Redis:  redisconn.Config{ReplicaTimeout: redisconn.DefaultReplicaTimeout},
		Liveness: Liveness{
			PresenceTTL:  15 * time.Second,
			PingInterval: 25 * time.Second,
			WriteTimeout: 10 * time.Second,
			DrainWindow:  10 * time.Second,
		},
		Limits: Limits{
			QueueMessages:    256,
			QueueBytes:       1 << 20,
			MaxMessageBytes:  64 << 10,
			MaxKeysPerSend:   1000,
			MaxTopicsPerConn: 32,
			ReadLimit:        4096,
			MaxConns:         100000,
			MaxConnsPerKey:   32,
			MaxConnsPerIP:    1000,
			ConnRatePerIP:    20,
			ConnBurstPerIP:   40,
			MaxWait:          25 * time.Second,
			// 16 MiB/s: about 2,700 stored 1 KiB sends to fresh keys a
			// second per API key and node, above the 2,000/s a node was
			// measured storing (docs/benchmarks.md), so a busy backend is
			// not slowed; or three 1000-key sends a second. The burst holds
			// twelve of the costliest sends (64 KiB to 1000 fresh keys:
			// 5.1 MiB).
			StoreRate:  16 << 20,
			StoreBurst: 64 << 20,
		},
		Storage: Storage{
			HistoryTopics:  []string{"board"},
			HistoryReplay:  20,
			InboxMaxLen:    1000,
			InboxMaxAge:    24 * time.Hour,
			IdempotencyTTL: 24 * time.Hour,
			// A single node is a development or small deployment: 256 MB
			// of stored messages stays well inside a 512 MB container.
			InboxMemoryBytes:       256 << 20,
			IdempotencyMemoryBytes: 64 << 20,
			// A tenth of maxmemory left for what keeps the cluster
			// alive: heartbeats and presence of every node, which grow
			// with connections, not with stored sends.
			RedisHighWater: 0.9,
		},
	}
}

// Open reports whether the node runs in development mode: publishers
// (without APIKeys) or subscribers (without Tokens) are not authenticated.
func (c Config) Open() bool { return c.APIKeys == nil || c.Tokens == nil }

// withDefaults fills c's zero fields from DefaultConfig and checks the
// result.
func (c Config) withDefaults(hostname func() (string, error)) (Config, error) {
	fillZero(reflect.ValueOf(&c).Elem(), reflect.ValueOf(DefaultConfig()))
	if c.FenceAfter == 0 {
		c.FenceAfter = c.PresenceTTL
	}
	if c.NodeID == "" {
		h, err := hostname()
		if err != nil {
			return c, fmt.Errorf("node id not set and host name unknown: %w", err)
		}
		c.NodeID = h
	}
	return c, c.validate()
}

// fillZero sets each zero scalar field of dst (recursing into embedded
// groups) to def's. Lists and the Redis settings are left alone: nil means
// none, and Redis's zero value means no Redis.
func fillZero(dst, def reflect.Value) {
	for i := range dst.NumField() {
		f, d := dst.Field(i), def.Field(i)
		switch {
		case dst.Type().Field(i).Anonymous:
			fillZero(f, d)
		case f.Kind() == reflect.Slice || f.Kind() == reflect.Struct:
		case f.IsZero():
			f.Set(d)
		}
	}
}

func (c Config) validate() error {
	var errs []error
	for name, d := range map[string]time.Duration{
		"presence TTL": c.PresenceTTL, "ping interval": c.PingInterval,
		"write timeout": c.WriteTimeout, "drain window": c.DrainWindow, "fence after": c.FenceAfter,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, got %v", name, d))
		}
	}
	if c.PresenceTTL > 0 && c.PresenceTTL < 300*time.Millisecond {
		errs = append(errs, fmt.Errorf("presence TTL %v is too short to heartbeat within", c.PresenceTTL))
	}
	for name, n := range map[string]int{
		"queue messages": c.QueueMessages, "queue bytes": c.QueueBytes,
		"max message bytes": c.MaxMessageBytes, "max keys per send": c.MaxKeysPerSend,
		"max topics per connection": c.MaxTopicsPerConn,
	} {
		if n < 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, got %d", name, n))
		}
	}
	if c.ReadLimit < 0 {
		errs = append(errs, fmt.Errorf("read limit must be positive, got %d", c.ReadLimit))
	}
	if c.InboxMaxLen < 0 || c.InboxMaxAge < 0 || c.IdempotencyTTL < 0 {
		errs = append(errs, errors.New("inbox bounds and idempotency TTL must be positive"))
	}
	if c.InboxMemoryBytes < -1 || c.IdempotencyMemoryBytes < -1 {
		errs = append(errs, errors.New("inbox and idempotency memory bounds must be positive, or -1 for none"))
	}
	if c.RedisHighWater != -1 && (c.RedisHighWater <= 0 || c.RedisHighWater > 1) {
		errs = append(errs, fmt.Errorf("redis high-water mark must be a fraction of maxmemory in (0, 1], or -1 for none; got %v", c.RedisHighWater))
	}
	if c.HistoryReplay < NoReplay {
		errs = append(errs, fmt.Errorf("history replay must be %d (none) or more, got %d", NoReplay, c.HistoryReplay))
	}
	if c.HistoryReplay > c.InboxMaxLen && c.InboxMaxLen > 0 {
		errs = append(errs, fmt.Errorf("history replay (%d) must not exceed the inbox length (%d)", c.HistoryReplay, c.InboxMaxLen))
	}
	if (c.StoreRate < 0 && c.StoreRate != -1) || c.StoreBurst < 0 {
		errs = append(errs, errors.New("store rate must be positive (or -1: no limit) and store burst positive"))
	}
	if err := c.Redis.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.QueueBytes > 0 && c.MaxMessageBytes > c.QueueBytes {
		errs = append(errs, fmt.Errorf("queue bytes (%d) must hold at least one message of max message bytes (%d)", c.QueueBytes, c.MaxMessageBytes))
	}
	return errors.Join(errs...)
}
