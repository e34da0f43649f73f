// Package fanouttest is the conformance suite every fanout.Bus passes.
package fanouttest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/herald-push/herald/pkg/fanout"
)

// NewNetwork returns a function that makes the Bus of node id, where all
// Buses made by it reach each other.
type NewNetwork func(t *testing.T) func(id string) fanout.Bus

// recorder is a Handler that keeps what it is handed.
type recorder struct {
	mu   sync.Mutex
	msgs []*fanout.Message
}

func (r *recorder) HandleMessage(m *fanout.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, m)
}

func (r *recorder) ids() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ids []string
	for _, m := range r.msgs {
		ids = append(ids, m.ID)
	}
	return ids
}

// waitFor polls until r has received want (in order), or fails.
func (r *recorder) waitFor(t *testing.T, who string, want ...string) {
	t.Helper()
	r.waitUntil(t, who, fmt.Sprint(want), func(ids []string) bool { return slices.Equal(ids, want) })
}

// waitForOne polls until r has received id, or fails.
func (r *recorder) waitForOne(t *testing.T, who, id string) {
	t.Helper()
	r.waitUntil(t, who, id+" among them", func(ids []string) bool { return slices.Contains(ids, id) })
}

func (r *recorder) waitUntil(t *testing.T, who, want string, ok func(ids []string) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok(r.ids()) {
		if time.Now().After(deadline) {
			t.Fatalf("%s received %v, want %s", who, r.ids(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// node is a running Bus with its recorder.
type node struct {
	fanout.Bus
	got *recorder
}

func start(t *testing.T, bus fanout.Bus) node {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	n := node{Bus: bus, got: &recorder{}}
	done := make(chan struct{})
	go func() { defer close(done); _ = bus.Run(ctx, n.got) }()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(5 * time.Second)
	for !bus.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("bus never became ready")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return n
}

// Run runs the suite.
func Run(t *testing.T, newNetwork NewNetwork) {
	ctx := context.Background()

	t.Run("SendReachesOnlyTheNamedNodeAndSaysSo", func(t *testing.T) {
		bus := newNetwork(t)
		a, b, c := start(t, bus("a")), start(t, bus("b")), start(t, bus("c"))
		m := &fanout.Message{Kind: fanout.KindKeys, Origin: "a", ID: "m1", TS: 42, Keys: []string{"u1", "u2"}, Data: []byte(`{"x":1}`)}
		ok, err := a.Send(ctx, "b", m)
		if err != nil || !ok {
			t.Fatalf("send to b: ok=%v err=%v", ok, err)
		}
		b.got.waitFor(t, "b", "m1")
		got := b.got.msgs[0]
		if got.Kind != m.Kind || got.Origin != "a" || got.TS != 42 || !slices.Equal(got.Keys, m.Keys) || string(got.Data) != `{"x":1}` {
			t.Fatalf("b received %+v, want %+v", got, m)
		}
		if ids := c.got.ids(); len(ids) != 0 {
			t.Fatalf("c received %v, want nothing", ids)
		}
	})

	t.Run("SendToANodeThatDoesNotListenReportsFalse", func(t *testing.T) {
		bus := newNetwork(t)
		a := start(t, bus("a"))
		ok, err := a.Send(ctx, "gone", &fanout.Message{Kind: fanout.KindKeys, ID: "m1"})
		if err != nil || ok {
			t.Fatalf("send to a missing node: ok=%v err=%v, want false, nil", ok, err)
		}
	})

	t.Run("TopicMessagesReachSubscribedNodesUntilTheyUnsubscribe", func(t *testing.T) {
		bus := newNetwork(t)
		a, b, c := start(t, bus("a")), start(t, bus("b")), start(t, bus("c"))
		if err := b.Subscribe(ctx, "board"); err != nil {
			t.Fatal(err)
		}
		n, err := a.Publish(ctx, &fanout.Message{Kind: fanout.KindTopic, Topic: "board", ID: "m1"})
		if err != nil || n != 1 {
			t.Fatalf("publish: n=%d err=%v, want 1 node", n, err)
		}
		b.got.waitFor(t, "b", "m1")
		if err := b.Unsubscribe(ctx, "board"); err != nil {
			t.Fatal(err)
		}
		if err := c.Subscribe(ctx, "board"); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Publish(ctx, &fanout.Message{Kind: fanout.KindTopic, Topic: "board", ID: "m2"}); err != nil {
			t.Fatal(err)
		}
		c.got.waitFor(t, "c", "m2")
		b.got.waitFor(t, "b", "m1")
		if ids := a.got.ids(); len(ids) != 0 {
			t.Fatalf("unsubscribed a received %v", ids)
		}
	})

	t.Run("BroadcastReachesEveryNodeThePublisherIncluded", func(t *testing.T) {
		bus := newNetwork(t)
		a, b := start(t, bus("a")), start(t, bus("b"))
		n, err := a.Publish(ctx, &fanout.Message{Kind: fanout.KindBroadcast, Origin: "a", ID: "m1"})
		if err != nil || n != 2 {
			t.Fatalf("broadcast: n=%d err=%v, want 2 nodes", n, err)
		}
		a.got.waitFor(t, "a", "m1")
		b.got.waitFor(t, "b", "m1")
	})

	t.Run("AKeysMessagesReachTheNodesSubscribedToItAndSayHowMany", func(t *testing.T) {
		bus := newNetwork(t)
		a, b, c := start(t, bus("a")), start(t, bus("b")), start(t, bus("c"))
		for _, n := range []node{b, c} {
			if err := n.SubscribeKeys(ctx, "u1", "u2"); err != nil {
				t.Fatal(err)
			}
		}
		m := &fanout.Message{Kind: fanout.KindKeys, Origin: "a", ID: "m1", Keys: []string{"u1"}, Data: []byte(`1`)}
		if n, err := a.SendKey(ctx, "u1", m); err != nil || n != 2 {
			t.Fatalf("send to u1 held on b and c: n=%d err=%v, want 2 nodes", n, err)
		}
		b.got.waitFor(t, "b", "m1")
		c.got.waitFor(t, "c", "m1")
		if n, err := a.SendKey(ctx, "nobody", &fanout.Message{Kind: fanout.KindKeys, ID: "m0", Keys: []string{"nobody"}}); err != nil || n != 0 {
			t.Fatalf("send to a key nobody holds: n=%d err=%v, want 0 nodes", n, err)
		}

		if err := c.UnsubscribeKeys(ctx, "u1"); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			n, err := a.SendKey(ctx, "u1", &fanout.Message{Kind: fanout.KindKeys, ID: "m2", Keys: []string{"u1"}})
			if err != nil {
				t.Fatal(err)
			}
			if n == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("u1 still heard by %d nodes 5s after c unsubscribed, want 1", n)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if n, err := a.SendKey(ctx, "u2", &fanout.Message{Kind: fanout.KindKeys, ID: "m3", Keys: []string{"u2"}}); err != nil || n != 2 {
			t.Fatalf("u2, which c still holds: n=%d err=%v, want 2", n, err)
		}
		c.got.waitForOne(t, "c", "m3") // and perhaps m2, sent while its unsubscribe was on its way
		if ids := a.got.ids(); len(ids) != 0 {
			t.Fatalf("a, subscribed to no key, received %v", ids)
		}
	})

	t.Run("ThousandsOfKeysSubscribeInOneCall", func(t *testing.T) {
		bus := newNetwork(t)
		a, b := start(t, bus("a")), start(t, bus("b"))
		keys := make([]string, 3000)
		for i := range keys {
			keys[i] = fmt.Sprint("k", i)
		}
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := b.SubscribeKeys(sctx, keys...); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{keys[0], keys[1500], keys[2999]} {
			if n, err := a.SendKey(ctx, k, &fanout.Message{Kind: fanout.KindKeys, ID: "to-" + k, Keys: []string{k}}); err != nil || n != 1 {
				t.Fatalf("send to %s: n=%d err=%v, want 1", k, n, err)
			}
		}
		// Channels of several shards: their messages need not keep order.
		for _, id := range []string{"to-k0", "to-k1500", "to-k2999"} {
			b.got.waitForOne(t, "b", id)
		}
	})
}
