package fanout_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/internal/wait"
	"github.com/herald-push/herald/pkg/fanout"
)

// A node holding many keys on a Redis Cluster places each key's channel
// once and then looks only at what changes; when a master dies, every
// channel it carried must be placed again on the replica that took over,
// and a send to any of those keys must be heard once more.
func TestKeysOnADeadMasterAreHeardAgainOnceItsReplicaTookOver(t *testing.T) {
	cluster := redistest.StartCluster(t)
	holder := fanout.NewRedisSharded(cluster.Client(), "b", fanout.RedisOptions{ProbeInterval: 100 * time.Millisecond})
	got := &handled{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = holder.Run(ctx, got) }()
	t.Cleanup(func() { cancel(); <-done })
	wait.Until(t, 10*time.Second, "node b ready", holder.Ready)

	keys := make([]string, 300)
	for i := range keys {
		keys[i] = "user-" + strconv.Itoa(i)
	}
	sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
	defer scancel()
	if err := holder.SubscribeKeys(sctx, keys...); err != nil {
		t.Fatal(err)
	}
	// The sender runs too: its bus is what makes its client learn the new
	// master, as on a node.
	sender := fanout.NewRedisSharded(cluster.Client(), "a", fanout.RedisOptions{ProbeInterval: 100 * time.Millisecond})
	sent := make(chan struct{})
	go func() { defer close(sent); _ = sender.Run(ctx, &handled{}) }()
	t.Cleanup(func() { cancel(); <-sent })
	wait.Until(t, 10*time.Second, "node a ready", sender.Ready)
	heard := func(key, id string) bool {
		n, err := sender.SendKey(ctx, key, &fanout.Message{Kind: fanout.KindKeys, Origin: "a", ID: id, Keys: []string{key}, Data: []byte(`1`)})
		return err == nil && n == 1
	}
	for _, k := range keys {
		if !heard(k, "before-"+k) {
			t.Fatalf("a send to %s before the failover was not heard by node b", k)
		}
	}

	cluster.MasterFor(keys[0]).Kill()
	attempt := 0
	for _, k := range keys {
		wait.Until(t, 30*time.Second, "a send to "+k+" heard by node b after the failover", func() bool {
			attempt++
			id := fmt.Sprintf("after-%s-%d", k, attempt)
			return heard(k, id) && pollHas(got, id, time.Second)
		})
	}
}

// pollHas waits up to within for h to have been handed id.
func pollHas(h *handled, id string, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for !h.has(id) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}
