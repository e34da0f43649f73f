package node_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/internal/wait"
	"github.com/herald-push/herald/pkg/node"
	"github.com/herald-push/herald/pkg/protocol"
)

// threeNodes starts nodes a, b and c on one Redis.
func threeNodes(t *testing.T, tune ...func(*node.Config)) (*redistest.Server, *testNode, *testNode, *testNode) {
	t.Helper()
	r := redistest.Start(t)
	return r, startNode(t, "a", r.URL(), tune...), startNode(t, "b", r.URL(), tune...), startNode(t, "c", r.URL(), tune...)
}

// clusterStories run on every Redis topology herald supports.
var clusterStories = []struct {
	name string
	run  func(t *testing.T, topo redisTopology)
}{
	{"SendOnOneNodeReachesEveryConnectionOfTheKeyOnOtherNodesAndNoOtherKey", storySendOnOneNodeReachesEveryConnectionOfTheKeyOnOtherNodesAndNoOtherKey},
	{"MultiKeySendSaysWhichKeysWereOnline", storyMultiKeySendSaysWhichKeysWereOnline},
	{"SendToAnOfflineKeyIsReportedNotSilentlyDropped", storySendToAnOfflineKeyIsReportedNotSilentlyDropped},
	{"TopicPublishOnAnyNodeReachesSubscribersOnAllNodes", storyTopicPublishOnAnyNodeReachesSubscribersOnAllNodes},
	{"PublishOnTheSubscribersOwnNodeIsDeliveredOnce", storyPublishOnTheSubscribersOwnNodeIsDeliveredOnce},
	{"BroadcastReachesEveryConnectionInTheCluster", storyBroadcastReachesEveryConnectionInTheCluster},
	{"PresenceIsTheSameFromEveryNodeAndFollowsConnections", storyPresenceIsTheSameFromEveryNodeAndFollowsConnections},
	{"ClusterListsEveryLiveNode", storyClusterListsEveryLiveNode},
	{"DisconnectClosesTheKeysConnectionsOnEveryNode", storyDisconnectClosesTheKeysConnectionsOnEveryNode},
}

func TestClusterStories(t *testing.T) {
	for _, start := range []func(t *testing.T) redisTopology{singleRedis, redisCluster} {
		topo := start(t)
		t.Run(topo.name, func(t *testing.T) {
			for _, story := range clusterStories {
				t.Run(story.name, func(t *testing.T) {
					topo.flush(t)
					story.run(t, topo)
				})
			}
		})
	}
}

func storySendOnOneNodeReachesEveryConnectionOfTheKeyOnOtherNodesAndNoOtherKey(t *testing.T, topo redisTopology) {
	a, b, c := threeNodesOn(t, topo)
	phone := dial(t, b, "key=u1")
	tablet := dial(t, b, "key=u1")
	laptop := dial(t, c, "key=u1")
	other := dial(t, c, "key=u2")

	out := sendJSON(t, a, `{"key":"u1","data":{"item":"sword"}}`)

	if got := strs(out["online"]); !slices.Equal(got, []string{"u1"}) {
		t.Errorf("online = %v, want [u1]", got)
	}
	if _, ok := out["connections"]; ok {
		t.Errorf("the answer claims a connection count, which herald does not learn on the send path: %v", out)
	}
	for name, cl := range map[string]*client{"phone": phone, "tablet": tablet, "laptop": laptop} {
		f := cl.next()
		if f.ID != out["id"] || f.Key != "u1" || string(f.Data) != `{"item":"sword"}` || f.TS == 0 || f.Topic != "" {
			t.Errorf("%s received %+v, want the send %v for u1", name, f, out["id"])
		}
	}
	other.nothing(200 * time.Millisecond)
}

func storyMultiKeySendSaysWhichKeysWereOnline(t *testing.T, topo redisTopology) {
	a, b, c := threeNodesOn(t, topo)
	onA := dial(t, a, "key=local")
	onB := dial(t, b, "key=u1")
	onC := dial(t, c, "key=u2")

	out := sendJSON(t, a, `{"keys":["local","u1","u2","nobody","u1"],"data":"hi"}`)

	if got := strs(out["online"]); !slices.Equal(got, []string{"local", "u1", "u2"}) {
		t.Errorf("online = %v, want [local u1 u2]", got)
	}
	if got := strs(out["offline"]); !slices.Equal(got, []string{"nobody"}) {
		t.Errorf("offline = %v, want [nobody]", got)
	}
	for key, cl := range map[string]*client{"local": onA, "u1": onB, "u2": onC} {
		if f := cl.next(); f.Key != key || string(f.Data) != `"hi"` {
			t.Errorf("client of %s received %+v", key, f)
		}
		cl.nothing(100 * time.Millisecond) // u1 listed twice, delivered once
	}
}

