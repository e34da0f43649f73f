package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"

	"github.com/herald-push/herald/pkg/node"
	"github.com/herald-push/herald/pkg/redismem"
)

// checkRedisPolicy refuses a Redis that evicts keys when it is full, unless
// cfg.AllowEvictingRedis: with any maxmemory-policy but noeviction, a full
// Redis silently deletes stored messages already answered 200, presence
// entries (connected clients then read offline) and the node registry.
// With noeviction a full Redis refuses writes instead, which herald answers
// truthfully, and the high-water mark keeps heartbeats clear of it.
//
// Like checkOpenJoin it reads Redis once, before the node joins. A Redis
// that does not answer yet lets the node start, as a node starts while
// Redis is down; its memory watcher logs an error on the first evicting
// policy it reads.
func checkRedisPolicy(ctx context.Context, rdb redis.UniversalClient, cfg node.Config, log *slog.Logger) error {
	if cfg.AllowEvictingRedis {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, startCheckTimeout)
	defer cancel()
	readings, err := redismem.Read(ctx, rdb)
	if err != nil {
		log.Warn("could not read Redis's maxmemory-policy at start; starting anyway, an evicting policy will be logged once Redis answers", "err", err)
		return nil
	}
	for _, r := range readings {
		where := "this Redis"
		if r.Addr != "" {
			where = "the Redis master at " + r.Addr
		}
		if r.Evicting() {
			return fmt.Errorf("refusing to start: %s has maxmemory-policy %s, which deletes keys when Redis is full: "+
				"stored messages already answered 200, presence entries (connected clients would read offline) and the node registry. "+
				"Set maxmemory-policy noeviction on Redis (herald then refuses stored sends above --redis-high-water instead of losing them), "+
				"or pass --allow-evicting-redis to accept that loss", where, r.Policy)
		}
		if r.Max == 0 {
			log.Warn("Redis has no maxmemory: stored messages can grow it until the machine runs out of memory, and --redis-high-water has nothing to measure against; set maxmemory",
				"redis", where)
		}
	}
	return nil
}
