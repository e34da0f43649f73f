package node_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-push/herald/internal/faults"
	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/internal/wait"
	"github.com/herald-push/herald/pkg/httpapi"
	"github.com/herald-push/herald/pkg/node"
	"github.com/herald-push/herald/pkg/redisconn"
)

// A backend whose send meets a Redis that stalls (SIGSTOP: the command is
// written and never answered, as behind a partition) is told the outcome
// is unknown — never "nothing was sent", which would make it drop a message
// that may be on its way, or resend one it believes was never sent. A
// Redis that is down (connections refused) surely ran nothing, and the
// answer says so.
func TestASendToAStalledRedisIsAnsweredOutcomeUnknownAndToAStoppedOneNothingWasSent(t *testing.T) {
	requests := []struct {
		name, path, body string
		header           map[string]string
		// stalled, when set, is the message a stalled Redis answers
		// with code unavailable: the request surely sent nothing.
		stalled string
	}{
		{"a plain send", "/v1/send", `{"key":"nobody","data":1}`, nil, ""},
		{"a send whose Idempotency-Key cannot be checked", "/v1/send", `{"key":"u1","data":1,"store":true}`,
			map[string]string{"Idempotency-Key": "order-1"}, "nothing was sent, but Redis may hold the key's claim"},
		{"a stored send", "/v1/send", `{"key":"u1","data":2,"store":true}`, nil, ""},
		{"a broadcast", "/v1/broadcast", `{"data":3}`, nil, ""},
		{"a post to a history topic", "/v1/topics/board", `{"data":4}`, nil, ""},
		{"a post to a topic without history", "/v1/topics/news", `{"data":5}`, nil, ""},
	}
	redisFaults := []struct {
		name     string
		fault    func(r *redistest.Server)
		wantCode string
		wantMsg  string
	}{
		{"Redis stalled", (*redistest.Server).Pause, "outcome_unknown", "may or may not have been sent"},
		{"Redis stopped", (*redistest.Server).Kill, "unavailable", "nothing was sent"},
	}
	for _, f := range redisFaults {
		t.Run(f.name, func(t *testing.T) {
			r := redistest.Start(t)
			n := startNode(t, "a", r.URL(), func(c *node.Config) { c.HistoryTopics = []string{"board"} })
			f.fault(r)
			t.Cleanup(func() {
				if r.Running() {
					r.Resume()
				}
			})
			var wg sync.WaitGroup
			for _, q := range requests {
				wg.Go(func() {
					wantCode, wantMsg := f.wantCode, f.wantMsg
					if q.stalled != "" && f.wantCode == "outcome_unknown" {
						wantCode, wantMsg = "unavailable", q.stalled
					}
					status, out, h := postJSONWith(t, n.URL(q.path), q.body, q.header)
					e, _ := out["error"].(map[string]any)
					msg, _ := e["message"].(string)
					if status != http.StatusServiceUnavailable || errorCode(out) != wantCode || !strings.Contains(msg, wantMsg) {
						t.Errorf("%s: %d %v, want 503 %s saying %q", q.name, status, out, wantCode, wantMsg)
					}
					if h.Get("Retry-After") == "" {
						t.Errorf("%s: no Retry-After in %v", q.name, h)
					}
					if wantCode == "outcome_unknown" && strings.Contains(msg, "nothing was sent") {
						t.Errorf("%s: an unknown outcome said %q", q.name, msg)
					}
				})
			}
			wg.Wait()
		})
	}
}

// A stored send whose append reached Redis but whose answer never came
// back (the link failed mid-command) is answered outcome_unknown: it was in
// fact stored. The backend retries it with the same Idempotency-Key, as the
// answer says, and is answered 200 with the id it was stored under; the
// client gets it exactly once.
func TestAStoredSendAnsweredOutcomeUnknownAndRetriedWithItsKeyArrivesOnce(t *testing.T) {
	r := redistest.Start(t)
	link := faults.NewLink(t, r.Addr())
	n := startNode(t, "a", "redis://"+link.Addr())
	idem := map[string]string{"Idempotency-Key": "purchase-1"}
	body := `{"key":"u1","data":{"item":"sword"},"store":true}`

	sendJSON(t, n, `{"key":"u0","data":0,"store":true}`) // Redis knows the append script: EVALSHA runs it
	link.HoldRepliesAfter("herald:{u1}:inbox")           // the append runs, its answer is lost
	status, out, _ := postJSONWith(t, n.URL("/v1/send"), body, idem)
	link.ReleaseReplies()
	if status != http.StatusServiceUnavailable || errorCode(out) != "outcome_unknown" {
		t.Fatalf("stored send whose answer was lost: %d %v, want 503 outcome_unknown", status, out)
	}
	if got, _ := r.Client().XLen(t.Context(), "herald:{u1}:inbox").Result(); got != 1 {
		t.Fatalf("the inbox holds %d entries, want the 1 the unanswered append stored", got)
	}
	waitReady(t, n)
	var again map[string]any
	wait.Until(t, 10*time.Second, "the retry answered 200", func() bool {
		status, again, _ = postJSONWith(t, n.URL("/v1/send"), body, idem)
		return status == http.StatusOK
	})
	results, _ := again["results"].(map[string]any)
	u1, _ := results["u1"].(map[string]any)
	id := fmt.Sprint(u1["id"])
	if got, _ := r.Client().XLen(t.Context(), "herald:{u1}:inbox").Result(); got != 1 {
		t.Fatalf("after the retry the inbox holds %d entries, want 1", got)
	}

	c := dial(t, n, "key=u1")
	if f := c.next(); f.ID != id || string(f.Data) != `{"item":"sword"}` {
		t.Fatalf("client got %+v, want the send stored as %s", f, id)
	}
	// A second retry replays the first answer; nothing new arrives.
	if status, _, _ := postJSONWith(t, n.URL("/v1/send"), body, idem); status != http.StatusOK {
		t.Fatalf("second retry: %d", status)
	}
	c.nothing(300 * time.Millisecond)
}