func storySendToAnOfflineKeyIsReportedNotSilentlyDropped(t *testing.T, topo redisTopology) {
	a, _, _ := threeNodesOn(t, topo)
	out := sendJSON(t, a, `{"key":"ghost","data":1}`)
	if got := strs(out["offline"]); !slices.Equal(got, []string{"ghost"}) || len(strs(out["online"])) != 0 {
		t.Fatalf("send to an offline key answered %v, want it listed offline", out)
	}
}

func storyTopicPublishOnAnyNodeReachesSubscribersOnAllNodes(t *testing.T, topo redisTopology) {
	a, b, c := threeNodesOn(t, topo)
	boardB := dial(t, b, "key=screen1&topics=board")
	boardC := dial(t, c, "key=screen2&topics=news,board")
	notSubscribed := dial(t, c, "key=u9")

	subscribers := func() int64 { return topo.subscribers(t, "herald:topic:board") }
	if got := subscribers(); got != 2 {
		t.Fatalf("nodes subscribed to board in Redis = %d, want 2 (b and c, not a)", got)
	}

	status, out := post(t, a.URL("/v1/topics/board"), "application/json", `{"data":{"text":"fix the fountain"}}`)
	if status != http.StatusOK || out["nodes"] != float64(2) {
		t.Fatalf("publish: %d %v, want 200 reaching 2 nodes", status, out)
	}
	for name, cl := range map[string]*client{"b": boardB, "c": boardC} {
		if f := cl.next(); f.Topic != "board" || f.Key != "" || string(f.Data) != `{"text":"fix the fountain"}` {
			t.Errorf("board on %s received %+v", name, f)
		}
	}
	notSubscribed.nothing(200 * time.Millisecond)

	// When the last subscriber on a node leaves, the node unsubscribes.
	boardB.ws.Close(websocket.StatusNormalClosure, "bye")
	wait.Until(t, 5*time.Second, "b unsubscribed from board", func() bool { return subscribers() == 1 })
}

func storyPublishOnTheSubscribersOwnNodeIsDeliveredOnce(t *testing.T, topo redisTopology) {
	a, _, _ := threeNodesOn(t, topo)
	board := dial(t, a, "key=screen&topics=board")
	post(t, a.URL("/v1/topics/board"), "text/plain", "hello")
	if f := board.next(); string(f.Data) != `"hello"` {
		t.Fatalf("received %+v", f)
	}
	board.nothing(200 * time.Millisecond)
}

func storyBroadcastReachesEveryConnectionInTheCluster(t *testing.T, topo redisTopology) {
	a, b, c := threeNodesOn(t, topo)
	clients := []*client{dial(t, a, "key=u1"), dial(t, b, "key=u2"), dial(t, c, "key=u3&topics=board"), dial(t, c, "key=u3")}
	status, out := post(t, b.URL("/v1/broadcast"), "application/json", `{"data":"maintenance at noon"}`)
	if status != http.StatusOK || out["nodes"] != float64(3) {
		t.Fatalf("broadcast: %d %v, want 200 reaching 3 nodes", status, out)
	}
	for i, cl := range clients {
		if f := cl.next(); string(f.Data) != `"maintenance at noon"` || f.Key != "" || f.Topic != "" {
			t.Errorf("client %d received %+v", i, f)
		}
		cl.nothing(50 * time.Millisecond)
	}
}

func storyPresenceIsTheSameFromEveryNodeAndFollowsConnections(t *testing.T, topo redisTopology) {
	a, b, c := threeNodesOn(t, topo)
	first := dial(t, b, "key=u1")
	dial(t, c, "key=u1")
	dial(t, c, "key=u1")

	for _, n := range []*testNode{a, b, c} {
		p := presenceOf(t, n, "u1")
		if p["online"] != true || p["connections"] != float64(3) || !slices.Equal(strs(p["nodes"]), []string{"b", "c"}) {
			t.Errorf("presence of u1 seen from %s = %v, want 3 connections on b and c", n.ID, p)
		}
	}
	first.ws.Close(websocket.StatusNormalClosure, "")
	wait.Until(t, 5*time.Second, "u1 left b", func() bool {
		return slices.Equal(strs(presenceOf(t, a, "u1")["nodes"]), []string{"c"})
	})
	if p := presenceOf(t, a, "nobody"); p["online"] != false || p["connections"] != float64(0) || len(strs(p["nodes"])) != 0 {
		t.Errorf("presence of an unknown key = %v", p)
	}
}

