package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herald-push/herald/pkg/fanout"
	"github.com/herald-push/herald/pkg/node"
	"github.com/herald-push/herald/pkg/presence"
	"github.com/herald-push/herald/pkg/redisconn"
)

// checkOpenJoin keeps open and authenticated nodes apart on one Redis.
//
// A node in open mode on an authenticated cluster's Redis would take anyone's
// sends and route them to that cluster's clients, and let anyone connect as
// any of its keys: it refuses to start unless cfg.AllowOpenJoin. An
// authenticated node that finds open nodes registered starts anyway and
// warns: refusing would let any leftover development node stop a production
// rollout, and the hole is the open node, which the warning names.
//
// It reads the registered nodes once, before the node joins. An open node
// that cannot read them refuses too: starting then would skip the check.
func checkOpenJoin(ctx context.Context, rdb redis.UniversalClient, cfg node.Config, log *slog.Logger) error {
	if cfg.Open() && cfg.AllowOpenJoin {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, startCheckTimeout)
	defer cancel()
	registry := presence.NewRedis(rdb, cfg.NodeID, cfg.PresenceTTL, presence.RedisOptions{})
	nodes, err := registry.Nodes(ctx)
	if err != nil {
		if cfg.Open() {
			return fmt.Errorf("cannot tell whether authenticated nodes use this Redis (%w): start this open node once Redis answers, or pass --allow-open-join", err)
		}
		return nil // the node waits for Redis as usual; it has nothing to warn about yet
	}
	if cfg.Open() && cfg.Redis.Topology() != redisconn.Cluster {
		registered := func(ctx context.Context) (int, error) {
			ns, err := registry.Nodes(ctx)
			return len(ns), err
		}
		if err := checkHiddenNodes(ctx, rdb, len(nodes), registered); err != nil {
			return err
		}
	}
	var keyed, open []string
	for _, n := range nodes {
		if n.ID == cfg.NodeID && n.Open == cfg.Open() {
			continue // this node's previous process
		}
		if n.Open {
			open = append(open, n.ID)
		} else {
			keyed = append(keyed, n.ID)
		}
	}
	if cfg.Open() && len(keyed) > 0 {
		return fmt.Errorf("refusing to join a cluster of authenticated nodes without authentication: %s on this Redis %s API keys and a token key; "+
			"configure them here too, or pass --allow-open-join to accept that this node takes anyone's sends to that cluster's clients",
			strings.Join(keyed, ", "), plural(len(keyed), "has", "have"))
	}
	if !cfg.Open() && len(open) > 0 {
		log.Warn("open nodes (no API keys or no token key) are registered on this Redis: they take anyone's sends to this cluster's clients; stop them or give them keys",
			"open_nodes", open)
	}
	return nil
}

// checkHiddenNodes refuses when herald nodes this node cannot see share its
// Redis's pub/sub. Pub/sub is one space for all of a Redis's databases:
// nodes on another database number (redis://host/1) are in no registry this
// node reads, yet its broadcasts and topic posts would reach their clients.
// Every node of the classic bus listens on fanout.BroadcastChannel, so more
// listeners than registered nodes means such nodes. A node starting beside
// this one listens a moment before it registers, so only an excess that
// lasts counts.
//
// The registry is read again with every look: nodes started together
// register while this one looks, and counting them once, at the start,
// made the third of three nodes started at once refuse the other two.
func checkHiddenNodes(ctx context.Context, rdb redis.UniversalClient, registered int, count func(context.Context) (int, error)) error {
	var hidden int64
	for try := range 5 {
		if try > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("cannot tell whether hidden nodes share this Redis: %w", ctx.Err())
			case <-time.After(500 * time.Millisecond):
			}
			n, err := count(ctx)
			if err != nil {
				return fmt.Errorf("cannot tell whether authenticated nodes share this Redis (%w): pass --allow-open-join to start anyway", err)
			}
			registered = n
		}
		listening, err := rdb.PubSubNumSub(ctx, fanout.BroadcastChannel).Result()
		if err != nil {
			return fmt.Errorf("cannot tell whether authenticated nodes share this Redis (%w): pass --allow-open-join to start anyway", err)
		}
		if hidden = listening[fanout.BroadcastChannel] - int64(registered); hidden <= 0 {
			return nil
		}
	}
	return fmt.Errorf("refusing to join a Redis whose pub/sub is shared with %d herald nodes this node cannot see (another database number?): "+
		"they may be authenticated, and this open node's broadcasts would reach their clients; give it a Redis of its own, or pass --allow-open-join", hidden)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
