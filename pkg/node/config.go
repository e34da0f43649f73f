package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/herald-push/herald/pkg/auth"
	"github.com/herald-push/herald/pkg/redisconn"
)

// Config is everything a Node is built from. cmd/server fills it from flags
// and HERALD_* variables; the zero value of a field means its default.
type Config struct {
	// Listen is the address the node serves on (default 127.0.0.1:8080).
	Listen string
	// AdvertiseAddr is the address other nodes and operators see in
	// /v1/cluster (default: Listen).
	AdvertiseAddr string
	// NodeID names the node in the cluster; it must be unique among running
	// nodes (default: the host name). A node restarted with the same id
	// takes over, and clears, what its previous process left in Redis.
	NodeID string
	// Redis joins the cluster through Redis: one server, Sentinel or Redis
	// Cluster. The zero value runs the node alone with in-process presence
	// and routing.
	Redis redisconn.Config
	// PresenceTTL is how long a node counts as holding its keys after its
	// last heartbeat (default 15s); heartbeats come every third of it.
	PresenceTTL time.Duration
	// PingInterval is how often each client is pinged (default 25s).
	PingInterval time.Duration
	// WriteTimeout bounds one write, or one ping's pong, to a client
	// (default 10s); past it the client is disconnected.
	WriteTimeout time.Duration
	// QueueMessages and QueueBytes bound each connection's outgoing queue
	// (defaults 256 messages, 1 MiB); overflow closes it with 1008.
	QueueMessages int
	QueueBytes    int
	// MaxMessageBytes bounds a message's data (default 64 KiB).
	MaxMessageBytes int
	// MaxKeysPerSend bounds the keys of one send (default 1000).
	MaxKeysPerSend int
	// MaxTopicsPerConn bounds the topics one connection joins (default 32).
	MaxTopicsPerConn int
	// ReadLimit bounds a client frame (default 4096 bytes); larger frames
	// close the connection with 1009.
	ReadLimit int64
	// DrainWindow spreads the closing of connections at shutdown so that
	// clients do not all reconnect in the same instant (default 10s).
	DrainWindow time.Duration
	// Logger receives the node's logs (default: discarded).
	Logger *slog.Logger

	// APIKeys authenticates publishers. Nil leaves the HTTP API open.
	APIKeys *auth.Keyring
	// Tokens verifies subscribers' connection tokens. Nil trusts ?key=.
	Tokens *auth.Verifier
	// Insecure allows listening beyond loopback without APIKeys and Tokens.
	// Without it such a node refuses to start.
	Insecure bool
	// PublicTopics may be posted to without an API key, each post limited
	// to PublicMaxMessageBytes (default 2048) and, per client IP and topic,
	// to PublicRate posts per second (default 0.2) in bursts of PublicBurst
	// (default 5).
	PublicTopics          []string
	PublicMaxMessageBytes int
	PublicRate            float64
	PublicBurst           int
	// TrustedProxies are the CIDRs or IPs whose X-Forwarded-For is believed
	// when finding a client's IP. Empty: the peer address is the client.
	TrustedProxies []string
	// AllowedOrigins are the browser origins (host patterns, as in
	// websocket.AcceptOptions.OriginPatterns) allowed to open WebSockets
	// besides the node's own. Empty: same origin only.
	AllowedOrigins []string

	// Connection limits; a negative value means no limit. Defaults: 100000
	// per node, 32 per key, 1000 per client IP, new connections per IP at
	// 20/s in bursts of 40.
	MaxConns       int
	MaxConnsPerKey int
	MaxConnsPerIP  int
	ConnRatePerIP  float64
	ConnBurstPerIP int

	// TLSCertFile and TLSKeyFile serve HTTPS and WSS when both are set.
	TLSCertFile string
	TLSKeyFile  string
	// HTTP server limits. Defaults: headers within 5s and 16 KiB, a whole
	// request within 30s, an answer within 30s, idle keep-alives for 120s.
	// WebSockets are exempt from the read and write timeouts once upgraded.
	HTTPReadHeaderTimeout time.Duration
	HTTPReadTimeout       time.Duration
	HTTPWriteTimeout      time.Duration
	HTTPIdleTimeout       time.Duration
	MaxHeaderBytes        int

	// HistoryTopics keep their messages (bounded like inboxes): a
	// subscriber that reconnects with since.<topic>=<id> gets what it
	// missed, and one without gets the newest HistoryReplay (default 20;
	// negative: none, at most InboxMaxLen).
	HistoryTopics []string
	HistoryReplay int
	// StoreByDefault stores every send in its keys' inboxes, as if each
	// said "store":true.
	StoreByDefault bool
	// InboxMaxLen and InboxMaxAge bound each key's inbox (defaults 1000
	// messages, 24h).
	InboxMaxLen int
	InboxMaxAge time.Duration
	// IdempotencyTTL is how long the answer to a send with an
	// Idempotency-Key is kept for retries (default 24h).
	IdempotencyTTL time.Duration
	// MaxWait caps a send's "timeout_ms" when it waits for delivery or an
	// ack (default 25s; keep it under HTTPWriteTimeout).
	MaxWait time.Duration
}