func storyClusterListsEveryLiveNode(t *testing.T, topo redisTopology) {
	a, b, c := threeNodesOn(t, topo)
	dial(t, b, "key=u1")
	status, out := get(t, a.URL("/v1/cluster"))
	if status != http.StatusOK {
		t.Fatalf("cluster: %d %v", status, out)
	}
	nodes, _ := out["nodes"].([]any)
	var ids []string
	for _, x := range nodes {
		m := x.(map[string]any)
		ids = append(ids, m["id"].(string))
		if m["address"] == "" || m["started"] == "" {
			t.Errorf("node entry %v lacks address or start time", m)
		}
	}
	if !slices.Equal(ids, []string{"a", "b", "c"}) {
		t.Fatalf("cluster nodes = %v, want a b c", ids)
	}
	_ = c
}

func storyDisconnectClosesTheKeysConnectionsOnEveryNode(t *testing.T, topo redisTopology) {
	a, b, c := threeNodesOn(t, topo)
	onB, onC := dial(t, b, "key=u1"), dial(t, c, "key=u1")
	bystander := dial(t, c, "key=u2")
	status, out := do(t, http.MethodDelete, a.URL("/v1/connections/u1"), "", "")
	if status != http.StatusOK || out["nodes"] != float64(2) {
		t.Fatalf("disconnect: %d %v", status, out)
	}
	for name, cl := range map[string]*client{"b": onB, "c": onC} {
		if code := cl.closeStatus(); code != protocol.CloseDisconnected {
			t.Errorf("client on %s closed with %d, want %d", name, code, protocol.CloseDisconnected)
		}
	}
	wait.Until(t, 5*time.Second, "u1 offline", func() bool { return presenceOf(t, a, "u1")["online"] == false })
	sendJSON(t, a, `{"key":"u2","data":1}`)
	bystander.next()
}

func TestCleanShutdownClosesClientsWith1012AndClearsPresenceAtOnce(t *testing.T) {
	_, a, b, _ := threeNodes(t)
	clients := []*client{dial(t, b, "key=u1"), dial(t, b, "key=u2&topics=board")}

	b.stop()

	for i, cl := range clients {
		if code := cl.closeStatus(); code != protocol.CloseServiceRestart {
			t.Errorf("client %d closed with %d, want 1012", i, code)
		}
	}
	// No waiting for a TTL: b removed its entries before it returned.
	for _, key := range []string{"u1", "u2"} {
		if p := presenceOf(t, a, key); p["online"] != false {
			t.Errorf("%s still online after b shut down: %v", key, p)
		}
	}
	_, out := get(t, a.URL("/v1/cluster"))
	if len(out["nodes"].([]any)) != 2 {
		t.Errorf("cluster after b left = %v, want a and c", out)
	}
}

func TestDrainingNodeRefusesNewConnectionsAndReadsNotReady(t *testing.T) {
	r := redistest.Start(t)
	n := startNode(t, "a", r.URL(), func(c *node.Config) { c.DrainWindow = 3 * time.Second })
	// Two clients: the second is closed late in the window, keeping the
	// node draining while we look.
	dial(t, n, "key=u1")
	dial(t, n, "key=u2")
	go n.stop()
	wait.Until(t, 5*time.Second, "readyz 503 while draining", func() bool {
		status, out := get(t, n.URL("/readyz"))
		return status == http.StatusServiceUnavailable && errorCode(out) == "not_ready"
	})
	status, out := get(t, n.URL("/v1/ws?key=late"))
	if status != http.StatusServiceUnavailable {
		t.Fatalf("new connection while draining: %d %v, want 503", status, out)
	}
}

func TestRedisRestartUnderRunningNodesHealsWithoutRestartingThem(t *testing.T) {
	r, a, b, _ := threeNodes(t)
	player := dial(t, b, "key=u1")
	board := dial(t, b, "key=screen&topics=board")

	r.Kill()
	wait.Until(t, 10*time.Second, "a reads not ready", func() bool {
		status, _ := get(t, a.URL("/readyz"))
		return status == http.StatusServiceUnavailable
	})
	status, out := post(t, a.URL("/v1/send"), "application/json", `{"key":"u1","data":1}`)
	if status != http.StatusServiceUnavailable || errorCode(out) != "unavailable" {
		t.Fatalf("send while Redis is down: %d %v, want 503 unavailable", status, out)
	}

	r.Restart() // empty: every presence entry and subscription is gone
	waitReady(t, a)
	waitReady(t, b)

	// The player never reconnected, yet b wrote its presence again.
	out = sendJSON(t, a, `{"key":"u1","data":"after restart"}`)
	if got := strs(out["online"]); !slices.Equal(got, []string{"u1"}) {
		t.Fatalf("u1 after Redis restart: %v", out)
	}
	if f := player.next(); string(f.Data) != `"after restart"` {
		t.Fatalf("player received %+v", f)
	}
	post(t, a.URL("/v1/topics/board"), "text/plain", "still here")
	if f := board.next(); string(f.Data) != `"still here"` {
		t.Fatalf("board received %+v", f)
	}
}

