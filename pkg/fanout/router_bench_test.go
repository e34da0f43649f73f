package fanout_test

import (
	"context"
	"testing"
	"time"

	"github.com/herald-push/herald/pkg/fanout"
	"github.com/herald-push/herald/pkg/hub"
	"github.com/herald-push/herald/pkg/presence"
)

// BenchmarkRouterSendKeys is a single-key send routed by a Router: to a key
// held on the same node, and to a key held on another node through the bus
// (in-process here, so the figure is the routing code, not Redis).
func BenchmarkRouterSendKeys(b *testing.B) {
	space := presence.NewMemory(time.Minute)
	net := fanout.NewMemory()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	routers := map[string]*fanout.Router{}
	for _, id := range []string{"a", "b"} {
		h := hub.New(hub.Options{QueueMessages: 1 << 30, QueueBytes: 1 << 62})
		h.Add("on-"+id, nil, nil, false) // its queue grows: nothing writes it here
		store := space.Store(id)
		store.Join(ctx, presence.Node{ID: id})
		store.Set(ctx, []presence.Count{{Key: "on-" + id, Conns: 1}})
		r := fanout.NewRouter(fanout.RouterConfig{Self: id, Bus: net.Bus(id), Presence: store, Local: h})
		go r.Run(ctx)
		routers[id] = r
	}
	time.Sleep(10 * time.Millisecond) // both buses listening
	for name, key := range map[string]string{"local": "on-a", "remote": "on-b"} {
		b.Run(name, func(b *testing.B) {
			m := &fanout.Message{Kind: fanout.KindKeys, Origin: "a", ID: "m1", TS: 1, Keys: []string{key}, Data: []byte(`{"item":"sword"}`)}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := routers["a"].SendKeys(ctx, m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
