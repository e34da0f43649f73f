package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/internal/wait"
	"github.com/herald-push/herald/pkg/client"
	"github.com/herald-push/herald/pkg/protocol"
)

// ledger keeps what a test sent and what the cluster accepted, per key, in
// the order the answers came.
type ledger struct {
	mu       sync.Mutex
	sent     map[string]int
	accepted map[string][]string // stored ids
}

func newLedger() *ledger {
	return &ledger{sent: map[string]int{}, accepted: map[string][]string{}}
}

// send stores data for key through node addr; an answer other than 200 (or
// no answer) counts as not accepted.
func (l *ledger) send(addr, key string, i int) bool {
	return l.sendPadded(addr, key, i, 0)
}

// sendPadded sends a message carrying pad bytes of filler.
func (l *ledger) sendPadded(addr, key string, i, pad int) bool {
	l.mu.Lock()
	l.sent[key]++
	l.mu.Unlock()
	body := fmt.Sprintf(`{"key":%q,"data":{"n":%d,"pad":%q},"store":true}`, key, i, strings.Repeat("x", pad))
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Post("http://"+addr+"/v1/send", "application/json", strings.NewReader(body))
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var out struct {
		Results map[string]struct{ ID string }
	}
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&out) != nil {
		return false
	}
	l.mu.Lock()
	l.accepted[key] = append(l.accepted[key], out.Results[key].ID)
	l.mu.Unlock()
	return true
}

// subscriber is a herald Go client that records what it handles.
type subscriber struct {
	key    string
	client *client.Client
	mu     sync.Mutex
	got    []string
	data   []string // each message's data, in the order handled
}

func subscribe(t *testing.T, key string, urls ...string) *subscriber {
	t.Helper()
	return subscribeWith(t, key, nil, urls...)
}