// Open reports whether the node runs in development mode: some part of the
// API or the WebSocket endpoint accepts anyone.
func (c Config) Open() bool { return c.APIKeys == nil || c.Tokens == nil }

func (c Config) withDefaults(hostname func() (string, error)) (Config, error) {
	set := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	setInt := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8080"
	}
	if c.AdvertiseAddr == "" {
		c.AdvertiseAddr = c.Listen
	}
	if c.NodeID == "" {
		h, err := hostname()
		if err != nil {
			return c, fmt.Errorf("node id not set and host name unknown: %w", err)
		}
		c.NodeID = h
	}
	set(&c.PresenceTTL, 15*time.Second)
	set(&c.PingInterval, 25*time.Second)
	set(&c.WriteTimeout, 10*time.Second)
	set(&c.DrainWindow, 10*time.Second)
	setInt(&c.QueueMessages, 256)
	setInt(&c.QueueBytes, 1<<20)
	setInt(&c.MaxMessageBytes, 64<<10)
	setInt(&c.MaxKeysPerSend, 1000)
	setInt(&c.MaxTopicsPerConn, 32)
	if c.ReadLimit == 0 {
		c.ReadLimit = 4096
	}
	setInt(&c.PublicMaxMessageBytes, 2048)
	setInt(&c.PublicBurst, 5)
	if c.PublicRate == 0 {
		c.PublicRate = 0.2
	}
	setInt(&c.MaxConns, 100000)
	setInt(&c.MaxConnsPerKey, 32)
	setInt(&c.MaxConnsPerIP, 1000)
	setInt(&c.ConnBurstPerIP, 40)
	if c.ConnRatePerIP == 0 {
		c.ConnRatePerIP = 20
	}
	setInt(&c.InboxMaxLen, 1000)
	setInt(&c.HistoryReplay, 20)
	set(&c.InboxMaxAge, 24*time.Hour)
	set(&c.IdempotencyTTL, 24*time.Hour)
	set(&c.MaxWait, 25*time.Second)
	set(&c.HTTPReadHeaderTimeout, 5*time.Second)
	set(&c.HTTPReadTimeout, 30*time.Second)
	set(&c.HTTPWriteTimeout, 30*time.Second)
	set(&c.HTTPIdleTimeout, 120*time.Second)
	setInt(&c.MaxHeaderBytes, 16<<10)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, c.validate()
}

func (c Config) validate() error {
	var errs []error
	for name, d := range map[string]time.Duration{
		"presence TTL": c.PresenceTTL, "ping interval": c.PingInterval,
		"write timeout": c.WriteTimeout, "drain window": c.DrainWindow,
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
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, errors.New("TLS needs both a certificate and a key file"))
	}
	if c.Open() && !c.Insecure && !loopback(c.Listen) {
		errs = append(errs, fmt.Errorf("refusing to listen on %s without authentication: configure API keys and a token key, "+
			"listen on 127.0.0.1, or pass --insecure to accept the risk", c.Listen))
	}
	if c.MaxWait >= c.HTTPWriteTimeout && c.HTTPWriteTimeout > 0 {
		errs = append(errs, fmt.Errorf("max wait %v must be shorter than the HTTP write timeout %v", c.MaxWait, c.HTTPWriteTimeout))
	}
	if c.InboxMaxLen < 0 || c.InboxMaxAge < 0 || c.IdempotencyTTL < 0 {
		errs = append(errs, errors.New("inbox bounds and idempotency TTL must be positive"))
	}
	if c.HistoryReplay > c.InboxMaxLen && c.InboxMaxLen > 0 {
		errs = append(errs, fmt.Errorf("history replay (%d) must not exceed the inbox length (%d)", c.HistoryReplay, c.InboxMaxLen))
	}
	if c.PublicRate < 0 || c.PublicMaxMessageBytes < 0 || c.PublicBurst < 0 {
		errs = append(errs, errors.New("public topic limits must be positive"))
	}
	if err := c.Redis.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.QueueBytes > 0 && c.MaxMessageBytes > c.QueueBytes {
		errs = append(errs, fmt.Errorf("queue bytes (%d) must hold at least one message of max message bytes (%d)", c.QueueBytes, c.MaxMessageBytes))
	}
	return errors.Join(errs...)
}

// loopback reports whether addr only listens on the loopback interface.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