func TestKeysReadOnlineWithinAHeartbeatAfterRedisWasUnreachableLongerThanTheTTL(t *testing.T) {
	const ttl = time.Second
	r := redistest.Start(t)
	// The clients stay through the outage: the fence, which would close
	// them after a TTL, is another story
	// (TestANodeThatLostRedisClosesItsClientsWith1013SoTheyReconnectElsewhere).
	fast := func(c *node.Config) { c.PresenceTTL, c.FenceAfter = ttl, time.Minute }
	a, b := startNode(t, "a", r.URL(), fast), startNode(t, "b", r.URL(), fast)
	dial(t, a, "key=u1")
	dial(t, b, "key=u2")
	online := func(key string) bool {
		for _, n := range []*testNode{a, b} {
			status, out := get(t, n.URL("/v1/presence/"+key))
			if status != http.StatusOK || out["online"] != true {
				return false
			}
		}
		return true
	}
	wait.Until(t, 5*time.Second, "u1 and u2 online", func() bool { return online("u1") && online("u2") })

	// Redis hangs (a partition, a stalled VM) for well over the TTL: every
	// node's liveness runs out meanwhile, and the first node back reaps the
	// others.
	r.Pause()
	time.Sleep(3 * ttl)
	r.Resume()
	back := time.Now()
	wait.Until(t, 10*time.Second, "u1 and u2 online again", func() bool { return online("u1") && online("u2") })
	t.Logf("both keys read online %v after Redis came back (heartbeat every %v)", time.Since(back).Round(time.Millisecond), ttl/3)
	// And they stay online: nothing reaped them after they were rewritten.
	for range 5 {
		time.Sleep(ttl / 2)
		if !online("u1") || !online("u2") {
			t.Fatal("a key went offline again after Redis came back")
		}
	}
}

func TestClientThatStopsReadingIsDroppedWhileOthersKeepReceiving(t *testing.T) {
	_, a, b, _ := threeNodes(t, func(c *node.Config) {
		c.QueueMessages = 16
		c.WriteTimeout = 20 * time.Second
	})
	slow := dialPaused(t, b, "key=slow")
	fast := dial(t, b, "key=fast")
	data := `"` + strings.Repeat("x", 60<<10) + `"`

	sent := 0
	for ; sent < 1000; sent++ {
		out := sendJSON(t, a, `{"keys":["slow","fast"],"data":`+data+`}`)
		if f := fast.next(); f.ID != out["id"] {
			t.Fatalf("fast client received %s, want %s", f.ID, out["id"])
		}
		if slices.Contains(strs(out["offline"]), "slow") {
			break
		}
	}
	if sent == 1000 {
		t.Fatal("the slow client was never dropped")
	}
	t.Logf("slow client dropped after %d sends of 60 KiB", sent)
	if p := presenceOf(t, a, "slow"); p["online"] != false {
		t.Fatalf("dropped client still online: %v", p)
	}
	// Once it reads again, it finds the close reason behind what was queued.
	slow.startReading()
	if code := slow.closeStatus(); code != protocol.CloseSlowConsumer {
		t.Errorf("slow client closed with %d, want %d", code, protocol.CloseSlowConsumer)
	}
	_, metrics := get(t, b.URL("/metrics"))
	if !strings.Contains(metrics["body"].(string), `herald_drops_total{reason="slow_consumer"} 1`) {
		t.Errorf("slow consumer drop not counted in metrics")
	}
	// Others are unaffected.
	sendJSON(t, a, `{"key":"fast","data":"still fine"}`)
	if f := fast.next(); string(f.Data) != `"still fine"` {
		t.Fatalf("fast client received %+v", f)
	}
}

func TestAClientThatStopsAnsweringPingsIsClosedAndGoesOffline(t *testing.T) {
	r := redistest.Start(t)
	n := startNode(t, "a", r.URL(), func(c *node.Config) {
		c.PingInterval = 100 * time.Millisecond
		c.WriteTimeout = 300 * time.Millisecond
	})
	dialPaused(t, n, "key=frozen") // never reads, so never answers a ping
	wait.Until(t, 5*time.Second, "frozen client offline", func() bool {
		return presenceOf(t, n, "frozen")["online"] == false
	})
}

// A client whose WebSocket library hides protocol pings (.NET's) asks with a
// ping of its own and gets a pong: proof that the node and its queue live.
func TestAnApplicationPingIsAnsweredWithAPong(t *testing.T) {
	n := startNode(t, "a", "")
	c := dial(t, n, "key=u1")
	if err := c.ws.Write(context.Background(), websocket.MessageText, []byte(`{"type":"ping"}`)); err != nil {
		t.Fatal(err)
	}
	if b := c.nextRaw(); string(b) != `{"type":"pong"}` {
		t.Fatalf("answer to a ping: %s", b)
	}
}
