package main

// Story tests of the faults a real network makes (issue #19): a node cut off
// from Redis, a short partition, a stalled node, a slow link, a command that
// timed out. Each prints accepted / delivered / lost / duplicated for
// docs/delivery.md. make faults runs just these.

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/herald-push/herald/internal/faults"
	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/internal/wait"
	"github.com/herald-push/herald/pkg/protocol"
)

const faultTTL = 3 * time.Second

// nodeInNetns runs node id in its own network namespace, reaching r over
// the veth pair, listening on the namespace's address.
func nodeInNetns(t *testing.T, ns *faults.Netns, r *redistest.Server, id string, args ...string) *process {
	t.Helper()
	addr := net.JoinHostPort(ns.NodeIP, "8080")
	cmd := ns.Command(herald(t), append([]string{"--listen", addr, "--insecure", "--node-id", id,
		"--redis-url", "redis://" + ns.HostAddr(r.Port)}, args...)...)
	p := launch(t, addr, cmd)
	wait.Until(t, 10*time.Second, id+" ready", func() bool { return status(p, "/readyz") == http.StatusOK })
	return p
}

// closes records how a subscriber's connections ended.
type closes struct {
	mu    sync.Mutex
	codes []websocket.StatusCode
	at    []time.Time
}

func (c *closes) onState(connected bool, err error) {
	if connected {
		return
	}
	c.mu.Lock()
	c.codes = append(c.codes, websocket.CloseStatus(err))
	c.at = append(c.at, time.Now())
	c.mu.Unlock()
}

// first is when the first close with code came, if one did.
func (c *closes) first(code websocket.StatusCode) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, got := range c.codes {
		if got == code {
			return c.at[i], true
		}
	}
	return time.Time{}, false
}

// plainAnswer is what a plain send was answered.
type plainAnswer struct {
	status int
	code   string // error.code, if any
	msg    string
	online bool
}

// sendPlain sends data to key through addr, not stored.
func sendPlain(addr, key, data, idemKey string) plainAnswer {
	body := fmt.Sprintf(`{"key":%q,"data":%q}`, key, data)
	req, _ := http.NewRequest("POST", "http://"+addr+"/v1/send", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	c := http.Client{Timeout: 20 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return plainAnswer{msg: err.Error()}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out struct {
		Online []string
		Error  struct{ Code, Message string }
	}
	_ = json.Unmarshal(b, &out)
	return plainAnswer{status: resp.StatusCode, code: out.Error.Code, msg: out.Error.Message, online: len(out.Online) > 0}
}

// count is how many times s handled a message whose data is the JSON
// string data.
func (s *subscriber) count(data string) int {
	want, _ := json.Marshal(data)
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, d := range s.data {
		if d == string(want) {
			n++
		}
	}
	return n
}

// plainLedger keeps the plain sends a test made and what they were answered.
type plainLedger struct {
	mu      sync.Mutex
	answers []plainAnswer
	data    []string
	at      []time.Time
}

func (p *plainLedger) send(addr, key string, i int) {
	data := "plain-" + strconv.Itoa(i)
	a := sendPlain(addr, key, data, "")
	p.mu.Lock()
	p.answers, p.data, p.at = append(p.answers, a), append(p.data, data), append(p.at, time.Now())
	p.mu.Unlock()
}

// report prints how many plain sends were answered online and reached s,
// and returns the last time one answered online was lost.
func (p *plainLedger) report(t *testing.T, s *subscriber) (lastLostOnline time.Time) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	var online, offline, refused, delivered, lostOnline int
	for i, a := range p.answers {
		got := s.count(p.data[i]) > 0
		if got {
			delivered++
		}
		switch {
		case a.status != http.StatusOK:
			refused++
		case a.online:
			online++
			if !got {
				lostOnline++
				lastLostOnline = p.at[i]
			}
		default:
			offline++
		}
	}
	t.Logf("PLAIN    sent %4d answered online %d offline %d refused %d; delivered %d; answered online but lost %d",
		len(p.answers), online, offline, refused, delivered, lostOnline)
	return lastLostOnline
}

// every runs f(i) each interval until stop is closed.
func every(interval time.Duration, stop <-chan struct{}, f func(i int)) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(interval):
			}
			f(i)
		}
	})
	return &wg
}

