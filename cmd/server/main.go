// Command server runs one herald node.
//
// Every flag can also be set with an environment variable: --redis-url is
// HERALD_REDIS_URL, --node-id is HERALD_NODE_ID, and so on. A flag given on
// the command line wins over the variable.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/redis/go-redis/v9"

	"github.com/herald-push/herald/pkg/auth"
	"github.com/herald-push/herald/pkg/httpapi"
	"github.com/herald-push/herald/pkg/node"
	"github.com/herald-push/herald/pkg/redisconn"
)

func main() {
	if err := run(os.Args[1:], os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "herald:", err)
		os.Exit(1)
	}
}

func run(args []string, getenv func(string) string, stderr io.Writer) error {
	set, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	cfg := set.node
	cfg.Logger = slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: set.logLevel}))
	// Both libraries keep process-wide settings; this binary is the one
	// place that sets them. go-redis would otherwise print every failed
	// dial while Redis is away; herald reports that through /readyz,
	// metrics and its own log lines.
	gin.SetMode(gin.ReleaseMode)
	redis.SetLogger(redisLogger{cfg.Logger})

	// The HTTP side is checked before the node starts: a node started
	// on Redis joins the cluster at once.
	if err := set.api.Validate(cfg); err != nil {
		return err
	}
	if err := checkRedis(context.Background(), cfg); err != nil {
		return err
	}
	n, err := node.New(cfg)
	if err != nil {
		return err
	}
	api, err := httpapi.New(n, set.api)
	if err != nil {
		_ = n.Shutdown(context.Background())
		return err
	}
	if cfg.Redis.Topology() == redisconn.None {
		cfg.Logger.Warn("no Redis configured: running as a single node with in-process presence and routing")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if set.debugAddr != "" {
		go serveDebug(ctx, set.debugAddr, cfg.Logger)
	}
	return api.Run(ctx)
}

// serveDebug serves net/http/pprof on its own listener, never on the
// public one.
func serveDebug(ctx context.Context, addr string, log *slog.Logger) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { <-ctx.Done(); srv.Close() }()
	log.Info("debug listener (pprof)", "addr", addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("debug listener", "err", err)
	}
}

// redisLogger sends go-redis's own messages to slog at debug level.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "go-redis: "+fmt.Sprintf(format, v...))
}

// envName is the variable that stands in for a flag: --redis-url is
// HERALD_REDIS_URL.
func envName(flag string) string {
	return "HERALD_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// settings is what the command line and the HERALD_* variables say: the
// engine's configuration, the HTTP adapter's, and the binary's own.
type settings struct {
	node      node.Config
	api       httpapi.Config
	logLevel  slog.Level
	debugAddr string
}

// parseConfig fills the settings from flags, each falling back to its
// HERALD_* variable, then to the default.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (settings, error) {
	fs := flag.NewFlagSet("herald", flag.ContinueOnError)
	fs.SetOutput(stderr)
	return parseConfigInto(fs, args, getenv)
}

