package fanout_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/pkg/fanout"
	"github.com/herald-push/herald/pkg/hub"
	"github.com/herald-push/herald/pkg/presence"
)

// BenchmarkKeysSendRedisCost measures what a send to k keys costs Redis,
// by key channel (one PUBLISH per key) and by lookup (HGETALL per key, one
// PUBLISH per holding node), with the keys spread over two other nodes and
// 64 sends in flight. The figure that matters is redis-µs/send: where the
// two paths cross is fanout.DefaultByChannelUpTo.
//
//	taskset -c 1 go test -run '^$' -bench KeysSendRedisCost -benchtime 2000x ./pkg/fanout
func BenchmarkKeysSendRedisCost(b *testing.B) {
	srv := redistest.Start(b)
	rdb := srv.Client()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const held = 256
	keys := make([]string, held)
	for i := range keys {
		keys[i] = "k" + strconv.Itoa(i)
	}
	router := func(id string, byChannel int, hold []string) *fanout.Router {
		h := hub.New(hub.Options{QueueMessages: 1 << 30, QueueBytes: 1 << 62})
		p := presence.NewRedis(rdb, id, time.Minute, presence.RedisOptions{})
		if err := p.Join(ctx, presence.Node{ID: id}); err != nil {
			b.Fatal(err)
		}
		go p.Run(ctx)
		r := fanout.NewRouter(fanout.RouterConfig{Self: id, Bus: fanout.NewRedis(rdb, id, fanout.RedisOptions{}), Presence: p, Local: h, ByChannelUpTo: byChannel})
		go r.Run(ctx)
		var counts []presence.Count
		for _, k := range hold {
			if _, err := h.Add(k, nil, nil, false); err != nil {
				b.Fatal(err)
			}
			counts = append(counts, presence.Count{Key: k, Conns: 1})
		}
		if err := p.Set(ctx, counts); err != nil {
			b.Fatal(err)
		}
		if err := r.KeysChanged(hold...).Wait(ctx); err != nil {
			b.Fatal(err)
		}
		return r
	}
	router("b", 0, keys[:held/2])
	router("c", 0, keys[held/2:])
	senders := map[string]*fanout.Router{"by-channel": router("a1", held, nil), "by-lookup": router("a2", -1, nil)}
	time.Sleep(200 * time.Millisecond) // every bus listening
	data := []byte(`{"item":"sword","note":"` + strings.Repeat("x", 64) + `"}`)
	for _, k := range []int{1, 2, 4, 8, 16, 32, 64, 256} {
		for _, path := range []string{"by-channel", "by-lookup"} {
			b.Run(fmt.Sprintf("keys=%d/%s", k, path), func(b *testing.B) {
				r := senders[path]
				// Every other key, so that both holding nodes get some.
				send := make([]string, 0, k)
				for i := 0; len(send) < k; i++ {
					send = append(send, keys[(i*(held/k+1))%held])
				}
				before := redisCPU(b, rdb)
				b.SetParallelism(32) // 64 in flight on 2 cores
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						m := &fanout.Message{Kind: fanout.KindKeys, Origin: "a", ID: "m", TS: 1, Keys: send, Data: data}
						res, err := r.SendKeys(ctx, m)
						if err != nil || res.RouteErr != nil {
							b.Fatal(err, res.RouteErr)
						}
					}
				})
				b.ReportMetric(float64((redisCPU(b, rdb)-before).Microseconds())/float64(b.N), "redis-µs/send")
			})
		}
	}
}

// redisCPU is the CPU time Redis has used, user and system.
func redisCPU(b *testing.B, rdb *redis.Client) time.Duration {
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total float64
	for _, line := range strings.Split(info, "\n") {
		for _, f := range []string{"used_cpu_sys:", "used_cpu_user:"} {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), f); ok {
				var x float64
				fmt.Sscan(v, &x)
				total += x
			}
		}
	}
	return time.Duration(total * float64(time.Second))
}
