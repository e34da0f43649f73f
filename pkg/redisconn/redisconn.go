// Package redisconn connects a node to Redis in whichever topology its
// operators run — one server, Sentinel, or Redis Cluster — and confirms that
// writes which must survive a failover have reached replicas.
package redisconn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Timeout bounds the Redis work of one request or one background step.
const Timeout = 5 * time.Second

// DefaultReplicaTimeout is how long WAIT waits when Config.ReplicaTimeout
// is zero.
const DefaultReplicaTimeout = 500 * time.Millisecond

// Topology is how the node reaches Redis.
type Topology uint8

const (
	None     Topology = iota // no Redis: the node runs alone
	Single                   // one server (or a proxy in front of several)
	Sentinel                 // a master found through Redis Sentinel
	Cluster                  // Redis Cluster
)

func (t Topology) String() string {
	switch t {
	case Single:
		return "single"
	case Sentinel:
		return "sentinel"
	case Cluster:
		return "cluster"
	}
	return "none"
}

// Config says how to reach Redis: at most one of URL, ClusterAddrs and
// SentinelAddrs. With URL the credentials and TLS come from the URL
// (redis://user:pass@host:port/db, rediss:// for TLS); Username, Password
// and TLS are for the other two.
type Config struct {
	URL           string
	ClusterAddrs  []string // host:port of some cluster nodes; the rest are discovered
	SentinelAddrs []string // host:port of the sentinels
	MasterName    string   // the master the sentinels watch

	Username string
	Password string
	// SentinelPassword authenticates to the sentinels themselves, when they
	// have requirepass of their own.
	SentinelPassword string
	TLS              bool // connect with TLS, checking the server's certificate against the system roots

	// MinReplicas is how many replicas must have a stored message, and the
	// answer recorded for its Idempotency-Key, before the send is answered
	// (WAIT). 0 answers once the master has it.
	MinReplicas int
	// ReplicaTimeout is how long WAIT waits for them (default 500ms, at
	// most 1s).
	ReplicaTimeout time.Duration

	// ClientName names every connection (CLIENT SETNAME), so that Redis's
	// CLIENT LIST tells which node holds which connection: a node reaping
	// a dead one drops the dead node's subscriptions by it. A node sets it
	// to ClientName(its id); empty: unnamed.
	ClientName string
}

// ClientName is the connection name of node id's clients.
func ClientName(id string) string { return "herald:" + id }

// Topology reports which topology c describes.
func (c Config) Topology() Topology {
	switch {
	case len(c.ClusterAddrs) > 0:
		return Cluster
	case len(c.SentinelAddrs) > 0:
		return Sentinel
	case c.URL != "":
		return Single
	}
	return None
}

// Validate reports a configuration that names no topology unambiguously.
func (c Config) Validate() error {
	set := 0
	for _, on := range []bool{c.URL != "", len(c.ClusterAddrs) > 0, len(c.SentinelAddrs) > 0} {
		if on {
			set++
		}
	}
	var errs []error
	if set > 1 {
		errs = append(errs, errors.New("redis: give exactly one of --redis-url, --redis-cluster-addrs and --redis-sentinel-addrs"))
	}
	if len(c.SentinelAddrs) > 0 && c.MasterName == "" {
		errs = append(errs, errors.New("redis: --redis-sentinel-addrs needs --redis-master-name"))
	}
	if c.MasterName != "" && len(c.SentinelAddrs) == 0 {
		errs = append(errs, errors.New("redis: --redis-master-name goes with --redis-sentinel-addrs"))
	}
	if c.URL != "" && (c.Username != "" || c.TLS || c.SentinelPassword != "") {
		errs = append(errs, errors.New("redis: with --redis-url put the credentials in the URL (the password may come from HERALD_REDIS_PASSWORD or --redis-password-file instead) and use rediss:// for TLS"))
	}
	if c.URL != "" && c.Password != "" && urlPassword(c.URL) != "" {
		errs = append(errs, errors.New("redis: the password is in --redis-url and in HERALD_REDIS_PASSWORD or --redis-password-file: give it once"))
	}
	for _, a := range append(append([]string(nil), c.ClusterAddrs...), c.SentinelAddrs...) {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			errs = append(errs, fmt.Errorf("redis: address %q is not host:port", a))
		}
	}
	if c.MinReplicas < 0 {
		errs = append(errs, fmt.Errorf("redis: min replicas must be 0 or more, got %d", c.MinReplicas))
	}
	if c.MinReplicas > 0 && c.Topology() == None {
		errs = append(errs, errors.New("redis: --redis-min-replicas needs Redis"))
	}
	if c.ReplicaTimeout < 0 || c.ReplicaTimeout > time.Second {
		// WAIT holds the connection; past a second a send would rather
		// answer 503 and let the sender retry.
		errs = append(errs, fmt.Errorf("redis: replica timeout must be between 0 and 1s, got %v", c.ReplicaTimeout))
	}
	return errors.Join(errs...)
}