// subscribeWith is subscribe with a callback told of each connect and close.
func subscribeWith(t *testing.T, key string, onState func(connected bool, err error), urls ...string) *subscriber {
	t.Helper()
	c, err := client.New(client.Config{URLs: urls, Key: key, AutoAck: true, MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second,
		OnState: onState})
	if err != nil {
		t.Fatal(err)
	}
	s := &subscriber{key: key, client: c}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := c.Run(ctx, func(m client.Message) {
			s.mu.Lock()
			s.got = append(s.got, m.ID)
			s.data = append(s.data, string(m.Data))
			s.mu.Unlock()
		}); err != nil {
			t.Errorf("client %s: %v", key, err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

func (s *subscriber) received() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got)
}

// settle waits until every subscriber has every accepted message of its key,
// or the deadline passes, then prints the figures and fails on any loss or
// disorder.
func settle(t *testing.T, l *ledger, subs []*subscriber, within time.Duration) {
	t.Helper()
	missing := func(s *subscriber) int {
		got := map[string]bool{}
		for _, id := range s.received() {
			got[id] = true
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		n := 0
		for _, id := range l.accepted[s.key] {
			if !got[id] {
				n++
			}
		}
		return n
	}
	deadline := time.Now().Add(within)
	for {
		total := 0
		for _, s := range subs {
			total += missing(s)
		}
		if total == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	var sent, accepted, delivered, lost, dups int
	l.mu.Lock()
	defer l.mu.Unlock()
	sort.Slice(subs, func(i, j int) bool { return subs[i].key < subs[j].key })
	for _, s := range subs {
		got := s.received()
		acc := l.accepted[s.key]
		accSet := map[string]bool{}
		for _, id := range acc {
			accSet[id] = true
		}
		gotSet := map[string]bool{}
		for _, id := range got {
			gotSet[id] = true
		}
		keyLost := 0
		for _, id := range acc {
			if !gotSet[id] {
				keyLost++
			}
		}
		// Every message received is received in stored order.
		if !slices.IsSortedFunc(got, compareIDs) {
			t.Errorf("%s received out of order: %v", s.key, got)
		}
		t.Logf("key %-4s sent %4d accepted %4d delivered %4d lost %d duplicates %d",
			s.key, l.sent[s.key], len(acc), len(got), keyLost, s.client.Duplicates())
		sent += l.sent[s.key]
		accepted += len(acc)
		delivered += len(got)
		lost += keyLost
		dups += s.client.Duplicates()
	}
	t.Logf("TOTAL    sent %4d accepted %4d delivered %4d lost %d duplicates %d", sent, accepted, delivered, lost, dups)
	if lost > 0 {
		t.Fatalf("%d accepted messages were never delivered", lost)
	}
}

func compareIDs(a, b string) int {
	var am, as, bm, bs uint64
	fmt.Sscanf(a, "%d-%d", &am, &as)
	fmt.Sscanf(b, "%d-%d", &bm, &bs)
	switch {
	case am != bm:
		return cmpUint(am, bm)
	default:
		return cmpUint(as, bs)
	}
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestStoredSendsSurviveANodeKilledMidStream(t *testing.T) {
	for _, topology := range []struct {
		name  string
		redis func(t *testing.T) []string // the node flags that reach it
	}{
		{"single", func(t *testing.T) []string { return []string{"--redis-url", redistest.Start(t).URL()} }},
		{"cluster", func(t *testing.T) []string {
			return []string{"--redis-cluster-addrs", strings.Join(redistest.StartCluster(t).Addrs(), ",")}
		}},
	} {
		t.Run(topology.name, func(t *testing.T) { storedSendsSurviveANodeKilledMidStream(t, topology.redis(t)) })
	}
}

func storedSendsSurviveANodeKilledMidStream(t *testing.T, redisFlags []string) {
	args := func(id string) []string {
		return append([]string{"--node-id", id, "--presence-ttl", "2s"}, redisFlags...)
	}
	a := startProcess(t, args("a")...)
	b := startProcess(t, args("b")...)
	c := startProcess(t, args("c")...)

	keys := []string{"k1", "k2", "k3", "k4", "k5", "k6"}
	var subs []*subscriber
	for _, k := range keys {
		// Connected to c first; after c dies they reconnect to a, then b.
		subs = append(subs, subscribe(t, k, "ws://"+c.addr, "ws://"+a.addr, "ws://"+b.addr))
	}
	waitOnline(t, a, keys)

	l := newLedger()
	const total = 600
	for i := range total {
		if i == total/3 {
			c.cmd.Process.Signal(syscall.SIGKILL)
		}
		l.send(a.addr, keys[i%len(keys)], i)
		time.Sleep(2 * time.Millisecond)
	}
	settle(t, l, subs, 20*time.Second)
}

func TestStoredSendsSurviveARedisRestartWithAOF(t *testing.T) {
	r := redistest.StartWith(t, "--appendonly", "yes", "--appendfsync", "always")
	a := startProcess(t, "--node-id", "a", "--redis-url", r.URL())
	b := startProcess(t, "--node-id", "b", "--redis-url", r.URL())
	keys := []string{"k1", "k2", "k3"}
	var subs []*subscriber
	for _, k := range keys {
		subs = append(subs, subscribe(t, k, "ws://"+b.addr))
	}
	waitOnline(t, a, keys)

	l := newLedger()
	var rejected atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if !l.send(a.addr, keys[i%len(keys)], i) {
				rejected.Add(1)
			}
			time.Sleep(2 * time.Millisecond)
		}
	})
	time.Sleep(400 * time.Millisecond)
	r.Kill() // kill -9: only what the AOF holds survives
	time.Sleep(500 * time.Millisecond)
	r.Restart()
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	t.Logf("%d sends refused while Redis was down (not accepted, so not owed)", rejected.Load())
	if rejected.Load() == 0 {
		t.Error("no send was refused: the restart did not overlap the sends")
	}
	settle(t, l, subs, 20*time.Second)
}

func TestARollingRestartOfEveryNodeLosesNothing(t *testing.T) {
	r := redistest.Start(t)
	addrs := []string{freeAddr(t), freeAddr(t), freeAddr(t)}
	ids := []string{"a", "b", "c"}
	start := func(i int) *process {
		return startProcessAt(t, addrs[i], "--node-id", ids[i], "--redis-url", r.URL(), "--drain-window", "300ms")
	}
	nodes := []*process{start(0), start(1), start(2)}
	var urls []string
	for _, a := range addrs {
		urls = append(urls, "ws://"+a)
	}
	keys := []string{"k1", "k2", "k3", "k4"}
	var subs []*subscriber
	for i, k := range keys {
		subs = append(subs, subscribe(t, k, append(urls[i%3:], urls[:i%3]...)...))
	}
	waitOnline(t, nodes[0], keys)

	l := newLedger()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			// A sender retries on another node when one is restarting.
			for try := range 3 {
				if l.send(addrs[(i+try)%3], keys[i%len(keys)], i) {
					break
				}
			}
			time.Sleep(3 * time.Millisecond)
		}
	})
	for i := range nodes {
		time.Sleep(500 * time.Millisecond)
		nodes[i].cmd.Process.Signal(syscall.SIGTERM)
		<-nodes[i].done
		if nodes[i].err != nil {
			t.Errorf("node %s exited with %v", ids[i], nodes[i].err)
		}
		nodes[i] = start(i)
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	settle(t, l, subs, 20*time.Second)
}

// waitOnline waits until every key reads online through node p.
func waitOnline(t *testing.T, p *process, keys []string) {
	t.Helper()
	for _, k := range keys {
		wait.Until(t, 10*time.Second, k+" online", func() bool { return online(t, p, k) })
	}
}

