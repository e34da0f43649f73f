package redismem_test

import (
	"context"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/internal/wait"
	"github.com/herald-push/herald/pkg/redismem"
)

// An operator's Redis says its limit and policy through INFO memory alone
// (managed services often forbid CONFIG): the reading has both, and its
// ratio is what Redis compares with maxmemory. Without maxmemory the ratio
// is 0 and nothing is ever over the mark.
func TestAReadingNamesRedissLimitPolicyAndHowFullItIs(t *testing.T) {
	for _, c := range []struct {
		args     []string
		max      int64
		policy   string
		evicting bool
	}{
		{[]string{"--maxmemory", "64mb", "--maxmemory-policy", "noeviction"}, 64 << 20, "noeviction", false},
		{[]string{"--maxmemory", "32mb", "--maxmemory-policy", "allkeys-lru"}, 32 << 20, "allkeys-lru", true},
		{[]string{"--maxmemory-policy", "volatile-lfu"}, 0, "volatile-lfu", true},
	} {
		t.Run(c.policy, func(t *testing.T) {
			r := redistest.StartWith(t, c.args...)
			readings, err := redismem.Read(t.Context(), r.Client())
			if err != nil || len(readings) != 1 {
				t.Fatalf("Read: %v %v", readings, err)
			}
			got := readings[0]
			if got.Max != c.max || got.Policy != c.policy || got.Evicting() != c.evicting || got.Used <= 0 {
				t.Fatalf("reading %+v, want maxmemory %d, policy %s (evicting %v)", got, c.max, c.policy, c.evicting)
			}
			if ratio := got.Ratio(); (c.max == 0 && ratio != 0) || (c.max > 0 && (ratio <= 0 || ratio > 0.2)) {
				t.Fatalf("an almost empty Redis reads %v full", ratio)
			}
		})
	}
}

// In a Redis Cluster one master past the mark is enough: the watcher reads
// every master, reports the fullest, and says over, since herald's writes
// cannot cheaply be told which master they land on before they are made.
// What this node adds between readings counts toward the mark at once.
func TestOneFullMasterOfARedisClusterPutsTheWatcherOverTheMark(t *testing.T) {
	c := redistest.StartCluster(t)
	full := c.MasterFor("anything")
	used := full.UsedMemory(t)
	// used is 80% of the limit: past a 0.7 mark, short of full even with
	// the watcher's own connections.
	if err := full.Client().ConfigSet(t.Context(), "maxmemory", strconv.FormatInt(used*100/80, 10)).Err(); err != nil {
		t.Fatal(err)
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	defer cc.Close()
	w := redismem.NewWatcher(cc, 0.7, false, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go w.Run(ctx, 100*time.Millisecond)
	wait.Until(t, 5*time.Second, "the watcher over the mark", func() bool { _, over := w.Over(); return over })
	if r := w.Ratio(); r < 0.7 || r >= 1 || w.Full() {
		t.Fatalf("ratio %v, full %v: want the full master's ~0.8, not full", r, w.Full())
	}

	// Room again: not over; a burst this node reports puts it over before
	// the next reading, and the reading after it takes its measure.
	if err := full.Client().ConfigSet(t.Context(), "maxmemory", strconv.FormatInt(used*3, 10)).Err(); err != nil {
		t.Fatal(err)
	}
	wait.Until(t, 5*time.Second, "the watcher under the mark", func() bool { _, over := w.Over(); return !over })
	w.Grew(2 * used)
	if ratio, over := w.Over(); !over || ratio < 0.7 {
		t.Fatalf("after this node added as much again: ratio %v over %v, want over", ratio, over)
	}
	w.Refused()
	if !w.Full() {
		t.Fatal("Redis refused a write for memory, yet the watcher does not read full")
	}
}
