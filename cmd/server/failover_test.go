package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/internal/wait"
)

// retrySender stores numbered messages for one key, each under its own
// Idempotency-Key, and retries each until it is answered 200 — what a
// careful backend does — keeping what every attempt was answered.
type retrySender struct {
	mu       sync.Mutex
	answers  map[string]int      // "200", or the error code of a refusal, or "no answer"
	accepted map[string][]string // key -> stored ids, in the order the messages were numbered
	attempts []attempt
}

type attempt struct {
	at time.Time
	ok bool
}

func newRetrySender() *retrySender {
	return &retrySender{answers: map[string]int{}, accepted: map[string][]string{}}
}

// send stores message i for key through addr, retrying for up to within.
func (s *retrySender) send(t *testing.T, addr, key string, i int, within time.Duration) bool {
	body := fmt.Sprintf(`{"key":%q,"data":{"n":%d},"store":true}`, key, i)
	c := http.Client{Timeout: 5 * time.Second}
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/send", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", fmt.Sprintf("%s-%d", key, i))
		start := time.Now()
		resp, err := c.Do(req)
		answer := "no answer"
		var out struct {
			Results map[string]struct{ ID string }
			Error   struct{ Code string }
		}
		if err == nil {
			json.NewDecoder(resp.Body).Decode(&out)
			resp.Body.Close()
			answer = out.Error.Code
			if resp.StatusCode == http.StatusOK {
				answer = "200"
			}
		}
		s.mu.Lock()
		s.answers[answer]++
		s.attempts = append(s.attempts, attempt{at: start, ok: answer == "200"})
		if answer == "200" {
			s.accepted[key] = append(s.accepted[key], out.Results[key].ID)
		}
		s.mu.Unlock()
		if answer == "200" {
			return true
		}
	}
	t.Errorf("message %d for %s was never accepted", i, key)
	return false
}

// recovery is the time from since to the first accepted attempt that came
// after a refused one: how long senders saw the failure.
func (s *retrySender) recovery(since time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	failed := false
	for _, a := range s.attempts {
		if a.at.Before(since) {
			continue
		}
		if !a.ok {
			failed = true
		} else if failed {
			return a.at.Sub(since)
		}
	}
	return 0
}

// readiness polls /readyz of nodes and keeps the order of answers each gave.
type readiness struct {
	mu   sync.Mutex
	seen map[string][]int // node addr -> distinct successive statuses
	stop chan struct{}
	done sync.WaitGroup
}

func watchReadiness(nodes ...*process) *readiness {
	r := &readiness{seen: map[string][]int{}, stop: make(chan struct{})}
	for _, p := range nodes {
		r.done.Go(func() {
			for {
				st := status(p, "/readyz")
				r.mu.Lock()
				if s := r.seen[p.addr]; len(s) == 0 || s[len(s)-1] != st {
					r.seen[p.addr] = append(s, st)
				}
				r.mu.Unlock()
				select {
				case <-r.stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		})
	}
	return r
}

// wentDownAndBack stops watching and reports each node's statuses, failing
// unless some node read 503 and every node ends ready.
func (r *readiness) wentDownAndBack(t *testing.T) {
	t.Helper()
	close(r.stop)
	r.done.Wait()
	down := false
	for addr, s := range r.seen {
		t.Logf("/readyz of %s went %v", addr, s)
		if s[len(s)-1] != http.StatusOK {
			t.Errorf("%s did not end ready: %v", addr, s)
		}
		for _, st := range s {
			down = down || st == http.StatusServiceUnavailable
		}
	}
	if !down {
		t.Error("no node read 503 during the failover")
	}
}

// contentDuplicates counts messages whose data the subscriber handled more
// than once, whatever their ids.
func contentDuplicates(s *subscriber) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]int{}
	dups := 0
	for _, d := range s.data {
		if seen[d]++; seen[d] == 2 {
			dups++
		}
	}
	return dups
}