// Replication returns the replica requirement of c's writes.
func (c Config) Replication() Replication {
	t := c.ReplicaTimeout
	if t == 0 {
		t = DefaultReplicaTimeout
	}
	return Replication{Min: c.MinReplicas, Timeout: t}
}

// New returns a client for c's topology. It does not contact Redis.
func New(c Config) (redis.UniversalClient, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	// Fail fast while Redis is away: callers answer 503 and retry, which
	// beats holding HTTP requests through go-redis backoff (by default 5
	// dial retries 100ms apart per attempt).
	const (
		dialTimeout = 2 * time.Second
		ioTimeout   = 2 * time.Second
	)
	// A new connection's handshake costs round trips before its first
	// command: HELLO, then CLIENT MAINT_NOTIFICATIONS (which Redis before
	// 8 refuses) and CLIENT SETINFO. Only HELLO is needed: on a link of
	// 700 ms each way the other two made each new connection 4.2 s late,
	// and a first heartbeat (a new connection plus three commands) missed
	// its deadline again and again.
	noMaint := &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	var tlsConfig *tls.Config
	if c.TLS {
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	switch c.Topology() {
	case Single:
		o, err := redis.ParseURL(c.URL)
		if u, perr := url.Parse(c.URL); err != nil || perr != nil || u.Hostname() == "" {
			// Neither the URL nor the parser's error, which quotes
			// parts of it: a malformed URL hides its password where no
			// redaction finds it (redis:/user:pw@host parses the
			// password as a database number), and this message ends
			// up in logs and on the terminal.
			return nil, errors.New("redis url is malformed (not shown, as it may hold a password): " +
				"give redis://[user[:password]@]host[:port][/db] or rediss://..., the password better in HERALD_REDIS_PASSWORD")
		}
		if o.Password == "" {
			o.Password = c.Password
		}
		o.MaxRetries, o.DialerRetries, o.DialerRetryTimeout = 1, 1, 50*time.Millisecond
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = dialTimeout, ioTimeout, ioTimeout
		o.ClientName = c.ClientName
		o.DisableIdentity, o.MaintNotificationsConfig = true, noMaint
		return redis.NewClient(o), nil
	case Sentinel:
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName:         c.MasterName,
			SentinelAddrs:      c.SentinelAddrs,
			SentinelPassword:   c.SentinelPassword,
			Username:           c.Username,
			Password:           c.Password,
			TLSConfig:          tlsConfig,
			ClientName:         c.ClientName,
			MaxRetries:         1,
			DialerRetries:      1,
			DialerRetryTimeout: 50 * time.Millisecond,
			DialTimeout:        dialTimeout,
			ReadTimeout:        ioTimeout,
			WriteTimeout:       ioTimeout,
			DisableIdentity:    true,
		}), nil
	case Cluster:
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs:     c.ClusterAddrs,
			Username:  c.Username,
			Password:  c.Password,
			TLSConfig: tlsConfig,
			// Redirects (MOVED, ASK) during a resharding or a failover
			// need a few tries; each is quick.
			MaxRedirects:       8,
			MaxRetries:         2,
			DialerRetries:      1,
			DialerRetryTimeout: 50 * time.Millisecond,
			DialTimeout:        dialTimeout,
			ReadTimeout:        ioTimeout,
			WriteTimeout:       ioTimeout,
			ClientName:         c.ClientName,
			DisableIdentity:    true,

			MaintNotificationsConfig: noMaint,
		}), nil
	}
	return nil, errors.New("redis: no topology configured")
}

