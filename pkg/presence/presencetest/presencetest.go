// Package presencetest is the conformance suite every presence.Store passes.
package presencetest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/herald-push/herald/pkg/presence"
)

// NewCluster returns a function that makes the Store of node id, where all
// Stores made by it share one presence space whose nodes expire after ttl.
type NewCluster func(t *testing.T, ttl time.Duration) func(id string) presence.Store

// Run runs the suite.
func Run(t *testing.T, newCluster NewCluster) {
	ctx := context.Background()
	join := func(t *testing.T, s presence.Store, id string) {
		t.Helper()
		if err := s.Join(ctx, presence.Node{ID: id, Addr: id + ":8080", Started: time.Now()}); err != nil {
			t.Fatalf("join %s: %v", id, err)
		}
	}
	set := func(t *testing.T, s presence.Store, counts ...presence.Count) {
		t.Helper()
		if err := s.Set(ctx, counts); err != nil {
			t.Fatalf("set: %v", err)
		}
	}
	lookup := func(t *testing.T, s presence.Store, key string) []presence.Holder {
		t.Helper()
		h, err := s.Lookup(ctx, []string{key})
		if err != nil {
			t.Fatalf("lookup %s: %v", key, err)
		}
		return h[0]
	}

	t.Run("KeysHeldOnSeveralNodesAreSeenFromAnyNode", func(t *testing.T) {
		store := newCluster(t, time.Minute)
		a, b, c := store("a"), store("b"), store("c")
		join(t, a, "a")
		join(t, b, "b")
		join(t, c, "c")
		set(t, a, presence.Count{Key: "u1", Conns: 2}, presence.Count{Key: "u2", Conns: 1})
		set(t, b, presence.Count{Key: "u1", Conns: 1})

		got, err := c.Lookup(ctx, []string{"u1", "u2", "u3"})
		if err != nil {
			t.Fatal(err)
		}
		want := [][]presence.Holder{
			{{Node: "a", Conns: 2}, {Node: "b", Conns: 1}},
			{{Node: "a", Conns: 1}},
			nil,
		}
		for i := range want {
			if !slices.Equal(got[i], want[i]) {
				t.Errorf("lookup key %d = %v, want %v", i, got[i], want[i])
			}
		}
	})

	t.Run("KeysOfANodeThatJustJoinedAreSeenAtOnce", func(t *testing.T) {
		store := newCluster(t, time.Minute)
		a := store("a")
		join(t, a, "a")
		if h := lookup(t, a, "u1"); len(h) != 0 { // a has read the live nodes
			t.Fatalf("u1 held before anyone joined: %v", h)
		}
		b := store("b")
		join(t, b, "b")
		set(t, b, presence.Count{Key: "u1", Conns: 1})
		if h := lookup(t, a, "u1"); len(h) != 1 || h[0].Node != "b" {
			t.Fatalf("u1 seen from a right after b joined = %v, want held by b", h)
		}
	})

	t.Run("ACountOfZeroRemovesTheEntry", func(t *testing.T) {
		store := newCluster(t, time.Minute)
		a := store("a")
		join(t, a, "a")
		set(t, a, presence.Count{Key: "u1", Conns: 1})
		set(t, a, presence.Count{Key: "u1", Conns: 0})
		if h := lookup(t, a, "u1"); len(h) != 0 {
			t.Fatalf("u1 still held after count 0: %v", h)
		}
	})

	t.Run("NodesListsLiveNodesWithTheirInfo", func(t *testing.T) {
		store := newCluster(t, time.Minute)
		a, b := store("a"), store("b")
		join(t, a, "a")
		join(t, b, "b")
		if _, err := b.Heartbeat(ctx, presence.Node{Addr: "b:9090", Conns: 7}); err != nil {
			t.Fatal(err)
		}
		nodes, err := a.Nodes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(nodes) != 2 || nodes[0].ID != "a" || nodes[1].ID != "b" {
			t.Fatalf("nodes = %+v, want a and b", nodes)
		}
		if nodes[1].Addr != "b:9090" || nodes[1].Conns != 7 {
			t.Fatalf("node b = %+v, want the info of its last heartbeat", nodes[1])
		}
	})

	t.Run("LeaveRemovesTheNodeAndItsKeysAtOnce", func(t *testing.T) {
		store := newCluster(t, time.Minute)
		a, b := store("a"), store("b")
		join(t, a, "a")
		join(t, b, "b")
		set(t, a, presence.Count{Key: "u1", Conns: 1})
		if err := a.Leave(ctx); err != nil {
			t.Fatal(err)
		}
		if h := lookup(t, b, "u1"); len(h) != 0 {
			t.Fatalf("u1 still held after leave: %v", h)
		}
		nodes, _ := b.Nodes(ctx)
		if len(nodes) != 1 || nodes[0].ID != "b" {
			t.Fatalf("nodes after a left = %+v", nodes)
		}
	})

	t.Run("ANodeThatStopsHeartbeatingGoesOfflineWithinTheTTL", func(t *testing.T) {
		const ttl = 600 * time.Millisecond
		store := newCluster(t, ttl)
		a, b := store("a"), store("b")
		join(t, a, "a")
		join(t, b, "b")
		set(t, a, presence.Count{Key: "u1", Conns: 1})
		start := time.Now()
		if h := lookup(t, b, "u1"); len(h) != 1 {
			t.Fatalf("u1 not held before the TTL: %v", h)
		}
		for len(lookup(t, b, "u1")) != 0 {
			if time.Since(start) > ttl+500*time.Millisecond {
				t.Fatalf("u1 still held %v after a's last heartbeat (ttl %v)", time.Since(start), ttl)
			}
			time.Sleep(20 * time.Millisecond)
		}

		// b's heartbeat reaps a; when a comes back it learns it was
		// forgotten and must write its keys again.
		if _, err := b.Heartbeat(ctx, presence.Node{}); err != nil {
			t.Fatal(err)
		}
		lost, err := a.Heartbeat(ctx, presence.Node{})
		if err != nil {
			t.Fatal(err)
		}
		if lost != presence.LostNode {
			t.Fatalf("a's heartbeat after being reaped reported %v, want LostNode", lost)
		}
		if h := lookup(t, b, "u1"); len(h) != 0 {
			t.Fatalf("reaped entry of a came back without a Set: %v", h)
		}
	})

	t.Run("HeartbeatsKeepANodeAlive", func(t *testing.T) {
		const ttl = 400 * time.Millisecond
		store := newCluster(t, ttl)
		a, b := store("a"), store("b")
		join(t, a, "a")
		join(t, b, "b")
		set(t, a, presence.Count{Key: "u1", Conns: 1})
		for range 6 {
			time.Sleep(ttl / 3)
			lost, err := a.Heartbeat(ctx, presence.Node{})
			if err != nil || lost != presence.LostNothing {
				t.Fatalf("heartbeat: lost=%v err=%v", lost, err)
			}
			if h := lookup(t, b, "u1"); len(h) != 1 {
				t.Fatalf("u1 dropped while a heartbeats: %v", h)
			}
		}
	})

	t.Run("AHeartbeatAfterLeaveDoesNotBringTheNodeBack", func(t *testing.T) {
		store := newCluster(t, time.Minute)
		a, b := store("a"), store("b")
		join(t, a, "a")
		join(t, b, "b")
		set(t, a, presence.Count{Key: "u1", Conns: 1})
		if err := a.Leave(ctx); err != nil {
			t.Fatal(err)
		}
		// A heartbeat already under way when the node left.
		if _, err := a.Heartbeat(ctx, presence.Node{}); !errors.Is(err, presence.ErrLeft) {
			t.Fatalf("heartbeat after leave: err = %v, want ErrLeft", err)
		}
		if err := a.Set(ctx, []presence.Count{{Key: "u1", Conns: 1}}); !errors.Is(err, presence.ErrLeft) {
			t.Fatalf("set after leave: err = %v, want ErrLeft", err)
		}
		nodes, err := b.Nodes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(nodes) != 1 || nodes[0].ID != "b" {
			t.Fatalf("nodes after a left and heartbeat = %+v, want only b", nodes)
		}
		if h := lookup(t, b, "u1"); len(h) != 0 {
			t.Fatalf("u1 held after a left: %v", h)
		}
	})

	t.Run("RejoiningWithTheSameIDClearsWhatTheDeadProcessLeft", func(t *testing.T) {
		store := newCluster(t, time.Minute)
		old := store("a")
		join(t, old, "a")
		set(t, old, presence.Count{Key: "u1", Conns: 3})
		restarted := store("a")
		join(t, restarted, "a")
		if h := lookup(t, restarted, "u1"); len(h) != 0 {
			t.Fatalf("u1 of the previous process still held: %v", h)
		}
	})
}