// failoverStory streams stored sends for key through a while a Redis master
// is killed, then restarted as Kubernetes would; kill does the killing and
// returns once a replica has taken over, restart brings the dead one back.
func failoverStory(t *testing.T, a, b *process, key string, kill, restart func()) {
	t.Helper()
	sub := subscribe(t, key, "ws://"+b.addr)
	waitOnline(t, a, []string{key})
	ready := watchReadiness(a, b)
	s := newRetrySender()

	const total = 250
	var killedAt time.Time
	var promoted time.Duration
	var failover sync.WaitGroup
	for i := range total {
		if i == 50 {
			// Sends keep coming while the master dies and is replaced.
			killedAt = time.Now()
			failover.Go(func() {
				kill()
				promoted = time.Since(killedAt)
				restart()
			})
		}
		s.send(t, a.addr, key, i, time.Minute)
		time.Sleep(20 * time.Millisecond)
	}
	failover.Wait()
	ready.wentDownAndBack(t)

	l := newLedger()
	l.sent[key] = total
	l.accepted[key] = s.accepted[key]
	settle(t, l, []*subscriber{sub}, 20*time.Second)
	t.Logf("master killed → replica promoted: %v; → first accepted send after a refusal: %v",
		promoted.Round(time.Millisecond), s.recovery(killedAt).Round(time.Millisecond))
	t.Logf("answers to %d messages: %v", total, s.answers)
	if d := contentDuplicates(sub); d > 0 || sub.client.Duplicates() > 0 {
		t.Errorf("the subscriber handled %d messages twice (%d duplicate ids)", d, sub.client.Duplicates())
	}
	if n := len(s.accepted[key]); n != total {
		t.Errorf("%d of %d messages accepted", n, total)
	}
}

func TestARedisClusterMasterKilledUnderStoredSendsLosesNothing(t *testing.T) {
	cl := redistest.StartCluster(t)
	// The master that holds the node registry and the player's inbox: its
	// death is felt by presence, routing and storage at once.
	victim := cl.MasterFor("herald:nodes")
	key := keyServedBy(t, cl, victim)
	args := func(id string) []string {
		return []string{"--node-id", id, "--redis-cluster-addrs", strings.Join(cl.Addrs(), ","),
			"--redis-min-replicas", "1", "--presence-ttl", "2s", "--max-wait", "2s"}
	}
	a, b := startProcess(t, args("a")...), startProcess(t, args("b")...)
	failoverStory(t, a, b, key,
		func() {
			victim.Kill()
			wait.Until(t, 20*time.Second, "a replica took over", func() bool { return cl.MasterFor(key) != victim })
		},
		func() { victim.Restart() })
}

func TestASentinelMasterKilledUnderStoredSendsLosesNothing(t *testing.T) {
	sn := redistest.StartSentinel(t)
	victim := sn.Master
	args := func(id string) []string {
		return []string{"--node-id", id, "--redis-sentinel-addrs", strings.Join(sn.Addrs(), ","),
			"--redis-master-name", redistest.MasterName, "--redis-min-replicas", "1", "--presence-ttl", "2s",
			"--max-wait", "2s"} // a send's Idempotency-Key lease: 3 × 5 s + max wait
	}
	a, b := startProcess(t, args("a")...), startProcess(t, args("b")...)
	failoverStory(t, a, b, "player",
		func() {
			victim.Kill()
			wait.Until(t, 30*time.Second, "the sentinels promoted the replica", func() bool { return sn.CurrentMaster() != victim })
		},
		func() { victim.Restart() }) // the sentinels make it a replica of the new master
}