func TestAPartitionedNodesKeysReadOfflineAfterTheReapAndItsClientsMoveToAnotherNode(t *testing.T) {
	t.Parallel()
	ns := faults.NewNetns(t)
	r := redistest.StartWith(t, ns.RedisArgs()...)
	a := startProcess(t, "--node-id", "a", "--redis-url", r.URL(), "--presence-ttl", faultTTL.String())
	b := nodeInNetns(t, ns, r, "b", "--presence-ttl", faultTTL.String())
	// Two clients of b: one gets the plain sends, one the stored ones.
	var cl closes
	sub := subscribeWith(t, "p1", cl.onState, "ws://"+b.addr, "ws://"+a.addr)
	psub := subscribe(t, "q1", "ws://"+b.addr, "ws://"+a.addr)
	waitOnline(t, a, []string{"p1", "q1"})

	stored, plain := newLedger(), &plainLedger{}
	stop := make(chan struct{})
	cut := time.Now()
	ns.Cut(r.Port)
	sends := every(50*time.Millisecond, stop, func(i int) {
		if i%2 == 0 {
			plain.send(a.addr, "q1", i)
		} else {
			stored.send(a.addr, "p1", i)
		}
	})
	// b's last good heartbeat came before the cut: its keys may read online
	// until the reap (TTL + one heartbeat interval), then never again.
	reapBy := cut.Add(faultTTL + faultTTL/3 + time.Second)
	fenceBy := cut.Add(faultTTL + 3*time.Second)
	wait.Until(t, time.Until(fenceBy)+time.Second, "the partition outlived the fence", func() bool { return time.Now().After(fenceBy) })
	close(stop)
	sends.Wait()

	if at, ok := cl.first(websocket.StatusCode(protocol.CloseTryAgainLater)); !ok {
		t.Errorf("b never closed its client with 1013 after losing Redis (closes seen: %v)", cl.codes)
	} else {
		t.Logf("b closed its client with 1013 %v after the cut (TTL %v)", at.Sub(cut).Round(10*time.Millisecond), faultTTL)
	}
	var lastOnline time.Time
	plain.mu.Lock()
	for i, ans := range plain.answers {
		if ans.status == http.StatusOK && ans.online {
			lastOnline = plain.at[i]
		}
	}
	plain.mu.Unlock()
	if !lastOnline.IsZero() {
		t.Logf("q1 last read online %v after the cut", lastOnline.Sub(cut).Round(10*time.Millisecond))
	}
	// Once reaped, a send reading online must be true: the client is back,
	// on a, and got it.
	if lost := plain.report(t, psub); lost.After(reapBy) {
		t.Errorf("a plain send answered online %v after the cut was lost: past the reap deadline of %v", lost.Sub(cut).Round(10*time.Millisecond), reapBy.Sub(cut))
	}

	ns.Heal(r.Port)
	settle(t, stored, []*subscriber{sub}, 10*time.Second)
	wait.Until(t, 15*time.Second, "b ready again after the heal", func() bool { return status(b, "/readyz") == http.StatusOK })
	// b's keys work again: a new client on b gets a send made through a.
	again := subscribe(t, "p2", "ws://"+b.addr)
	waitOnline(t, a, []string{"p2"})
	healed := newLedger()
	for i := range 5 {
		healed.send(a.addr, "p2", i)
	}
	settle(t, healed, []*subscriber{again}, 5*time.Second)
}

func TestStoredSendsDuringAShortPartitionArriveWhenItHealsWithoutAnotherSend(t *testing.T) {
	t.Parallel()
	ns := faults.NewNetns(t)
	r := redistest.StartWith(t, ns.RedisArgs()...)
	a := startProcess(t, "--node-id", "a", "--redis-url", r.URL(), "--presence-ttl", faultTTL.String())
	b := nodeInNetns(t, ns, r, "b", "--presence-ttl", faultTTL.String())
	sub := subscribe(t, "s1", "ws://"+b.addr, "ws://"+a.addr)
	waitOnline(t, a, []string{"s1"})

	stored := newLedger()
	ns.Cut(r.Port)
	stop := make(chan struct{})
	sends := every(50*time.Millisecond, stop, func(i int) { stored.send(a.addr, "s1", i) })
	// Healed before the TTL: TCP's retransmissions carry on where they were.
	time.Sleep(faultTTL / 2)
	close(stop)
	sends.Wait()
	ns.Heal(r.Port)
	settle(t, stored, []*subscriber{sub}, 8*time.Second)
}

