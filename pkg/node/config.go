package node

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
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
	// RedisURL joins the cluster through Redis (redis:// or rediss://).
	// Empty runs the node alone with in-process presence and routing.
	RedisURL string
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
}

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
	if c.QueueBytes > 0 && c.MaxMessageBytes > c.QueueBytes {
		errs = append(errs, fmt.Errorf("queue bytes (%d) must hold at least one message of max message bytes (%d)", c.QueueBytes, c.MaxMessageBytes))
	}
	return errors.Join(errs...)
}