func TestAClientDroppedForReadingTooSlowlyResumesAndGetsEverything(t *testing.T) {
	r := redistest.Start(t)
	a := startProcess(t, "--node-id", "a", "--redis-url", r.URL(), "--queue-messages", "8")
	b := startProcess(t, "--node-id", "b", "--redis-url", r.URL(), "--queue-messages", "8")

	sub := &subscriber{key: "slow"}
	var drops atomic.Int64
	c2, _ := client.New(client.Config{URLs: []string{"ws://" + b.addr}, Key: "slow", AutoAck: true, MinBackoff: 50 * time.Millisecond,
		OnState: func(connected bool, err error) {
			if !connected && protocol.CloseCode(websocket.CloseStatus(err)) == protocol.CloseSlowConsumer {
				drops.Add(1)
			}
		}})
	sub.client = c2
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c2.Run(ctx, func(m client.Message) {
			sub.mu.Lock()
			sub.got = append(sub.got, m.ID)
			slow := len(sub.got) < 20
			sub.mu.Unlock()
			if slow { // the first messages are handled very slowly
				time.Sleep(100 * time.Millisecond)
			}
		})
	}()
	defer func() { cancel(); <-done }()
	waitOnline(t, a, []string{"slow"})

	l := newLedger()
	for i := range 300 {
		l.sendPadded(a.addr, "slow", i, 48<<10) // big enough to fill socket buffers
	}
	settle(t, l, []*subscriber{sub}, 30*time.Second)
	t.Logf("the client was dropped as a slow consumer %d times", drops.Load())
	if drops.Load() == 0 {
		t.Error("the client was never dropped: the test did not exercise a slow consumer")
	}
}

// sendWait sends a stored message that waits, and returns the key's status.
func sendWait(t *testing.T, addr, key, wait string, timeoutMS int) (string, time.Duration) {
	t.Helper()
	body := fmt.Sprintf(`{"key":%q,"data":"x","wait":%q,"timeout_ms":%d}`, key, wait, timeoutMS)
	start := time.Now()
	resp, err := http.Post("http://"+addr+"/v1/send", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Results map[string]struct{ ID, Status string }
	}
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&out) != nil {
		t.Fatalf("wait send: status %d", resp.StatusCode)
	}
	return out.Results[key].Status, time.Since(start)
}

func TestWaitingForAnAckAcrossNodes(t *testing.T) {
	r := redistest.Start(t)
	a := startProcess(t, "--node-id", "a", "--redis-url", r.URL())
	b := startProcess(t, "--node-id", "b", "--redis-url", r.URL())

	// A client on b that acknowledges each message 300ms after it got it.
	const ackDelay = 300 * time.Millisecond
	c, _ := client.New(client.Config{URLs: []string{"ws://" + b.addr}, Key: "player"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx, func(m client.Message) {
			go func() { time.Sleep(ackDelay); c.Ack(ctx, m.ID) }()
		})
	}()
	defer func() { cancel(); <-done }()
	waitOnline(t, a, []string{"player"})

	status, took := sendWait(t, a.addr, "player", "acked", 5000)
	if status != "acked" || took < ackDelay {
		t.Fatalf("wait acked: %s after %v, want acked after at least %v", status, took, ackDelay)
	}
	t.Logf("wait:acked answered acked after %v (client acked after %v)", took.Round(time.Millisecond), ackDelay)

	status, _ = sendWait(t, a.addr, "player", "delivered", 5000)
	if status != "delivered" {
		t.Fatalf("wait delivered: %s", status)
	}
	// Too short for the client's ack: delivered, not acked.
	if status, _ := sendWait(t, a.addr, "player", "acked", 100); status != "delivered" {
		t.Fatalf("wait acked with a short timeout: %s, want delivered", status)
	}
	// Nobody connected: stored, waiting for the client.
	if status, _ := sendWait(t, a.addr, "absent", "acked", 200); status != "stored" {
		t.Fatalf("wait for an absent key: %s, want stored", status)
	}
}

func TestARetriedSendWithTheSameIdempotencyKeyIsDeliveredOnce(t *testing.T) {
	r := redistest.Start(t)
	a := startProcess(t, "--node-id", "a", "--redis-url", r.URL())
	b := startProcess(t, "--node-id", "b", "--redis-url", r.URL())
	sub := subscribe(t, "buyer", "ws://"+b.addr)
	waitOnline(t, a, []string{"buyer"})

	send := func(addr string) (string, http.Header) {
		req, _ := http.NewRequest("POST", "http://"+addr+"/v1/send", strings.NewReader(`{"key":"buyer","data":{"item":"sword"},"store":true}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", "purchase-7731")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			Results map[string]struct{ ID string }
		}
		json.NewDecoder(resp.Body).Decode(&out)
		return out.Results["buyer"].ID, resp.Header
	}
	first, _ := send(a.addr)
	again, h1 := send(a.addr)
	other, h2 := send(b.addr) // a retry through another node
	if first == "" || again != first || other != first || h1.Get("Idempotent-Replayed") != "true" || h2.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retries answered %q and %q, want the first answer %q, replayed", again, other, first)
	}
	l := newLedger()
	l.sent["buyer"], l.accepted["buyer"] = 3, []string{first}
	settle(t, l, []*subscriber{sub}, 5*time.Second)
	time.Sleep(300 * time.Millisecond)
	if got := sub.received(); len(got) != 1 {
		t.Fatalf("the buyer received %d messages for one purchase: %v", len(got), got)
	}
}
