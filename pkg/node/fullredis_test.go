package node_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/internal/wait"
	"github.com/herald-push/herald/pkg/node"
)

// shortTTL makes "several TTLs" a few seconds; board keeps history.
func shortTTL(c *node.Config) { c.PresenceTTL, c.HistoryTopics = time.Second, []string{"board"} }

// fillWithStoredSends posts stored sends of about 4 KB through n until one
// is refused, and returns how many were accepted and the refusal.
func fillWithStoredSends(t *testing.T, n *testNode) (int, int, map[string]any, http.Header) {
	t.Helper()
	data := `"` + strings.Repeat("hoard ", 700) + `"`
	for i := range 5000 {
		status, out, h := postJSON(t, n.URL("/v1/send"), fmt.Sprintf(`{"key":"hoard-%d","data":%s,"store":true}`, i%40, data))
		if status != http.StatusOK {
			return i, status, out, h
		}
	}
	t.Fatal("5000 stored sends of 4 KB were all accepted: Redis never filled")
	return 0, 0, nil, nil
}

func errorMessage(out map[string]any) string {
	e, _ := out["error"].(map[string]any)
	msg, _ := e["message"].(string)
	return msg
}

// dialAndClose opens a WebSocket to n and closes it: whether new clients
// are accepted.
func dialAndClose(n *testNode, query string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+n.Addr+"/v1/ws?"+query, nil)
	if err != nil {
		return err
	}
	return ws.Close(websocket.StatusNormalClosure, "")
}

