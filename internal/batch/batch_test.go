package batch

import (
	"context"
	"sync"
	"testing"
	"time"
)

type req struct {
	n    int
	done chan int
}

func TestConcurrentRequestsShareRoundTripsAndEachIsAnswered(t *testing.T) {
	var mu sync.Mutex
	var sizes []int
	b := New(16, func(_ context.Context, reqs []req) {
		mu.Lock()
		sizes = append(sizes, len(reqs))
		mu.Unlock()
		time.Sleep(5 * time.Millisecond) // a round trip
		for _, r := range reqs {
			r.done <- r.n * 2
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go b.Run(ctx)

	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() {
			r := req{n: i, done: make(chan int, 1)}
			if err := b.Do(ctx, r); err != nil {
				t.Error(err)
				return
			}
			if got := <-r.done; got != i*2 {
				t.Errorf("request %d answered %d", i, got)
			}
		})
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(sizes) >= 100 {
		t.Fatalf("100 concurrent requests took %d round trips: nothing was batched", len(sizes))
	}
	for _, s := range sizes {
		if s > 16 {
			t.Fatalf("a batch of %d exceeds the maximum of 16", s)
		}
	}
	t.Logf("100 concurrent requests in %d round trips", len(sizes))
}
