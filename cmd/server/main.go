// Command server runs one herald node.
//
// Every flag can also be set with an environment variable: --redis-url is
// HERALD_REDIS_URL, --node-id is HERALD_NODE_ID, and so on. A flag given on
// the command line wins over the variable.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/herald-push/herald/pkg/node"
)

func main() {
	if err := run(os.Args[1:], os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "herald:", err)
		os.Exit(1)
	}
}

func run(args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, logLevel, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	cfg.Logger = slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: logLevel}))
	gin.SetMode(gin.ReleaseMode)

	n, err := node.New(cfg)
	if err != nil {
		return err
	}
	if cfg.RedisURL == "" {
		cfg.Logger.Warn("no --redis-url: running as a single node with in-process presence and routing")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return n.Run(ctx)
}

// envName is the variable that stands in for a flag: --redis-url is
// HERALD_REDIS_URL.
func envName(flag string) string {
	return "HERALD_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// parseConfig fills a node.Config from flags, each falling back to its
// HERALD_* variable, then to the default.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (node.Config, slog.Level, error) {
	var cfg node.Config
	fs := flag.NewFlagSet("herald", flag.ContinueOnError)
	fs.SetOutput(stderr)
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

	var readLimit int
	var level string
	str(&cfg.Listen, "listen", "127.0.0.1:8080", "address to serve HTTP and WebSocket on")
	str(&cfg.AdvertiseAddr, "advertise-addr", "", "address shown to the cluster (default: --listen)")
	str(&cfg.NodeID, "node-id", "", "unique id of this node in the cluster (default: host name)")
	str(&cfg.RedisURL, "redis-url", "", "redis:// or rediss:// URL to join a cluster; empty runs a single node")
	dur(&cfg.PresenceTTL, "presence-ttl", 15*time.Second, "how long a node's keys count as online after its last heartbeat")
	dur(&cfg.PingInterval, "ping-interval", 25*time.Second, "how often each client is pinged")
	dur(&cfg.WriteTimeout, "write-timeout", 10*time.Second, "limit on one write or pong; slower clients are disconnected")
	dur(&cfg.DrainWindow, "drain-window", 10*time.Second, "time over which connections are closed at shutdown")
	integer(&cfg.QueueMessages, "queue-messages", 256, "messages a connection's outgoing queue holds")
	integer(&cfg.QueueBytes, "queue-bytes", 1<<20, "bytes a connection's outgoing queue holds")
	integer(&cfg.MaxMessageBytes, "max-message-bytes", 64<<10, "largest message data accepted")
	integer(&cfg.MaxKeysPerSend, "max-keys-per-send", 1000, "most keys in one send")
	integer(&cfg.MaxTopicsPerConn, "max-topics-per-conn", 32, "most topics one connection joins")
	integer(&readLimit, "read-limit", 4096, "largest frame a client may send (bytes); larger closes with 1009")
	str(&level, "log-level", "info", "debug, info, warn or error")

	if err := fs.Parse(args); err != nil {
		return cfg, 0, err
	}
	if fs.NArg() > 0 {
		return cfg, 0, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if len(errs) > 0 {
		return cfg, 0, errs[0]
	}
	cfg.ReadLimit = int64(readLimit)
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return cfg, 0, fmt.Errorf("log level: %w", err)
	}
	return cfg, lvl, nil
}