func TestStoredSendsToAStalledNodesClientsArriveAfterItResumesWithoutAnotherSend(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	a := startProcess(t, "--node-id", "a", "--redis-url", r.URL(), "--presence-ttl", faultTTL.String())
	b := startProcess(t, "--node-id", "b", "--redis-url", r.URL(), "--presence-ttl", faultTTL.String())
	// The client stays on b: it is the still-connected key the stall hides.
	sub := subscribe(t, "z1", "ws://"+b.addr)
	waitOnline(t, a, []string{"z1"})

	stored := newLedger()
	resume := faults.Stall(t, b.cmd.Process)
	stop := make(chan struct{})
	sends := every(100*time.Millisecond, stop, func(i int) { stored.send(a.addr, "z1", i) })
	time.Sleep(2 * faultTTL) // long enough for a to reap b
	close(stop)
	sends.Wait()
	resume()
	resumed := time.Now()
	settle(t, stored, []*subscriber{sub}, 8*time.Second)
	t.Logf("every stored send reached z1 %v after SIGCONT", time.Since(resumed).Round(10*time.Millisecond))
}

func TestOverASlowLinkWaitingSendsAnswerDeliveredAndTheNodeTurnsReady(t *testing.T) {
	t.Parallel()
	t.Run("200ms each way", func(t *testing.T) {
		t.Parallel()
		r := redistest.Start(t)
		link := faults.NewLink(t, r.Addr())
		link.SetDelay(200*time.Millisecond, 200*time.Millisecond)
		a := startProcess(t, "--node-id", "a", "--redis-url", r.URL())
		b := startProcess(t, "--node-id", "b", "--redis-url", "redis://"+link.Addr())
		// The client is on b: b reports each delivery back to a over
		// the slow link.
		sub := subscribe(t, "w1", "ws://"+b.addr)
		waitOnline(t, a, []string{"w1"})

		// A backend waits for delivery of each send through a, about
		// three a second, each on its own request.
		const n = 30
		var delivered, answered atomic.Int64
		stored := newLedger()
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				id, st, ok := sendWaiting(a.addr, "w1", i, 2000)
				if !ok {
					return
				}
				answered.Add(1)
				stored.mu.Lock()
				stored.accepted["w1"] = append(stored.accepted["w1"], id)
				stored.mu.Unlock()
				if st == "delivered" {
					delivered.Add(1)
				}
			})
			time.Sleep(333 * time.Millisecond)
		}
		wg.Wait()
		stored.sent["w1"] = n
		t.Logf("wait:delivered over a 400ms round trip: %d of %d sends answered, %d answered delivered", answered.Load(), n, delivered.Load())
		settle(t, stored, []*subscriber{sub}, 10*time.Second)
		if delivered.Load()*10 < n*9 {
			t.Errorf("only %d of %d waiting sends answered delivered, want at least 90%%", delivered.Load(), n)
		}
	})
	t.Run("700ms each way", func(t *testing.T) {
		t.Parallel()
		r := redistest.Start(t)
		link := faults.NewLink(t, r.Addr())
		link.SetDelay(700*time.Millisecond, 700*time.Millisecond)
		addr := freeAddr(t)
		start := time.Now()
		b := launch(t, addr, execHerald(t, "--listen", addr, "--node-id", "b", "--redis-url", "redis://"+link.Addr()))
		wait.Until(t, 40*time.Second, "b ready behind a 1.4s round trip", func() bool { return status(b, "/readyz") == http.StatusOK })
		t.Logf("b turned ready %v after it started, behind a 1.4s round trip", time.Since(start).Round(100*time.Millisecond))
	})
}

// sendWaiting stores a message for key through addr that waits for
// delivery; ok is false when it was not answered 200.
func sendWaiting(addr, key string, i, timeoutMS int) (id, status string, ok bool) {
	body := fmt.Sprintf(`{"key":%q,"data":{"n":%d},"wait":"delivered","timeout_ms":%d}`, key, i, timeoutMS)
	c := http.Client{Timeout: 15 * time.Second}
	resp, err := c.Post("http://"+addr+"/v1/send", "application/json", strings.NewReader(body))
	if err != nil {
		return "", "", false
	}
	defer resp.Body.Close()
	var out struct {
		Results map[string]struct{ ID, Status string }
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&out) != nil {
		return "", "", false
	}
	return out.Results[key].ID, out.Results[key].Status, true
}