// A backend sends stored messages with wait:"delivered", three a second,
// through node a, to a client on node b, whose link to Redis takes 300 ms
// each way. Node b reports each delivery back over that link: every one is
// answered "delivered", because the reports waiting in b's queue go in one
// round trip instead of one each (which kept up with 1.7 a second only).
func TestWaitingForDeliveryAcrossASlowLinkKeepsUpWithTheSends(t *testing.T) {
	r := redistest.Start(t)
	link := faults.NewLink(t, r.Addr())
	link.SetDelay(300*time.Millisecond, 300*time.Millisecond)
	a := startNode(t, "a", r.URL())
	b := startNode(t, "b", "redis://"+link.Addr(), func(c *node.Config) { c.PresenceTTL = 15 * time.Second })
	c := dial(t, b, "key=u1")
	wait.Until(t, 10*time.Second, "u1 online on b as a sees it", func() bool {
		return presenceOf(t, a, "u1")["online"] == true
	})

	const sends = 30
	statuses := make([]string, sends)
	took := make([]time.Duration, sends)
	var wg sync.WaitGroup
	tick := time.NewTicker(333 * time.Millisecond)
	defer tick.Stop()
	for i := range sends {
		<-tick.C
		wg.Go(func() {
			start := time.Now()
			out := sendJSON(t, a, fmt.Sprintf(`{"key":"u1","data":%d,"wait":"delivered","timeout_ms":4000}`, i))
			took[i] = time.Since(start)
			results, _ := out["results"].(map[string]any)
			u1, _ := results["u1"].(map[string]any)
			statuses[i] = fmt.Sprint(u1["status"])
		})
	}
	wg.Wait()
	delivered := 0
	for _, s := range statuses {
		if s == "delivered" {
			delivered++
		}
	}
	slices.Sort(took)
	t.Logf("%d of %d answered delivered (timeout 4 s); answer p50 %v, max %v", delivered, sends, took[sends/2], took[sends-1])
	if delivered != sends {
		t.Errorf("%d of %d answered delivered, want all: %v", delivered, sends, statuses)
	}
	for i := range sends {
		if f := c.next(); string(f.Data) != fmt.Sprint(i) {
			t.Fatalf("message %d: got %s", i, f.Data)
		}
	}
}

// A node whose link to Redis takes 700 ms each way (a probe's round trip:
// 1.4 s, over the 1 s probe interval) turns ready, since every message
// reaches it; it is not ready while its Redis is unreachable, and ready
// again once Redis is back.
func TestANodeBehindA700msLinkTurnsReadyAndIsNotReadyWhileItsRedisIsUnreachable(t *testing.T) {
	r := redistest.Start(t)
	link := faults.NewLink(t, r.Addr())
	link.SetDelay(700*time.Millisecond, 700*time.Millisecond)
	start := time.Now()
	// A TTL of 30 s gives each heartbeat 10 s: at the default 15 s, a
	// first join (a new connection, then three commands in a row: 5.6 s
	// here) overruns its 5 s and is tried again until pooled connections
	// make it fit; that is presence's budget, not the bus probe's.
	n := startUnready(t, node.Config{NodeID: "far", Redis: redisconn.Config{URL: "redis://" + link.Addr()},
		Liveness: node.Liveness{PresenceTTL: 30 * time.Second, DrainWindow: 200 * time.Millisecond}})
	ready := func() bool {
		status, _ := get(t, n.URL("/readyz"))
		return status == http.StatusOK
	}
	// Connecting takes a few round trips (dial, HELLO, SUBSCRIBE, the
	// first heartbeat), 1.4 s each, before the first probe can come back.
	wait.Until(t, 30*time.Second, "ready behind a 700 ms link", ready)
	t.Logf("ready %v after start behind a 700 ms link", time.Since(start).Round(time.Millisecond))
	// And it stays ready: the deadline follows the link, it does not flap.
	for range 10 {
		if !ready() {
			t.Fatal("ready, then not ready again on a steady 700 ms link")
		}
		time.Sleep(300 * time.Millisecond)
	}

	r.Pause()
	paused := time.Now()
	wait.Until(t, 20*time.Second, "not ready while Redis is stalled", func() bool { return !ready() })
	t.Logf("not ready %v after Redis stalled", time.Since(paused).Round(time.Millisecond))
	r.Resume()
	resumed := time.Now()
	wait.Until(t, 30*time.Second, "ready again once Redis is back", ready)
	t.Logf("ready again %v after Redis resumed", time.Since(resumed).Round(time.Millisecond))
}

// startUnready runs a node as startNode does, without waiting for it to
// be ready.
func startUnready(t *testing.T, cfg node.Config) *testNode {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.AdvertiseAddr = l.Addr().String()
	n, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	api, err := httpapi.New(n, httpapi.Config{Listen: l.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := api.Serve(ctx, l); err != nil {
			t.Errorf("node %s: %v", cfg.NodeID, err)
		}
	}()
	tn := &testNode{ID: cfg.NodeID, Addr: l.Addr().String(), stop: func() { cancel(); <-done }}
	t.Cleanup(tn.stop)
	return tn
}