// urlPassword returns the password in u's userinfo, or "".
func urlPassword(u string) string {
	start, end, ok := passwordSpan(u)
	if !ok {
		return ""
	}
	return u[start:end]
}

// passwordSpan finds the password of u's userinfo by hand rather than with
// url.Parse, so that a URL too malformed to parse is redacted too:
// scheme://user:password@host..., the userinfo ending at the last '@'
// before the path.
func passwordSpan(u string) (start, end int, ok bool) {
	_, rest, found := strings.Cut(u, "://")
	if !found {
		rest = u
	}
	off := len(u) - len(rest)
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	at := strings.LastIndexByte(rest, '@')
	if at < 0 {
		return 0, 0, false
	}
	colon := strings.IndexByte(rest[:at], ':')
	if colon < 0 || colon+1 == at {
		return 0, 0, false
	}
	return off + colon + 1, off + at, true
}

// ErrNotReplicated: a write reached the master but WAIT did not confirm
// that enough replicas have it within the timeout. The write stands on the
// master and may yet replicate, or may be lost in a failover.
var ErrNotReplicated = errors.New("not confirmed on enough replicas")

// Replication is how many replicas must confirm a durable write, and for how
// long to wait for them. The zero value confirms nothing.
type Replication struct {
	Min     int
	Timeout time.Duration
}

// Write runs write's commands in one pipeline on the master that owns key
// and, when r asks for replicas, WAITs on the same connection: WAIT counts
// the writes of its own connection, and a keyless command in a cluster
// pipeline would go to an arbitrary node. The keys write touches must all
// be in key's slot, and its commands must be safe to run twice: when the
// slot has moved (a resharding or a failover) Write runs them again on the
// slot's new master. It returns an error wrapping ErrNotReplicated when the
// commands succeeded but too few replicas confirmed them.
func (r Replication) Write(ctx context.Context, rdb redis.UniversalClient, key string, write func(p redis.Pipeliner)) error {
	if r.Min <= 0 {
		_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error { write(p); return nil })
		return err
	}
	var err error
	for attempt := 0; ; attempt++ {
		_, err = r.Pipeline(ctx, rdb, key, write)
		if !Redirected(err) || attempt == 5 || !Backoff(ctx, rdb, attempt) {
			return err
		}
	}
}

// Pipeline is one attempt of Write: it does not retry, so that a caller
// whose commands must not run twice can retry only those that failed with
// a redirect (see Redirected). With r.Min 0 it sends no WAIT.
func (r Replication) Pipeline(ctx context.Context, rdb redis.UniversalClient, key string, write func(p redis.Pipeliner)) ([]redis.Cmder, error) {
	target := redis.Cmdable(rdb)
	if cc, ok := rdb.(*redis.ClusterClient); ok && r.Min > 0 {
		master, err := cc.MasterForKey(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("find the master of %s: %w", key, err)
		}
		target = master
	}
	var wait *redis.Cmd
	cmds, err := target.Pipelined(ctx, func(p redis.Pipeliner) error {
		write(p)
		if r.Min > 0 {
			wait = p.Do(ctx, "wait", r.Min, r.Timeout.Milliseconds())
		}
		return nil
	})
	if err != nil {
		return cmds, err
	}
	if wait != nil {
		if got, _ := wait.Int64(); got < int64(r.Min) {
			return cmds, fmt.Errorf("%w: %d of %d replicas within %v", ErrNotReplicated, got, r.Min, r.Timeout)
		}
	}
	return cmds, nil
}

