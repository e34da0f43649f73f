package node_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/internal/wait"
	heraldclient "github.com/herald-push/herald/pkg/client"
	"github.com/herald-push/herald/pkg/node"
)

func withHistory(c *node.Config) { c.HistoryTopics = []string{"board"} }

// boardClient is a Go client on topic board that records what it shows.
type boardClient struct {
	mu    sync.Mutex
	texts []string
}

func (b *boardClient) shown() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.texts)
}

func runBoard(t *testing.T, urls ...string) (*boardClient, *heraldclient.Client) {
	t.Helper()
	b := &boardClient{}
	c, err := heraldclient.New(heraldclient.Config{URLs: urls, Key: "screen", Topics: []string{"board"}, MinBackoff: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx, func(m heraldclient.Message) {
			var text string
			json.Unmarshal(m.Data, &text)
			b.mu.Lock()
			b.texts = append(b.texts, text)
			b.mu.Unlock()
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	return b, c
}

func TestABoardThatLosesItsNodeShowsWhatWasPostedMeanwhileOnceAndInOrder(t *testing.T) {
	r := redistest.Start(t)
	a := startNode(t, "a", r.URL(), withHistory, func(c *node.Config) { c.DrainWindow = 10 * time.Millisecond })
	b := startNode(t, "b", r.URL(), withHistory)
	post(t, b.URL("/v1/topics/board"), "text/plain", "before the board came") // shown on arrival

	board, _ := runBoard(t, "ws://"+a.Addr, "ws://"+b.Addr)
	wait.Until(t, 5*time.Second, "board connected", func() bool {
		return presenceOf(t, b, "screen")["online"] == true
	})
	post(t, b.URL("/v1/topics/board"), "text/plain", "one")
	wait.Until(t, 5*time.Second, "first post shown", func() bool { return len(board.shown()) == 2 })

	a.stop() // the board's node goes away; it reconnects to b
	for _, text := range []string{"two", "three", "four"} {
		if status, out := post(t, b.URL("/v1/topics/board"), "text/plain", text); status != http.StatusOK {
			t.Fatalf("post: %d %v", status, out)
		}
	}
	wait.Until(t, 10*time.Second, "every post shown", func() bool { return len(board.shown()) >= 5 })
	time.Sleep(200 * time.Millisecond) // nothing more may come
	want := []string{"before the board came", "one", "two", "three", "four"}
	if got := board.shown(); !slices.Equal(got, want) {
		t.Fatalf("board shows %q, want %q: the recent post on arrival, then each post once, in order", got, want)
	}
}

func TestSinceForATopicWithoutHistoryIsRefused(t *testing.T) {
	n := startNode(t, "a", "")
	status, out := get(t, n.URL("/v1/ws?key=u1&topics=news&since.news=1-0"))
	if status != http.StatusBadRequest || errorCode(out) != "invalid_since" {
		t.Fatalf("since for a topic without history: %d %v", status, out)
	}
}