func TestASendWhoseRedisCommandTimedOutNeverSaysNothingWasSent(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	link := faults.NewLink(t, r.Addr())
	a := startProcess(t, "--node-id", "a", "--redis-url", r.URL())
	// A short --max-wait keeps the Idempotency-Key lease short (three Redis
	// timeouts and the wait): a claim the hung link delivers after the heal
	// holds retries off that long, as the answer says.
	const lease = 3*5*time.Second + time.Second
	b := startProcess(t, "--node-id", "b", "--redis-url", "redis://"+link.Addr(), "--max-wait", "1s")
	sub := subscribe(t, "e1", "ws://"+a.addr)
	waitOnline(t, b, []string{"e1"})

	// The link hangs right after b is ready: its commands are written,
	// and run once the link heals.
	link.Cut()
	plain := sendPlain(b.addr, "e1", "plain-1", "")
	keyed := sendPlain(b.addr, "e1", "order-1", "order-1")
	link.Heal()
	t.Logf("over a hung link a plain send was answered %d %s (%s); one with an Idempotency-Key %d %s (%s)",
		plain.status, plain.code, plain.msg, keyed.status, keyed.code, keyed.msg)
	if plain.status != http.StatusServiceUnavailable || plain.code != "outcome_unknown" {
		t.Errorf("the plain send was answered %d %q (%s), want 503 outcome_unknown", plain.status, plain.code, plain.msg)
	}

	wait.Until(t, 15*time.Second, "b ready after the heal", func() bool { return status(b, "/readyz") == http.StatusOK })
	// The backend retries the keyed send, as the answer tells it to.
	var retry plainAnswer
	deadline := time.Now().Add(lease + 5*time.Second)
	for retry = sendPlain(b.addr, "e1", "order-1", "order-1"); retry.status != http.StatusOK; retry = sendPlain(b.addr, "e1", "order-1", "order-1") {
		if time.Now().After(deadline) {
			t.Fatalf("the retry with the same Idempotency-Key is still answered %d %q (%s) past its lease after the heal", retry.status, retry.code, retry.msg)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// A later send through the same node marks the end: whatever the first
	// attempts put in flight has arrived before it.
	sendPlain(b.addr, "e1", "after", "")
	wait.Until(t, 5*time.Second, "the client got the next send", func() bool { return sub.count("after") > 0 })
	plainGot, keyedGot := sub.count("plain-1"), sub.count("order-1")
	t.Logf("plain: accepted 0, delivered %d; keyed: sent 2 (one retry), accepted 1, delivered %d, lost %d, duplicated %d",
		plainGot, keyedGot, max(1-keyedGot, 0), max(keyedGot-1, 0))
	if strings.Contains(plain.msg, "nothing was sent") && plainGot > 0 {
		t.Errorf("the plain send was answered %q yet its message was delivered", plain.msg)
	}
	if keyedGot != 1 {
		t.Errorf("the client got order-1 %d times, want once", keyedGot)
	}
}

// A plain send is at most once: its PUBLISH ran in Redis, but the answer
// was lost on the way back (the link held it past the read timeout). The
// Redis client must not run it again on another connection, which would
// hand the client the same message twice; the sender is told the outcome is
// unknown instead. Both paths: a send to one key (its key's channel) and
// one to five (a lookup, then the holding node's channel).
func TestAPlainSendWhoseAnswerWasLostIsNotPublishedTwice(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		keys []string
	}{
		{"one key", []string{"d1"}},
		{"five keys", []string{"d1", "x1", "x2", "x3", "x4"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := redistest.Start(t)
			link := faults.NewLink(t, r.Addr())
			a := startProcess(t, "--node-id", "a", "--redis-url", r.URL())
			b := startProcess(t, "--node-id", "b", "--redis-url", "redis://"+link.Addr())
			sub := subscribe(t, "d1", "ws://"+a.addr)
			waitOnline(t, b, []string{"d1"})

			keys, _ := json.Marshal(c.keys)
			link.HoldRepliesAfter("plain-once")
			code, out := postJSON(t, b, "/v1/send", `{"keys":`+string(keys)+`,"data":"plain-once"}`)
			link.ReleaseReplies()
			t.Logf("the send whose answer was held was answered %d %v", code, out["error"])
			if e, _ := out["error"].(map[string]any); code != http.StatusServiceUnavailable || e["code"] != "outcome_unknown" {
				t.Errorf("answered %d %v, want 503 outcome_unknown", code, out)
			}
			wait.Until(t, 15*time.Second, "b ready after the release", func() bool { return status(b, "/readyz") == http.StatusOK })
			sendPlain(b.addr, "d1", "after", "")
			wait.Until(t, 5*time.Second, "the client got the next send", func() bool { return sub.count("after") > 0 })
			if got := sub.count("plain-once"); got != 1 {
				t.Errorf("the client got the send %d times, want once (it ran in Redis)", got)
			}
		})
	}
}