// Read runs read on one connection to the master that owns key and, when r
// asks for replicas and read saw something (read reports it), then writes a
// marker and WAITs on that same connection. Replication is in order, so
// replicas that have the marker have every write the read saw: what a
// caller passes on after a confirmed Read survives a failover. A read
// without it could pass on a write answered ErrNotReplicated (or one taken
// by a restarted, empty master that still believed it was the master),
// which the failover then loses and the sender's retry stores again under a
// new id: the client would see one message twice.
//
// marker names a key in key's slot for Redis Cluster, where the marker is a
// short-lived SET (a PUBLISH there travels on the cluster bus, which WAIT
// does not count); elsewhere it is a PUBLISH to that name, which stores
// nothing and so works even when Redis is at its maxmemory. It returns an
// error wrapping ErrNotReplicated when too few replicas confirmed.
func (r Replication) Read(ctx context.Context, rdb redis.UniversalClient, key, marker string, read func(c redis.Cmdable) (saw bool, err error)) error {
	if r.Min <= 0 {
		_, err := read(rdb)
		return err
	}
	var node *redis.Client
	cluster := false
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		m, err := c.MasterForKey(ctx, key)
		if err != nil {
			return fmt.Errorf("find the master of %s: %w", key, err)
		}
		node, cluster = m, true
	case *redis.Client:
		node = c
	default:
		return fmt.Errorf("confirm a read: unsupported Redis client %T", rdb)
	}
	conn := node.Conn()
	defer conn.Close()
	saw, err := read(conn)
	if err != nil || !saw {
		return err
	}
	var wait *redis.Cmd
	if _, err := conn.Pipelined(ctx, func(p redis.Pipeliner) error {
		if cluster {
			p.Set(ctx, marker, "", time.Second)
		} else {
			p.Publish(ctx, marker, "")
		}
		wait = p.Do(ctx, "wait", r.Min, r.Timeout.Milliseconds())
		return nil
	}); err != nil {
		return fmt.Errorf("confirm a read on the replicas: %w", err)
	}
	if got, _ := wait.Int64(); got < int64(r.Min) {
		return fmt.Errorf("%w: %d of %d replicas confirmed a read within %v", ErrNotReplicated, got, r.Min, r.Timeout)
	}
	return nil
}

// MasterOf returns an identity of the master that serves key: keys with the
// same identity can share one Pipeline. Outside a cluster every key has the
// same one.
func MasterOf(ctx context.Context, rdb redis.UniversalClient, key string) (any, error) {
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		return rdb, nil
	}
	return cc.MasterForKey(ctx, key)
}

// Redirected reports an error that means the key's slot is served
// elsewhere now, or is moving: the command did not run.
func Redirected(err error) bool {
	if err == nil {
		return false
	}
	for _, prefix := range []string{"MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN"} {
		if redis.HasErrorPrefix(err, prefix) {
			return true
		}
	}
	return false
}

// Backoff waits before retry attempt+1 after a redirect, asking a cluster
// client to learn the new slot layout meanwhile. It reports false when ctx
// ended first.
func Backoff(ctx context.Context, rdb redis.UniversalClient, attempt int) bool {
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		cc.ReloadState(ctx)
	}
	select {
	case <-time.After(time.Duration(attempt+1) * 50 * time.Millisecond):
		return true
	case <-ctx.Done():
		return false
	}
}

// Epoch identifies the data set every master currently serves: each
// master's replication id, which changes when a replica is promoted or a
// server restarts. Between two equal epochs no master was replaced, so no
// write a master acknowledged can have been lost to a failover or a
// restart.
func Epoch(ctx context.Context, rdb redis.UniversalClient) (string, error) {
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		id, err := replicationID(ctx, rdb)
		if err != nil {
			return "", fmt.Errorf("read replication id: %w", err)
		}
		return id, nil
	}
	var mu sync.Mutex
	var ids []string
	err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		id, err := replicationID(ctx, c)
		if err != nil {
			return err
		}
		mu.Lock()
		ids = append(ids, id)
		mu.Unlock()
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("read replication ids of the cluster's masters: %w", err)
	}
	slices.Sort(ids)
	return strings.Join(ids, ","), nil
}

func replicationID(ctx context.Context, c redis.Cmdable) (string, error) {
	info, err := c.Info(ctx, "replication").Result()
	if err != nil {
		return "", err
	}
	for line := range strings.SplitSeq(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "master_replid:"); ok {
			return v, nil
		}
	}
	return "", errors.New("no master_replid in INFO replication")
}

// OutOfMemory reports an error with which Redis refused a command because
// it is at its maxmemory (with noeviction, or nothing left to evict): the
// command did not run.
func OutOfMemory(err error) bool {
	return err != nil && (redis.HasErrorPrefix(err, "OOM") || strings.Contains(err.Error(), "OOM command not allowed"))
}