func TestAfterAManualSentinelFailoverSendsStillReachClients(t *testing.T) {
	sn := redistest.StartSentinel(t)
	args := func(id string) []string {
		return []string{"--node-id", id, "--redis-sentinel-addrs", strings.Join(sn.Addrs(), ","),
			"--redis-master-name", redistest.MasterName, "--presence-ttl", "2s"}
	}
	a, b := startProcess(t, args("a")...), startProcess(t, args("b")...)
	ws := connect(t, b, "key=u1")
	waitOnline(t, a, []string{"u1"})

	// The old master stays up and becomes a replica. Sentinel cuts the
	// clients of an instance it reconfigures, so subscriptions dial again;
	// the case where it cannot (a partition) is
	// TestARedisBusWhoseSubscriptionWasLeftOnTheOldMasterFollowsTheNewOne.
	old := sn.CurrentMaster()
	sc := redis.NewSentinelClient(&redis.Options{Addr: sn.Sentinels[0].Addr()})
	defer sc.Close()
	if err := sc.Failover(t.Context(), redistest.MasterName).Err(); err != nil {
		t.Fatal(err)
	}
	wait.Until(t, 30*time.Second, "the sentinels switched masters", func() bool { return sn.CurrentMaster() != old })
	switched := time.Now()
	wait.Until(t, 20*time.Second, "a plain send through a reaches u1 on b", func() bool {
		return plainSendReaches(a, "u1", "after failover")
	})
	t.Logf("sends reached u1 again %v after the switch", time.Since(switched).Round(time.Millisecond))
	for _, p := range []*process{a, b} {
		wait.Until(t, 10*time.Second, p.addr+" ready", func() bool { return status(p, "/readyz") == http.StatusOK })
	}
	_, data, err := ws.Read(t.Context())
	for err == nil && !strings.Contains(string(data), "after failover") {
		_, data, err = ws.Read(t.Context())
	}
	if err != nil {
		t.Fatalf("u1 never received a send after the failover: %v", err)
	}
}

func TestSlotsReshardedUnderLoadLoseNothing(t *testing.T) {
	cl := redistest.StartCluster(t)
	// Move every slot of the master that holds b's channel and the
	// players' inboxes, while sends stream in.
	source := cl.MasterFor("herald:node:b")
	target := cl.MasterFor("herald:nodes")
	for i := 0; target == source; i++ {
		target = cl.MasterFor(fmt.Sprintf("other-%d", i))
	}
	keys := []string{keyServedBy(t, cl, source), keyServedBy(t, cl, source, "k"), keyServedBy(t, cl, source, "q")}
	t.Logf("moving the slots of %s (b's channel, %v) to %s", source.Addr(), keys, target.Addr())
	args := func(id string) []string {
		return []string{"--node-id", id, "--redis-cluster-addrs", strings.Join(cl.Addrs(), ","),
			"--redis-min-replicas", "1", "--presence-ttl", "2s"}
	}
	a, b := startProcess(t, args("a")...), startProcess(t, args("b")...)
	var subs []*subscriber
	for _, k := range keys {
		subs = append(subs, subscribe(t, k, "ws://"+b.addr))
	}
	connect(t, b, "key=watcher") // takes the plain sends that check routing to b
	waitOnline(t, a, append(keys, "watcher"))

	s := newRetrySender()
	stop := make(chan struct{})
	var stopOnce sync.Once
	var sent sync.WaitGroup
	// However the test ends (a failed reshard ends it at once), the sender
	// stops first: a send reporting after the test ended would panic the
	// whole test binary.
	stopSending := func() { stopOnce.Do(func() { close(stop) }); sent.Wait() }
	defer stopSending()
	counts := make([]int, len(keys))
	sent.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			k := i % len(keys)
			s.send(t, a.addr, keys[k], counts[k], time.Minute)
			counts[k]++
			time.Sleep(5 * time.Millisecond)
		}
	})
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	out, err := exec.Command("redis-cli", "--cluster", "reshard", target.Addr(),
		"--cluster-from", nodeID(t, source), "--cluster-to", nodeID(t, target),
		"--cluster-slots", fmt.Sprint(slotsOf(t, source)), "--cluster-yes").CombinedOutput()
	if err != nil {
		t.Fatalf("reshard: %v\n%s", err, lastLines(out, 20))
	}
	t.Logf("moved every slot of %s to %s in %v", source.Addr(), target.Addr(), time.Since(start).Round(time.Millisecond))
	if cl.MasterFor(keys[0]) != target || cl.MasterFor("herald:node:b") != target {
		t.Fatal("the slots did not move")
	}
	time.Sleep(time.Second) // sends keep flowing on the new layout
	stopSending()

	// b's channel moved: plain sends must reach its clients again.
	wait.Until(t, 10*time.Second, "a plain send reaches b after the reshard", func() bool {
		return plainSendReaches(a, "watcher", "after reshard")
	})
	t.Logf("answers: %v", s.answers)
	l := newLedger()
	for i, k := range keys {
		l.sent[k] = counts[i]
		l.accepted[k] = s.accepted[k]
	}
	settle(t, l, subs, 20*time.Second)
	for _, sub := range subs {
		if d := contentDuplicates(sub); d > 0 {
			t.Errorf("%s handled %d messages twice", sub.key, d)
		}
	}
}

