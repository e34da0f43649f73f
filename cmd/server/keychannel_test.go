package main

import (
	"net/http"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/internal/wait"
)

// A backend sends to a player whose node then dies or hangs. Sends go to
// the key's channel now, not through presence: the answer must still turn
// offline within the TTL, because Redis stops counting the node's
// subscription when its connection goes (kill -9) or when the reaper drops
// it (a hung node). (A node cut off by the network is the partition story
// in faults_test.go.)
func TestASendToAKeyWhoseNodeDiedOrHangsAnswersOfflineWithinTheTTL(t *testing.T) {
	const ttl = 2 * time.Second
	cases := []struct {
		name  string
		fault func(t *testing.T, b *process)
		// within: from the fault to the first offline answer, at most: the
		// reap comes TTL + one heartbeat interval after the last good
		// heartbeat; the slack is for a loaded CI machine.
		within time.Duration
	}{
		{"killed", func(t *testing.T, b *process) {
			if err := b.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		}, 2 * time.Second},
		{"stalled", func(t *testing.T, b *process) { stall(t, b) }, ttl + ttl/3 + 3*time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := redistest.Start(t)
			a := startProcess(t, "--node-id", "a", "--redis-url", r.URL(), "--presence-ttl", ttl.String())
			b := startProcess(t, "--node-id", "b", "--redis-url", r.URL(), "--presence-ttl", ttl.String())
			connect(t, b, "key=u1")
			if ans := sendPlain(a.addr, "u1", "before", ""); ans.status != http.StatusOK || !ans.online {
				t.Fatalf("before the fault a send to u1 answered %+v, want 200 online", ans)
			}

			c.fault(t, b)
			at := time.Now()
			i := 0
			wait.Until(t, c.within, "a send to u1 answered offline", func() bool {
				i++
				ans := sendPlain(a.addr, "u1", "after-"+strconv.Itoa(i), "")
				return ans.status == http.StatusOK && !ans.online
			})
			t.Logf("sends to u1 answered offline %v after b was %s (TTL %v)", time.Since(at).Round(10*time.Millisecond), c.name, ttl)
			// Offline stays offline: nothing else holds u1.
			for j := range 5 {
				if ans := sendPlain(a.addr, "u1", "later-"+strconv.Itoa(j), ""); !(ans.status == http.StatusOK && !ans.online) {
					t.Fatalf("a later send answered %+v, want 200 offline", ans)
				}
			}
		})
	}
}