// metric reads one unlabelled metric of n.
func metric(t *testing.T, n *testNode, name string) float64 {
	t.Helper()
	resp, err := http.Get(n.URL("/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("no %s in /metrics", name)
	return 0
}

// A backend stores messages into a Redis with a small maxmemory and
// noeviction until it fills: past the high-water mark stored sends are
// refused 503 storage_full with Retry-After, before Redis itself is full.
// The headroom left keeps the cluster alive for several presence TTLs:
// both nodes stay ready and listed, a connected key reads online and its
// plain sends arrive, new WebSockets are accepted. History posts and
// Idempotency-Key requests, which grow Redis too, are refused the same
// way, while a retry of a request answered before gets its answer. Once
// Redis has room again stored sends are taken at once.
func TestAFullRedisRefusesStoredSendsAtTheHighWaterMarkWhilePresenceAndPlainSendsKeepWorking(t *testing.T) {
	r := redistest.StartWith(t, "--maxmemory-policy", "noeviction")
	rdb := r.Client()
	// About 3 MB of room, a tenth of it past the mark, set before the
	// nodes start, as an operator would.
	maxmemory := r.UsedMemory(t) + 3<<20
	if err := rdb.ConfigSet(t.Context(), "maxmemory", strconv.FormatInt(maxmemory, 10)).Err(); err != nil {
		t.Fatal(err)
	}
	a := startNode(t, "a", r.URL(), shortTTL)
	b := startNode(t, "b", r.URL(), shortTTL)
	holder := dial(t, b, "key=u1")
	status, before, _ := storedSend(t, a, []string{"u1"}, `"order 1"`, "order-1")
	if status != http.StatusOK {
		t.Fatalf("stored send before filling: %d %v", status, before)
	}
	holder.next()

	// Between two readings of Redis's memory a node counts what its own
	// stored sends may have added, generously (inbox.StoredCost), so it
	// may refuse a little early; the next reading lets it go on. Fill until
	// the readings themselves reach the mark.
	var accepted int
	var out map[string]any
	var h http.Header
	for round := 0; ; round++ {
		var n int
		n, status, out, h = fillWithStoredSends(t, a)
		accepted += n
		ratio := metric(t, a, "herald_redis_memory_ratio")
		if ratio >= 0.9 || errorCode(out) != "storage_full" || round == 30 {
			break
		}
		// With two nodes sharing Redis each counts its own writes twice
		// between readings: it may stop a send short of the mark, until
		// the readings no longer move.
		moved := false
		for end := time.Now().Add(3 * time.Second); time.Now().Before(end) && !moved; time.Sleep(50 * time.Millisecond) {
			moved = metric(t, a, "herald_redis_memory_ratio") != ratio
		}
		if !moved {
			break
		}
	}
	msg := errorMessage(out)
	if status != http.StatusServiceUnavailable || errorCode(out) != "storage_full" || h.Get("Retry-After") != "10" ||
		!strings.Contains(msg, "high-water mark") {
		t.Fatalf("after %d stored sends: %d %v (Retry-After %q), want 503 storage_full at the high-water mark with Retry-After 10",
			accepted, status, out, h.Get("Retry-After"))
	}
	if used := r.UsedMemory(t); used >= maxmemory {
		t.Fatalf("Redis uses %d bytes of its %d: it filled before herald stopped storing", used, maxmemory)
	}
	// Each node counts its writes since the last reading once per node
	// sharing Redis, so it stops a send's cost or two short of the mark,
	// where a small send may still fit after the next reading. Bring the
	// mark to Redis, as an operator lowering maxmemory would: Redis is then
	// past the mark in every node's reading, yet below its maxmemory.
	used := r.UsedMemory(t)
	if err := rdb.ConfigSet(t.Context(), "maxmemory", strconv.FormatInt(used*100/93, 10)).Err(); err != nil {
		t.Fatal(err)
	}
	maxmemory = used * 100 / 93
	for _, n := range []*testNode{a, b} {
		wait.Until(t, 3*time.Second, "node "+n.ID+" reads Redis past the mark", func() bool {
			return metric(t, n, "herald_redis_memory_ratio") >= 0.9
		})
	}
	if ratio := metric(t, a, "herald_redis_memory_ratio"); ratio < 0.9 || ratio >= 1 {
		t.Fatalf("herald_redis_memory_ratio is %v, want just past the 0.9 mark", ratio)
	}

	refusals := []struct{ what, path, body, idem string }{
		{"a stored send through b", "/v1/send", `{"key":"u1","data":"more","store":true}`, ""},
		{"a send waiting for delivery", "/v1/send", `{"key":"u1","data":"more","wait":"delivered"}`, ""},
		{"a post to a history topic", "/v1/topics/board", `{"data":"bench"}`, ""},
		{"a plain send with an Idempotency-Key", "/v1/send", `{"key":"u1","data":"once"}`, "plain-1"},
	}
	for _, c := range refusals {
		req, _ := http.NewRequest(http.MethodPost, b.URL(c.path), strings.NewReader(c.body))
		req.Header.Set("Content-Type", "application/json")
		if c.idem != "" {
			req.Header.Set("Idempotency-Key", c.idem)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		out := decode(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || errorCode(out) != "storage_full" || resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s: %d %v, want 503 storage_full with Retry-After", c.what, resp.StatusCode, out)
		}
	}
	holder.nothing(200 * time.Millisecond)
	status, again, h := storedSend(t, a, []string{"u1"}, `"order 1"`, "order-1")
	if status != http.StatusOK || h.Get("Idempotent-Replayed") != "true" || keyResults(again)["u1"]["id"] != keyResults(before)["u1"]["id"] {
		t.Fatalf("retry of a send answered before Redis filled: %d %v replayed=%q, want its first answer", status, again, h.Get("Idempotent-Replayed"))
	}

	// Four TTLs in the headroom: heartbeats go on, so everything else does.
	until := time.Now().Add(4 * time.Second)
	for i := 0; time.Now().Before(until); i++ {
		for _, n := range []*testNode{a, b} {
			if status, out := get(t, n.URL("/readyz")); status != http.StatusOK {
				t.Fatalf("%s /readyz %d %v with Redis at its high-water mark", n.ID, status, out)
			}
			if status, out := get(t, n.URL("/v1/cluster")); status != http.StatusOK || len(out["nodes"].([]any)) != 2 {
				t.Fatalf("%s /v1/cluster: %d %v, want both nodes", n.ID, status, out)
			}
			if err := dialAndClose(n, fmt.Sprintf("key=newcomer-%d", i)); err != nil {
				t.Fatalf("a new WebSocket to %s: %v", n.ID, err)
			}
		}
		if p := presenceOf(t, a, "u1"); p["online"] != true {
			t.Fatalf("u1 reads %v with Redis at its high-water mark", p)
		}
		data := fmt.Sprintf(`"live %d"`, i)
		out := sendJSON(t, a, `{"key":"u1","data":`+data+`}`)
		if strs(out["online"])[0] != "u1" {
			t.Fatalf("plain send %d: %v", i, out)
		}
		if f := holder.next(); string(f.Data) != data {
			t.Fatalf("u1 got %s, want %s", f.Data, data)
		}
		time.Sleep(200 * time.Millisecond) // pacing the checks, not waiting for a condition
	}

	// Room again: the next reading lets stored sends in.
	if err := rdb.ConfigSet(t.Context(), "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	wait.Until(t, 5*time.Second, "stored sends accepted again", func() bool {
		status, _ := post(t, a.URL("/v1/send"), "application/json", `{"key":"u1","data":"after","store":true}`)
		return status == http.StatusOK
	})
	if f := holder.next(); string(f.Data) != `"after"` {
		t.Fatalf("u1 got %s after Redis had room again", f.Data)
	}
}

// Something besides herald fills Redis past its maxmemory (another
// application's keys, a maxmemory lowered by hand). Redis now refuses
// every write that may grow it, heartbeats included: a stored send is
// answered 503 storage_full saying Redis is out of memory (not the generic
// unavailable), and /readyz turns 503 saying why, because the node cannot
// keep its presence (its keys would read offline within a TTL) nor register
// new clients. Once memory is freed the nodes are ready again by
// themselves and stored sends are taken.
func TestARedisFilledPastMaxmemoryByAnotherWriterIsNamedInAnswersAndReadiness(t *testing.T) {
	r := redistest.StartWith(t, "--maxmemory-policy", "noeviction")
	rdb := r.Client()
	a := startNode(t, "a", r.URL(), shortTTL)
	holder := dial(t, a, "key=u1")
	// 4 MB of another application's keys, in values small enough to leave
	// no large buffer behind, then maxmemory below what Redis holds.
	value := strings.Repeat("x", 16<<10)
	for i := range 256 {
		if err := rdb.Set(t.Context(), fmt.Sprintf("someone-elses-cache:%d", i), value, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := rdb.ConfigSet(t.Context(), "maxmemory", strconv.FormatInt(r.UsedMemory(t)-(1<<20), 10)).Err(); err != nil {
		t.Fatal(err)
	}

	status, out, h := postJSON(t, a.URL("/v1/send"), `{"key":"u1","data":"kept?","store":true}`)
	msg := errorMessage(out)
	if status != http.StatusServiceUnavailable || errorCode(out) != "storage_full" || h.Get("Retry-After") == "" ||
		!strings.Contains(msg, "out of memory") {
		t.Fatalf("stored send into a Redis past maxmemory: %d %v (Retry-After %q), want 503 storage_full saying Redis is out of memory",
			status, out, h.Get("Retry-After"))
	}
	status, out, _ = storedSend(t, a, []string{"u1"}, `"once"`, "idem-1")
	if status != http.StatusServiceUnavailable || errorCode(out) != "storage_full" {
		t.Fatalf("idempotent send into a Redis past maxmemory: %d %v, want 503 storage_full", status, out)
	}
	holder.nothing(200 * time.Millisecond)
	wait.Until(t, 5*time.Second, "/readyz says Redis is out of memory", func() bool {
		status, out := get(t, a.URL("/readyz"))
		return status == http.StatusServiceUnavailable && strings.Contains(errorMessage(out), "out of memory")
	})

	for i := range 256 {
		if err := rdb.Del(t.Context(), fmt.Sprintf("someone-elses-cache:%d", i)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	waitReady(t, a)
	wait.Until(t, 5*time.Second, "stored sends accepted again", func() bool {
		status, _ := post(t, a.URL("/v1/send"), "application/json", `{"key":"u1","data":"after","store":true}`)
		return status == http.StatusOK
	})
	if f := holder.next(); string(f.Data) != `"after"` {
		t.Fatalf("u1 got %s once Redis had room", f.Data)
	}
}

// Two nodes take big stored batches at the same moment, into a Redis a few
// megabytes from its maxmemory. Between two readings of Redis's memory
// each node counts what it stored once for every node sharing Redis, so
// the two together stop at the high-water mark instead of each spending
// the whole headroom: Redis never reaches maxmemory, and no heartbeat is
// refused for memory. Before, two nodes racing ran Redis past maxmemory
// and both nodes' heartbeats failed with OOM.
func TestTwoNodesRacingWithBigStoredBatchesStopAtTheMarkTogether(t *testing.T) {
	r := redistest.StartWith(t, "--maxmemory-policy", "noeviction")
	rdb := r.Client()
	maxmemory := r.UsedMemory(t) + 12<<20
	if err := rdb.ConfigSet(t.Context(), "maxmemory", strconv.FormatInt(maxmemory, 10)).Err(); err != nil {
		t.Fatal(err)
	}
	a := startNode(t, "a", r.URL(), shortTTL)
	b := startNode(t, "b", r.URL(), shortTTL)
	// Both nodes know there are two of them once each heartbeated.
	time.Sleep(time.Second)

	data := `"` + strings.Repeat("hoard ", 700) + `"`
	batch := func(who int) string {
		var sb strings.Builder
		sb.WriteString(`{"items":[`)
		for i := range 300 {
			if i > 0 {
				sb.WriteByte(',')
			}
			fmt.Fprintf(&sb, `{"key":"race-%d-%d","data":%s,"store":true}`, who, i%20, data)
		}
		sb.WriteString(`]}`)
		return sb.String()
	}
	var wg sync.WaitGroup
	for range 4 {
		for who, n := range []*testNode{a, a, b, b} {
			wg.Go(func() { postJSON(t, n.URL("/v1/batch"), batch(who)) })
		}
		wg.Wait()
	}
	peak := redisInfoField(t, rdb, "used_memory_peak")
	t.Logf("Redis peaked at %d bytes, maxmemory %d", peak, maxmemory)
	if peak >= maxmemory {
		t.Errorf("Redis reached %d bytes, past its maxmemory of %d: the nodes spent more than the headroom", peak, maxmemory)
	}
	// Redis counts every write it refused for memory, heartbeats included.
	stats, err := rdb.Info(t.Context(), "errorstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(stats, "errorstat_OOM:") {
		t.Errorf("Redis refused writes for memory: %s", strings.TrimSpace(stats))
	}
}

func redisInfoField(t *testing.T, rdb *redis.Client, field string) int64 {
	t.Helper()
	info, err := rdb.Info(t.Context(), "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in INFO memory", field)
	return 0
}
