package fanout_test

import (
	"context"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/pkg/fanout"
	"github.com/herald-push/herald/pkg/hub"
	"github.com/herald-push/herald/pkg/presence"
)

// BenchmarkKeySubscriptionMemory is what a node's heap holds per key whose
// channel it subscribes to, on one Redis and on a Redis Cluster: the
// router's, the bus's and go-redis's bookkeeping, nothing of the
// connection itself (docs/benchmarks.md, issue #20's RSS target). Run it
// with -benchtime 1x; add -memprofilerate 1 and a heap profile to see
// which map holds what.
func BenchmarkKeySubscriptionMemory(b *testing.B) {
	const keys = 15000
	buses := map[string]func(b *testing.B) fanout.Bus{
		"redis": func(b *testing.B) fanout.Bus {
			return fanout.NewRedis(redistest.Start(b).Client(), "a", fanout.RedisOptions{})
		},
		"cluster": func(b *testing.B) fanout.Bus {
			return fanout.NewRedisSharded(redistest.StartCluster(b).Client(), "a", fanout.RedisOptions{})
		},
	}
	for name, newBus := range buses {
		b.Run(name, func(b *testing.B) {
			bus := newBus(b)
			h := hub.New(hub.Options{})
			names := make([]string, keys)
			for i := range names {
				names[i] = "user-" + strconv.Itoa(i)
				if _, err := h.Add(names[i], nil, nil, false); err != nil {
					b.Fatal(err)
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			r := fanout.NewRouter(fanout.RouterConfig{Self: "a", Bus: bus, Presence: presence.NewMemory(time.Minute).Store("a"), Local: h})
			go r.Run(ctx)
			for !r.Ready() {
				time.Sleep(10 * time.Millisecond)
			}
			before := liveHeap()
			start := time.Now()
			for i := 0; i < keys; i += 100 { // connects arrive in batches
				r.KeysChanged(names[i : i+100]...)
			}
			if err := r.KeysChanged().Wait(ctx); err != nil {
				b.Fatal(err)
			}
			took := time.Since(start)
			after := liveHeap()
			for b.Loop() {
			}
			b.ReportMetric(float64(after-before)/keys, "B/key")
			b.ReportMetric(took.Seconds(), "s/subscribe-all")
		})
	}
}

func liveHeap() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
