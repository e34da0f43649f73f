package main

import (
	"strings"
	"testing"

	"github.com/herald-push/herald/internal/redistest"
)

// An operator points herald at a Redis configured as a cache, which evicts
// keys when full: the node refuses to start, naming the policy it found,
// what it would lose and both ways out. The volatile-* policies are refused
// too (every herald key has a TTL, so they evict herald's keys as well);
// with --allow-evicting-redis, or on a noeviction Redis, the node starts.
func TestANodeRefusesARedisThatEvictsKeysWhenFull(t *testing.T) {
	for _, policy := range []string{"allkeys-lru", "volatile-ttl"} {
		t.Run(policy, func(t *testing.T) {
			r := redistest.StartWith(t, "--maxmemory", "64mb", "--maxmemory-policy", policy)
			out := refused(t, nil, "--redis-url", r.URL())
			for _, want := range []string{"maxmemory-policy " + policy, "stored messages", "presence", "maxmemory-policy noeviction", "--allow-evicting-redis"} {
				if !strings.Contains(out, want) {
					t.Errorf("refusal does not say %q:\n%s", want, out)
				}
			}
			n := startHerald(t, nil, "--redis-url", r.URL(), "--allow-evicting-redis")
			n.ready(t)
		})
	}
	t.Run("noeviction", func(t *testing.T) {
		r := redistest.StartWith(t, "--maxmemory", "64mb", "--maxmemory-policy", "noeviction")
		n := startHerald(t, nil, "--redis-url", r.URL())
		n.ready(t)
		if strings.Contains(n.logged(), "maxmemory") {
			t.Errorf("a node on a noeviction Redis with maxmemory warned: %s", n.logged())
		}
	})
}

// A high-water mark of 0 would silently read as the default: it is refused
// with the range that is allowed.
func TestARedisHighWaterMarkOfZeroIsRefused(t *testing.T) {
	out := refused(t, nil, "--redis-high-water", "0")
	if !strings.Contains(out, "--redis-high-water must be in (0, 1], or -1") {
		t.Fatalf("refusal: %s", out)
	}
	out = refused(t, []string{"HERALD_REDIS_HIGH_WATER=1.5"})
	if !strings.Contains(out, "high-water mark must be a fraction of maxmemory") {
		t.Fatalf("refusal of 1.5: %s", out)
	}
}