// parseConfigInto defines every flag on fs and parses args. Which flag
// fills which Config is the packages' split: what only the HTTP adapter
// reads goes to httpapi.Config, the rest to node.Config.
func parseConfigInto(fs *flag.FlagSet, args []string, getenv func(string) string) (settings, error) {
	var cfg node.Config
	var api httpapi.Config
	d := node.DefaultConfig()    // every engine flag's default
	h := httpapi.DefaultConfig() // every HTTP flag's default
	var errs []error
	// fromEnv returns the flag's HERALD_* variable parsed, or def when unset.
	fromEnv := func(name string, def any, parse func(string) (any, error)) any {
		v := getenv(envName(name))
		if v == "" {
			return def
		}
		parsed, err := parse(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", envName(name), err))
			return def
		}
		return parsed
	}
	str := func(p *string, name, def, usage string) {
		fs.StringVar(p, name, fromEnv(name, def, func(v string) (any, error) { return v, nil }).(string), usage)
	}
	dur := func(p *time.Duration, name string, def time.Duration, usage string) {
		parse := func(v string) (any, error) { return time.ParseDuration(v) }
		fs.DurationVar(p, name, fromEnv(name, def, parse).(time.Duration), usage)
	}
	integer := func(p *int, name string, def int, usage string) {
		parse := func(v string) (any, error) { return strconv.Atoi(v) }
		fs.IntVar(p, name, fromEnv(name, def, parse).(int), usage)
	}
	float := func(p *float64, name string, def float64, usage string) {
		parse := func(v string) (any, error) { return strconv.ParseFloat(v, 64) }
		fs.Float64Var(p, name, fromEnv(name, def, parse).(float64), usage)
	}
	boolean := func(p *bool, name string, usage string) {
		parse := func(v string) (any, error) { return strconv.ParseBool(v) }
		fs.BoolVar(p, name, fromEnv(name, false, parse).(bool), usage)
	}
	list := func(p *[]string, name, def, usage string) {
		fs.Func(name, usage+" (comma-separated; default "+strconv.Quote(def)+")", func(v string) error { *p = splitList(v); return nil })
		*p = splitList(fromEnv(name, def, func(v string) (any, error) { return v, nil }).(string))
	}

	var readLimit, bodyBytesInFlight int
	var level, debugAddr string
	var sec security
	var redisSecrets redisSecrets
	str(&api.Listen, "listen", h.Listen, "address to serve HTTP and WebSocket on")
	str(&cfg.AdvertiseAddr, "advertise-addr", "", "address shown to the cluster (default: --listen)")
	str(&cfg.NodeID, "node-id", "", "unique id of this node in the cluster (default: host name)")
	str(&cfg.Redis.URL, "redis-url", "", "redis:// or rediss:// URL of one Redis to join a cluster through; empty (and no cluster or sentinel addresses) runs a single node")
	list(&cfg.Redis.ClusterAddrs, "redis-cluster-addrs", "", "host:port of Redis Cluster nodes to join a cluster through")
	list(&cfg.Redis.SentinelAddrs, "redis-sentinel-addrs", "", "host:port of the Redis Sentinels that watch --redis-master-name")
	str(&cfg.Redis.MasterName, "redis-master-name", "", "name of the master the sentinels watch")
	str(&cfg.Redis.Username, "redis-username", "", "ACL user for --redis-cluster-addrs or --redis-sentinel-addrs (password in HERALD_REDIS_PASSWORD or --redis-password-file)")
	str(&redisSecrets.passwordFile, "redis-password-file", "", "file holding the Redis password, for a --redis-url without one, cluster or sentinel (or the password itself in HERALD_REDIS_PASSWORD)")
	str(&redisSecrets.sentinelPasswordFile, "redis-sentinel-password-file", "", "file holding the sentinels' own password (or the password itself in HERALD_REDIS_SENTINEL_PASSWORD)")
	boolean(&cfg.Redis.TLS, "redis-tls", "connect to cluster or sentinel Redis with TLS")
	integer(&cfg.Redis.MinReplicas, "redis-min-replicas", 0, "replicas that must confirm a stored send before it is answered (WAIT); 0: the master's word")
	dur(&cfg.Redis.ReplicaTimeout, "redis-replica-timeout", d.Redis.ReplicaTimeout, "how long a stored send waits for --redis-min-replicas (at most 1s)")
	dur(&cfg.PresenceTTL, "presence-ttl", d.PresenceTTL, "how long a node's keys count as online after its last heartbeat")
	dur(&cfg.FenceAfter, "fence-after", 0, "how long after its last good heartbeat a node that lost Redis closes its clients with 1013 so they reconnect elsewhere (0: --presence-ttl)")
	dur(&cfg.PingInterval, "ping-interval", d.PingInterval, "how often each client is pinged")
	dur(&cfg.WriteTimeout, "write-timeout", d.WriteTimeout, "limit on one write or pong; slower clients are disconnected")
	dur(&cfg.DrainWindow, "drain-window", d.DrainWindow, "time over which connections are closed at shutdown")
	integer(&cfg.QueueMessages, "queue-messages", d.QueueMessages, "messages a connection's outgoing queue holds")
	integer(&cfg.QueueBytes, "queue-bytes", d.QueueBytes, "bytes a connection's outgoing queue holds")
	integer(&cfg.MaxMessageBytes, "max-message-bytes", d.MaxMessageBytes, "largest message data accepted")
	integer(&cfg.MaxKeysPerSend, "max-keys-per-send", d.MaxKeysPerSend, "most keys in one send")
	integer(&api.MaxBatch, "max-batch", h.MaxBatch, "most sends, publishes and broadcasts in one POST /v1/batch")
	integer(&api.MaxRequestsInFlight, "max-requests-in-flight", h.MaxRequestsInFlight, "HTTP API requests served at once (not WebSockets, health, metrics); over it 503 overloaded (-1: no limit)")
	integer(&bodyBytesInFlight, "max-body-bytes-in-flight", 0, "request body bytes held at once; over it 503 overloaded (0: four maximal batches, -1: no limit)")
	integer(&cfg.MaxTopicsPerConn, "max-topics-per-conn", d.MaxTopicsPerConn, "most topics one connection joins")
	integer(&readLimit, "read-limit", int(d.ReadLimit), "largest frame a client may send (bytes); larger closes with 1009")
	str(&level, "log-level", "info", "debug, info, warn or error")
	str(&debugAddr, "debug-addr", "", "serve net/http/pprof on this address (keep it private); empty: off")

	str(&sec.apiKeysFile, "api-keys-file", "", "JSON file of publisher API keys [{name,key,scopes}] (or the JSON itself in HERALD_API_KEYS)")
	str(&sec.tokenSecretFile, "token-secret-file", "", "file holding the HS256 secret for connection tokens (or the secret itself in HERALD_TOKEN_SECRET)")
	str(&sec.tokenPublicKeyFile, "token-public-key-file", "", "PEM file of RSA or EC P-256 public keys for RS256/ES256 connection tokens")
	str(&sec.tokenJWKSFile, "token-jwks-file", "", "JSON Web Key Set file of public keys for connection tokens")
	str(&sec.tokens.Audience, "token-audience", "", "required aud claim of connection tokens")
	str(&sec.tokens.Issuer, "token-issuer", "", "required iss claim of connection tokens")
	dur(&sec.tokens.Leeway, "token-leeway", 30*time.Second, "clock skew allowed when checking exp and nbf")
	boolean(&api.Insecure, "insecure", "allow listening beyond loopback without API keys and tokens")
	boolean(&cfg.AllowOpenJoin, "allow-open-join", "DANGEROUS: start without API keys and tokens on a Redis where authenticated nodes are registered")
	list(&api.PublicTopics, "public-topics", "", "topics anyone may post to without an API key")
	list(&cfg.HistoryTopics, "history-topics", strings.Join(d.HistoryTopics, ","), "topics that keep history, so reconnecting subscribers get what they missed")
	integer(&cfg.HistoryReplay, "history-replay", d.HistoryReplay, "newest messages of a history topic a new subscriber gets (0: none)")
	integer(&api.PublicMaxMessageBytes, "public-max-message-bytes", h.PublicMaxMessageBytes, "largest data of a public post")
	float(&api.PublicRate, "public-rate", h.PublicRate, "public posts per second per client IP and topic")
	integer(&api.PublicBurst, "public-burst", h.PublicBurst, "public posts allowed in a burst per client IP and topic")
	list(&api.TrustedProxies, "trusted-proxies", "", "CIDRs or IPs of proxies whose X-Forwarded-For is believed")
	list(&api.AllowedOrigins, "allowed-origins", "", "browser origins (host patterns) allowed besides the node's own")
	list(&api.AllowedHosts, "allowed-hosts", "", "Host names the API answers to (no port; *.domain for subdomains; * for any); default: any with API keys and tokens, else localhost and the listen host")
	integer(&cfg.MaxConns, "max-conns", d.MaxConns, "connections per node (-1: no limit)")
	integer(&cfg.MaxConnsPerKey, "max-conns-per-key", d.MaxConnsPerKey, "connections per key per node (-1: no limit)")
	integer(&cfg.MaxConnsPerIP, "max-conns-per-ip", d.MaxConnsPerIP, "connections per client IP per node (-1: no limit)")
	float(&cfg.ConnRatePerIP, "conn-rate-per-ip", d.ConnRatePerIP, "new connections per second per client IP (-1: no limit)")
	integer(&cfg.ConnBurstPerIP, "conn-burst-per-ip", d.ConnBurstPerIP, "new connections allowed in a burst per client IP")
	str(&api.TLSCertFile, "tls-cert", "", "certificate file (PEM) to serve HTTPS and WSS")
	str(&api.TLSKeyFile, "tls-key", "", "private key file (PEM) for --tls-cert")
	dur(&api.HTTPReadHeaderTimeout, "http-read-header-timeout", h.HTTPReadHeaderTimeout, "time to receive a request's headers")
	dur(&api.HTTPReadTimeout, "http-read-timeout", h.HTTPReadTimeout, "time to receive a whole request")
	dur(&api.HTTPWriteTimeout, "http-write-timeout", h.HTTPWriteTimeout, "time to answer a request (not WebSockets)")
	dur(&api.HTTPIdleTimeout, "http-idle-timeout", h.HTTPIdleTimeout, "how long an idle keep-alive connection stays open")
	integer(&api.MaxHeaderBytes, "max-header-bytes", h.MaxHeaderBytes, "largest request headers")
	boolean(&cfg.StoreByDefault, "store-by-default", "store every send in its keys' inboxes, as if it said \"store\":true")
	integer(&cfg.InboxMaxLen, "inbox-max-len", d.InboxMaxLen, "stored messages kept per key")
	dur(&cfg.InboxMaxAge, "inbox-max-age", d.InboxMaxAge, "how long stored messages are kept")
	dur(&cfg.IdempotencyTTL, "idempotency-ttl", d.IdempotencyTTL, "how long the answer to a send with an Idempotency-Key is kept")
	integer(&cfg.InboxMemoryBytes, "inbox-memory-bytes", d.InboxMemoryBytes, "single-node mode: bytes of stored messages held, all keys together (-1: no limit)")
	integer(&cfg.IdempotencyMemoryBytes, "idempotency-memory-bytes", d.IdempotencyMemoryBytes, "single-node mode: bytes of remembered Idempotency-Key answers (-1: no limit)")
	dur(&cfg.MaxWait, "max-wait", d.MaxWait, "longest a send may wait for delivery or an ack")
	integer(&cfg.StoreRate, "store-rate", d.StoreRate, "bytes of Redis stored sends may cost per second per API key (open mode: per client IP) on each node (-1: no limit)")
	float(&cfg.RedisHighWater, "redis-high-water", d.RedisHighWater, "fraction of Redis's maxmemory past which stored sends, history posts and Idempotency-Key requests are refused 503 storage_full, keeping the rest for presence (-1: never)")
	boolean(&cfg.AllowEvictingRedis, "allow-evicting-redis", "start on a Redis whose maxmemory-policy is not noeviction (it may silently drop stored messages and presence)")
	integer(&cfg.StoreBurst, "store-burst", d.StoreBurst, "bytes of Redis stored sends may cost in a burst per API key or client IP; a costlier send is refused 413")

	if err := fs.Parse(args); err != nil {
		return settings{}, err
	}
	if fs.NArg() > 0 {
		return settings{}, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if len(errs) > 0 {
		return settings{}, errs[0]
	}
	if cfg.RedisHighWater == 0 {
		// In node.Config zero means the default; given here it would
		// silently become 0.9.
		return settings{}, fmt.Errorf("--redis-high-water must be in (0, 1], or -1 to never refuse stored sends on Redis memory")
	}
	switch {
	case cfg.HistoryReplay < 0:
		// node.NoReplay is -1, but on the command line 0 is none: a
		// negative count is a mistake, not another way to say none.
		return settings{}, fmt.Errorf("--history-replay (HERALD_HISTORY_REPLAY) must be 0 (none) or more, got %d", cfg.HistoryReplay)
	case cfg.HistoryReplay == 0:
		cfg.HistoryReplay = node.NoReplay // in node.Config zero is the default
	}
	cfg.ReadLimit = int64(readLimit)
	api.MaxBodyBytesInFlight = int64(bodyBytesInFlight)
	if cfg.AdvertiseAddr == "" {
		cfg.AdvertiseAddr = api.Listen
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return settings{}, fmt.Errorf("log level: %w", err)
	}
	if err := sec.load(&cfg, getenv); err != nil {
		return settings{}, err
	}
	if err := redisSecrets.load(&cfg, getenv); err != nil {
		return settings{}, err
	}
	return settings{node: cfg, api: api, logLevel: lvl, debugAddr: debugAddr}, nil
}

// security is where the API keys and token keys come from.
type security struct {
	apiKeysFile        string
	tokenSecretFile    string
	tokenPublicKeyFile string
	tokenJWKSFile      string
	tokens             auth.TokenConfig
}

// load reads the configured key material into cfg.APIKeys and cfg.Tokens.
// Secrets may come from files (Kubernetes Secret volumes) or from variables
// (Secret env); never from flags, which any local user can read in ps.
func (s security) load(cfg *node.Config, getenv func(string) string) error {
	apiKeys := []byte(getenv("HERALD_API_KEYS"))
	if s.apiKeysFile != "" {
		b, err := os.ReadFile(s.apiKeysFile)
		if err != nil {
			return fmt.Errorf("api keys: %w", err)
		}
		apiKeys = b
	}
	if len(apiKeys) > 0 {
		keys, err := auth.ParseAPIKeys(apiKeys)
		if err != nil {
			return err
		}
		if cfg.APIKeys, err = auth.NewKeyring(keys); err != nil {
			return err
		}
	}
	read := func(path string) ([]byte, error) {
		if path == "" {
			return nil, nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("token keys: %w", err)
		}
		return b, nil
	}
	var err error
	if secret := getenv("HERALD_TOKEN_SECRET"); secret != "" {
		s.tokens.HS256Secret = []byte(secret)
	}
	if s.tokenSecretFile != "" {
		b, err := read(s.tokenSecretFile)
		if err != nil {
			return err
		}
		s.tokens.HS256Secret = []byte(strings.TrimSpace(string(b)))
	}
	if s.tokens.PublicKeysPEM, err = read(s.tokenPublicKeyFile); err != nil {
		return err
	}
	if s.tokens.JWKS, err = read(s.tokenJWKSFile); err != nil {
		return err
	}
	if s.tokens.HS256Secret != nil || s.tokens.PublicKeysPEM != nil || s.tokens.JWKS != nil {
		if cfg.Tokens, err = auth.NewVerifier(s.tokens); err != nil {
			return err
		}
	}
	return nil
}

// redisSecrets is where the Redis passwords for cluster and sentinel come
// from: files or variables, never flags (the URL carries its own).
type redisSecrets struct {
	passwordFile         string
	sentinelPasswordFile string
}

func (r redisSecrets) load(cfg *node.Config, getenv func(string) string) error {
	read := func(file, env string) (string, error) {
		if file == "" {
			return getenv(env), nil
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("redis password: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	var err error
	if cfg.Redis.Password, err = read(r.passwordFile, "HERALD_REDIS_PASSWORD"); err != nil {
		return err
	}
	cfg.Redis.SentinelPassword, err = read(r.sentinelPasswordFile, "HERALD_REDIS_SENTINEL_PASSWORD")
	return err
}

func splitList(v string) []string {
	var out []string
	for _, item := range strings.Split(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// startCheckTimeout bounds each start-up check of Redis. It is longer
// than a request's: a check is a few round trips plus a new connection's
// handshake, and a node 700 ms from Redis must still get through it (an
// open node that cannot finish the check refuses to start).
const startCheckTimeout = 3 * redisconn.Timeout

// checkRedis runs the checks a node makes of its Redis before it joins,
// over one client: on a slow link each new connection's handshake costs
// round trips the node's start would otherwise pay once per check.
func checkRedis(ctx context.Context, cfg node.Config) error {
	if cfg.Redis.Topology() == redisconn.None {
		return nil
	}
	rdb, err := redisconn.New(cfg.Redis)
	if err != nil {
		return err
	}
	defer rdb.Close()
	if err := checkOpenJoin(ctx, rdb, cfg, cfg.Logger); err != nil {
		return err
	}
	return checkRedisPolicy(ctx, rdb, cfg, cfg.Logger)
}