// plainSendReaches sends text to key through p and reports whether the
// answer says a connection of the key got it.
func plainSendReaches(p *process, key, text string) bool {
	body := fmt.Sprintf(`{"key":%q,"data":%q}`, key, text)
	resp, err := http.Post("http://"+p.addr+"/v1/send", "application/json", strings.NewReader(body))
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var out struct{ Online []string }
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode == http.StatusOK && len(out.Online) == 1
}

// keyServedBy finds a key (prefix + a number) whose slot master is want.
func keyServedBy(t *testing.T, cl *redistest.Cluster, want *redistest.Server, prefix ...string) string {
	t.Helper()
	p := "player-"
	if len(prefix) > 0 {
		p = prefix[0]
	}
	for i := range 1000 {
		if k := fmt.Sprintf("%s%d", p, i); cl.MasterFor(k) == want {
			return k
		}
	}
	t.Fatalf("no key served by %s", want.Addr())
	return ""
}

// nodeID is a cluster node's id.
func nodeID(t *testing.T, s *redistest.Server) string {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer c.Close()
	id, err := c.ClusterMyID(t.Context()).Result()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// slotsOf counts the slots a master serves.
func slotsOf(t *testing.T, s *redistest.Server) int {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer c.Close()
	ranges, err := c.ClusterSlots(t.Context()).Result()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range ranges {
		if len(r.Nodes) > 0 && r.Nodes[0].Addr == s.Addr() {
			n += int(r.End - r.Start + 1)
		}
	}
	return n
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// A master dies; the keys whose channels live on the other masters must
// not read offline meanwhile. A node that learns of the failover takes a
// new incarnation and writes its keys again, but its subscriptions on the
// healthy masters stand: renewing them all, as it once did, unsubscribed
// every key for a moment (found from outside: 3 to 7 of 100 keys offline,
// 5–20 ms, about one heartbeat after the failover).
func TestKeysOnHealthyMastersStayOnlineThroughAnotherMastersFailover(t *testing.T) {
	cl := redistest.StartCluster(t)
	victim := cl.MasterFor("herald:nodes")
	var keys []string
	for i := 0; len(keys) < 20 && i < 1000; i++ {
		if k := fmt.Sprintf("calm-%d", i); cl.MasterFor(k) != victim {
			keys = append(keys, k)
		}
	}
	args := func(id string) []string {
		return []string{"--node-id", id, "--redis-cluster-addrs", strings.Join(cl.Addrs(), ","), "--presence-ttl", "6s"}
	}
	a, b := startProcess(t, args("a")...), startProcess(t, args("b")...)
	for _, k := range keys {
		connect(t, b, "key="+k)
	}
	waitOnline(t, a, keys)

	victim.Kill()
	killed := time.Now()
	var offline []string
	sends := 0
	// Through the failover and two heartbeats past it (TTL/3 each).
	for time.Since(killed) < 15*time.Second {
		for _, k := range keys {
			ans := sendPlain(a.addr, k, "calm", "")
			sends++
			if ans.status == http.StatusOK && !ans.online {
				offline = append(offline, fmt.Sprintf("%s at +%v", k, time.Since(killed).Round(time.Millisecond)))
			}
		}
	}
	t.Logf("%d sends to keys on healthy masters during and after the failover; %d answered offline", sends, len(offline))
	if len(offline) > 0 {
		t.Errorf("keys on healthy masters read offline: %v", offline)
	}
}
