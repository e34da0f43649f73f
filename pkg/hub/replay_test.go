package hub

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-push/herald/internal/wait"
	"github.com/herald-push/herald/pkg/inbox"
	"github.com/herald-push/herald/pkg/ordering"
	"github.com/herald-push/herald/pkg/protocol"
)

// countingStore records how many entries each read asked for and got.
type countingStore struct {
	ordering.Store
	mu    sync.Mutex
	asked []int
	read  int
}

func (s *countingStore) After(ctx context.Context, key string, after protocol.StoredID, n int) ([]inbox.Entry, error) {
	es, err := s.Store.After(ctx, key, after, n)
	s.mu.Lock()
	s.asked, s.read = append(s.asked, n), s.read+len(es)
	s.mu.Unlock()
	return es, err
}

func (s *countingStore) reads() ([]int, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.asked...), s.read
}

// A client resumes from the start of an 18 MB inbox and does not read: the
// replay reads no more than its 1 MB queue holds (plus one page), and
// goes on, in order, as the client reads.
func TestAReplayToAConnectionThatDoesNotReadReadsNoMoreThanItsQueueHolds(t *testing.T) {
	store := inbox.NewMemory(inbox.Options{MaxLen: 1000, MaxAge: time.Hour})
	data := []byte(`"` + strings.Repeat("x", 60<<10) + `"`)
	for range 300 {
		if _, _, err := store.Append(t.Context(), []string{"u1"}, inbox.Entry{Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	cs := &countingStore{Store: store}
	maxEntry := 64<<10 + 512
	k := &ordering.Catcher{Store: cs, Page: 256, MaxEntry: maxEntry, Timeout: time.Second,
		Replayed: func(int) {}, ReadFailed: func() {}, Skipped: func(string, string, protocol.StoredID) {}, Log: slog.Default()}
	h := New(Options{QueueMessages: 1000, QueueBytes: 1 << 20})
	c := mustAdd(t, h, "u1", nil, false)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		k.CatchUp(ctx, c, "u1", ordering.KeyStream, ordering.FromSince, protocol.StoredID{})
	}()
	t.Cleanup(func() { cancel(); <-done })

	wait.Until(t, 10*time.Second, "the replay to fill the queue and wait", func() bool {
		_, read := cs.reads()
		_, bytes := c.Room()
		return read > 0 && bytes < maxEntry
	})
	asked, read := cs.reads()
	if read > 2*(1<<20)/maxEntry || asked[0] > (1<<20)/maxEntry {
		t.Fatalf("a non-reading client made the replay read %d entries (pages asked: %v), want at most two queues' worth", read, asked)
	}
	var got []protocol.StoredID
	wait.Until(t, 30*time.Second, "all 300 to be replayed as the client reads", func() bool {
		es, _ := c.take()
		for _, e := range es {
			got = append(got, e.id)
		}
		return len(got) >= 300
	})
	for i := 1; i < len(got); i++ {
		if !got[i].After(got[i-1]) {
			t.Fatalf("entry %d (%v) not after %v", i, got[i], got[i-1])
		}
	}
	if len(got) != 300 {
		t.Fatalf("replayed %d, want 300", len(got))
	}
}
