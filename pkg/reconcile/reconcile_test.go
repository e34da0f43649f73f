package reconcile

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestAMarkIsFlushedAndItsWaiterReleased(t *testing.T) {
	var mu sync.Mutex
	var flushed []string
	l := New(func(_ context.Context, names []string) error {
		mu.Lock()
		defer mu.Unlock()
		flushed = append(flushed, names...)
		return nil
	}, time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go l.Run(ctx)

	if err := l.Mark("u1", "u2", "u1").Wait(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(flushed)
	if !slices.Equal(flushed, []string{"u1", "u2"}) {
		t.Fatalf("flushed %v, want u1 and u2 once each", flushed)
	}
}

func TestAFailedFlushIsReportedAndRetried(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	l := New(func(_ context.Context, names []string) error {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == 1 {
			return errors.New("redis down")
		}
		return nil
	}, time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go l.Run(ctx)

	if err := l.Mark("u1").Wait(ctx); err == nil {
		t.Fatal("waiter of a failed flush got no error")
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		mu.Lock()
		c := calls
		mu.Unlock()
		if c >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("failed names were not flushed again")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestWaitersAreReleasedWhenTheLoopStops(t *testing.T) {
	l := New(func(context.Context, []string) error { return nil }, time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p := l.Mark("u1")
	l.Run(ctx) // returns at once: ctx is done
	if err := p.Wait(context.Background()); err == nil {
		t.Fatal("a mark left pending by a stopped loop reported success")
	}
}
