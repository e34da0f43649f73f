package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/internal/ssetest"
)

// A client reads its stored messages as Server-Sent Events from node b
// while a backend sends one every 20 ms through node a. Node b is killed
// (kill -9) mid-stream; the client reconnects to node a with the id of the
// last event it got as Last-Event-ID, as EventSource does, and gets every
// message sent, in order: none lost, none twice.
func TestAnEventStreamResumedWithLastEventIDAfterItsNodeIsKilledLosesNothing(t *testing.T) {
	r := redistest.Start(t)
	a := startProcess(t, "--node-id", "a", "--redis-url", r.URL())
	b := startProcess(t, "--node-id", "b", "--redis-url", r.URL())
	first := ssetest.MustOpen(t, http.DefaultClient, "http://"+b.addr+"/v1/sse?key=u1", nil)

	const total = 100
	var mu sync.Mutex
	var sent []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range total {
			resp, err := http.Post("http://"+a.addr+"/v1/send", "application/json", strings.NewReader(fmt.Sprintf(`{"key":"u1","data":%d,"store":true}`, i)))
			if err != nil {
				t.Errorf("stored send %d: %v", i, err)
				return
			}
			var out struct {
				Results map[string]struct{ ID string }
			}
			err = json.NewDecoder(resp.Body).Decode(&out)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || err != nil {
				t.Errorf("stored send %d: %d %v", i, resp.StatusCode, err)
				return
			}
			mu.Lock()
			sent = append(sent, out.Results["u1"].ID)
			mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()

	var got []string
	for len(got) < 10 {
		got = append(got, first.Next(5*time.Second).LastID)
	}
	if err := b.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	events, _ := first.End(10 * time.Second) // whatever was on its way before the kill
	for _, e := range events {
		got = append(got, e.LastID)
	}
	last, before := got[len(got)-1], len(got)

	again := ssetest.MustOpen(t, http.DefaultClient, "http://"+a.addr+"/v1/sse?key=u1", http.Header{"Last-Event-Id": {last}})
	<-done
	for len(got) < total {
		e := again.Next(10 * time.Second)
		var f struct{ ID string }
		if err := json.Unmarshal([]byte(e.Data), &f); err != nil || f.ID != e.LastID {
			t.Fatalf("event %+v: its frame's id is not its event id", e)
		}
		got = append(got, e.LastID)
	}
	again.Nothing(300 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	for i := range sent {
		if got[i] != sent[i] {
			t.Fatalf("message %d arrived as %s, want %s (resumed after %s; got %v)", i, got[i], sent[i], last, got)
		}
	}
	t.Logf("%d stored messages: %d read from b, %d from a after resuming", total, before, total-before)
}
