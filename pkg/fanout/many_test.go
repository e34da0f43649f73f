package fanout_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/pkg/fanout"
	"github.com/herald-push/herald/pkg/hub"
	"github.com/herald-push/herald/pkg/presence"
)

// countedLookups is a real Redis presence store that counts Lookup calls.
type countedLookups struct {
	*presence.Redis
	lookups atomic.Int64
}

func (c *countedLookups) Lookup(ctx context.Context, keys []string) ([][]presence.Holder, error) {
	c.lookups.Add(1)
	return c.Redis.Lookup(ctx, keys)
}

// A node hands its router a batch of sends at once: to keys held here, keys
// held on node b, keys held on both, and keys nobody holds. Sends to a few
// keys go to the keys' channels and look nothing up; the keys of the
// larger ones are looked up in one presence call for them all. Each send is
// answered as if it had been routed alone, whichever path it took.
// waitReady waits until every router hears its own channel.
func waitReady(t *testing.T, routers ...*fanout.Router) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, r := range routers {
		for !r.Ready() {
			if time.Now().After(deadline) {
				t.Fatal("a router's bus did not turn ready within 5s")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func TestABatchOfSendsIsLookedUpOnceAndEachIsAnsweredOnItsOwn(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	hubs := map[string]*hub.Hub{}
	stores := map[string]*countedLookups{}
	routers := map[string]*fanout.Router{}
	for _, id := range []string{"a", "b"} {
		h := hub.New(hub.Options{QueueMessages: 1 << 10, QueueBytes: 1 << 20})
		hubs[id] = h
		p := presence.NewRedis(rdb, id, time.Minute, presence.RedisOptions{})
		if err := p.Join(ctx, presence.Node{ID: id}); err != nil {
			t.Fatal(err)
		}
		go p.Run(ctx)
		store := &countedLookups{Redis: p}
		stores[id] = store
		bus := fanout.NewRedis(rdb, id, fanout.RedisOptions{})
		r := fanout.NewRouter(fanout.RouterConfig{Self: id, Bus: bus, Presence: store, Local: h, ByChannelUpTo: 2})
		go r.Run(ctx)
		routers[id] = r
	}
	hold := func(node string, keys ...string) {
		var counts []presence.Count
		for _, k := range keys {
			if _, err := hubs[node].Add(k, nil, nil, false); err != nil {
				t.Fatal(err)
			}
			counts = append(counts, presence.Count{Key: k, Conns: 1})
		}
		if err := stores[node].Set(ctx, counts); err != nil {
			t.Fatal(err)
		}
		if err := routers[node].KeysChanged(keys...).Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	hold("a", "here", "both")
	hold("b", "there", "both")
	waitReady(t, routers["a"], routers["b"])

	sends := []struct {
		keys   []string
		online int
	}{
		{[]string{"here"}, 1},
		{[]string{"there"}, 1},
		{[]string{"both"}, 1},
		{[]string{"nobody"}, 0},
		{[]string{"there", "nobody"}, 1},
		{[]string{"here", "there", "nobody"}, 2}, // looked up
		{[]string{"nobody", "both", "there"}, 2}, // looked up with the one above
	}
	var ms []*fanout.Message
	for i, s := range sends {
		ms = append(ms, &fanout.Message{Kind: fanout.KindKeys, Origin: "a", ID: fmt.Sprint("m", i), TS: 1, Keys: s.keys, Data: []byte(`1`)})
	}
	queuedA, queuedB := hubs["a"].Stats().Queued, hubs["b"].Stats().Queued
	before := stores["a"].lookups.Load()
	results, errs := routers["a"].SendKeysMany(ctx, ms)
	if n := stores["a"].lookups.Load() - before; n != 1 {
		t.Errorf("%d sends took %d presence lookups, want 1", len(ms), n)
	}
	for i, s := range sends {
		if errs[i] != nil {
			t.Fatalf("send %d: %v", i, errs[i])
		}
		online := 0
		for _, on := range results[i].Online {
			if on {
				online++
			}
		}
		if online != s.online {
			t.Errorf("send %d to %v: %d keys online, want %d", i, s.keys, online, s.online)
		}
	}
	// a queues here, both, here, both; b queues there, both, there, there,
	// both and there.
	if got := hubs["a"].Stats().Queued - queuedA; got != 4 {
		t.Errorf("node a queued %d frames, want 4", got)
	}
	wantB := uint64(6)
	deadline := time.Now().Add(5 * time.Second)
	for hubs["b"].Stats().Queued-queuedB < wantB && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := hubs["b"].Stats().Queued - queuedB; got != wantB {
		t.Errorf("node b queued %d frames, want %d", got, wantB)
	}
}
