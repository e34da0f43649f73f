package node_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/pkg/node"
)

// postJSON posts a JSON body and returns the status, the decoded answer
// and its headers.
func postJSON(t *testing.T, url, body string) (int, map[string]any, http.Header) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, decode(resp.Body), resp.Header
}

// storedSend posts a stored send to keys with an Idempotency-Key.
func storedSend(t *testing.T, n *testNode, keys []string, data, idem string) (int, map[string]any, http.Header) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"keys": keys, "data": json.RawMessage(data), "store": true})
	req, _ := http.NewRequest(http.MethodPost, n.URL("/v1/send"), strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", idem)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, decode(resp.Body), resp.Header
}

// keyResults are the per-key results of a send's answer (results) or of a
// partially_stored error (error.results): key -> {id, status}.
func keyResults(out map[string]any) map[string]map[string]any {
	res, _ := out["results"].(map[string]any)
	if e, ok := out["error"].(map[string]any); ok {
		res, _ = e["results"].(map[string]any)
	}
	got := map[string]map[string]any{}
	for k, v := range res {
		got[k], _ = v.(map[string]any)
	}
	return got
}

// Redis fills up (maxmemory, noeviction) in the middle of a stored send to
// many keys: the keys stored before it filled got the message, and the
// answer says per key which ones did, instead of "nothing was sent". Once
// Redis has room again, the sender's retry with the same Idempotency-Key
// stores and sends the rest, and the keys stored the first time keep their
// one message.
func TestAStoredSendThatFillsRedisSaysPerKeyWhatWasStoredAndARetryStoresTheRest(t *testing.T) {
	r := redistest.StartWith(t, "--maxmemory-policy", "noeviction")
	rdb := r.Client()
	a := startNode(t, "a", r.URL())
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprintf("crate-%d", i)
	}
	// Clients of the first key and of the last ten: Redis frees memory as
	// it works through the pipeline (its query buffer shrinks), so which
	// of the later keys fit is not a clean cut; each client must get what
	// its key's answer says.
	first := dial(t, a, "key="+keys[0])
	lasts := map[string]*client{}
	for _, k := range keys[990:] {
		lasts[k] = dial(t, a, "key="+k)
	}
	// Room for a few hundred new inboxes (each takes about 5 KB), not 1000.
	if err := rdb.ConfigSet(t.Context(), "maxmemory", strconv.FormatInt(r.UsedMemory(t)+1<<20, 10)).Err(); err != nil {
		t.Fatal(err)
	}
	data := `{"loot":"` + strings.Repeat("gold ", 200) + `"}`

	status, out, h := storedSend(t, a, keys, data, "drop-1")
	if status != http.StatusServiceUnavailable || errorCode(out) != "partially_stored" || h.Get("Retry-After") == "" {
		t.Fatalf("send that filled Redis: %d %v (Retry-After %q), want 503 partially_stored", status, errorCode(out), h.Get("Retry-After"))
	}
	results := keyResults(out)
	stored := 0
	for _, k := range keys {
		switch res := results[k]; res["status"] {
		case "stored":
			stored++
			if res["id"] == nil {
				t.Fatalf("%s stored without an id: %v", k, res)
			}
		case "not_stored":
			if res["id"] != nil {
				t.Fatalf("%s not stored, yet has an id: %v", k, res)
			}
		default:
			t.Fatalf("%s: result %v", k, res)
		}
	}
	if stored == 0 || stored == len(keys) {
		t.Fatalf("%d of %d keys stored, want some", stored, len(keys))
	}
	if results[keys[0]]["status"] != "stored" {
		t.Fatalf("first key %v: want it stored, Redis had room then", results[keys[0]])
	}
	// The stored keys' clients got it; the others got nothing.
	firstID := results[keys[0]]["id"]
	if f := first.next(); f.ID != firstID || string(f.Data) != data {
		t.Fatalf("the first key's client got %+v, want %v", f, firstID)
	}
	missing := 0
	for k, cl := range lasts {
		if results[k]["status"] == "stored" {
			if f := cl.next(); f.ID != results[k]["id"] {
				t.Fatalf("%s was stored as %v, its client got %+v", k, results[k]["id"], f)
			}
			continue
		}
		missing++
		cl.nothing(100 * time.Millisecond)
	}
	t.Logf("%d of %d keys stored; %d of the last ten not", stored, len(keys), missing)

	// Room again: the retry stores only what was missing, and is answered
	// as a whole.
	if err := rdb.ConfigSet(t.Context(), "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	// The node reads Redis's memory every second: until its next reading
	// it still refuses with storage_full (nothing stored), and the sender
	// retries as it is told.
	var again map[string]any
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		status, again, h = storedSend(t, a, keys, data, "drop-1")
		if status != http.StatusServiceUnavailable || errorCode(again) != "storage_full" || time.Now().After(deadline) {
			break
		}
	}
	if status != http.StatusOK || h.Get("Idempotent-Replayed") != "" {
		t.Fatalf("retry: %d %v replayed=%q, want 200 carried out", status, again, h.Get("Idempotent-Replayed"))
	}
	retried := keyResults(again)
	for _, k := range keys {
		if retried[k]["status"] != "stored" || retried[k]["id"] == nil {
			t.Fatalf("retry: %s %v", k, retried[k])
		}
		if results[k]["status"] == "stored" && retried[k]["id"] != results[k]["id"] {
			t.Fatalf("retry: %s has id %v, stored the first time as %v", k, retried[k]["id"], results[k]["id"])
		}
		if n, err := rdb.XLen(t.Context(), "herald:{"+k+"}:inbox").Result(); err != nil || n != 1 {
			t.Fatalf("inbox of %s holds %d messages (%v), want 1", k, n, err)
		}
	}
	// The retry sends only what it stored now.
	for k, cl := range lasts {
		if results[k]["status"] == "stored" {
			cl.nothing(100 * time.Millisecond)
			continue
		}
		if f := cl.next(); f.ID != retried[k]["id"] || string(f.Data) != data {
			t.Fatalf("%s's client got %+v after the retry, want %v", k, f, retried[k]["id"])
		}
	}
	first.nothing(300 * time.Millisecond)
}

// A sender storing faster than --store-rate allows (counted in what its
// sends cost Redis) is refused 429 store_rate_limited with a Retry-After,
// before anything is stored; its live sends still go out, and a send that
// could never fit in --store-burst is refused 413 store_too_large.
func TestAStoredSendOverTheSendersStoredBytesRateIsRefusedBeforeItIsStored(t *testing.T) {
	r := redistest.Start(t)
	rdb := r.Client()
	// Bursts of about three 1 KB single-key stored sends; no refill to
	// speak of within the test.
	a := startNode(t, "a", r.URL(), func(c *node.Config) { c.StoreRate, c.StoreBurst = 1, 20000 })
	player := dial(t, a, "key=p1")
	data := `"` + strings.Repeat("x", 1000) + `"`
	req := `{"key":"p1","data":` + data + `,"store":true}`
	for range 3 {
		sendJSON(t, a, req)
		player.next()
	}
	status, out, h := postJSON(t, a.URL("/v1/send"), req)
	if status != http.StatusTooManyRequests || errorCode(out) != "store_rate_limited" || h.Get("Retry-After") == "" {
		t.Fatalf("fourth stored send: %d %v (Retry-After %q), want 429 store_rate_limited", status, out, h.Get("Retry-After"))
	}
	player.nothing(200 * time.Millisecond)
	if n, _ := rdb.XLen(t.Context(), "herald:{p1}:inbox").Result(); n != 3 {
		t.Fatalf("the inbox holds %d messages, want the 3 allowed", n)
	}
	// Live sends cost Redis nothing to keep: they still go out.
	sendJSON(t, a, `{"key":"p1","data":"live"}`)
	if f := player.next(); string(f.Data) != `"live"` {
		t.Fatalf("live send: client got %+v", f)
	}
	// 100 keys cost more than the whole burst: never storable at once.
	keys := make([]string, 100)
	for i := range keys {
		keys[i] = fmt.Sprintf("p%d", i)
	}
	body, _ := json.Marshal(map[string]any{"keys": keys, "data": "hi", "store": true})
	status, out, _ = postJSON(t, a.URL("/v1/send"), string(body))
	if status != http.StatusRequestEntityTooLarge || errorCode(out) != "store_too_large" {
		t.Fatalf("send to 100 keys: %d %v, want 413 store_too_large", status, out)
	}
	if n, _ := rdb.Exists(t.Context(), "herald:{p2}:inbox").Result(); n != 0 {
		t.Fatal("a refused send stored something")
	}
}

// In a batch each stored item counts against the sender's stored bytes:
// the items past its burst are refused one by one, and the others are
// carried out, so a batch stores at most --store-burst at once.
func TestABatchOfStoredSendsStoresNoMoreThanTheSendersBurst(t *testing.T) {
	r := redistest.Start(t)
	a := startNode(t, "a", r.URL(), func(c *node.Config) { c.StoreRate, c.StoreBurst = 1, 20000 })
	data := `"` + strings.Repeat("x", 1000) + `"`
	var items []string
	for i := range 5 {
		items = append(items, fmt.Sprintf(`{"key":"b%d","data":%s,"store":true,"idempotency_key":"i%d"}`, i, data, i))
	}
	items = append(items, `{"key":"b9","data":"live"}`)
	status, out, _ := postJSON(t, a.URL("/v1/batch"), `{"items":[`+strings.Join(items, ",")+`]}`)
	if status != http.StatusOK {
		t.Fatalf("batch: %d %v", status, out)
	}
	results, _ := out["results"].([]any)
	stored, limited := 0, 0
	for i, res := range results {
		item, _ := res.(map[string]any)
		switch {
		case item["status"] == float64(http.StatusOK):
			if i < 5 {
				stored++
			}
		case item["status"] == float64(http.StatusTooManyRequests) && errorCode(item) == "store_rate_limited":
			limited++
		default:
			t.Fatalf("item %d: %v", i, item)
		}
	}
	if stored != 3 || limited != 2 || results[5].(map[string]any)["status"] != float64(http.StatusOK) {
		t.Fatalf("%d stored, %d refused, live item %v: want 3 stored (the burst), 2 refused, the live one sent", stored, limited, results[5])
	}
	n := 0
	for i := range 5 {
		n += int(r.Client().Exists(t.Context(), fmt.Sprintf("herald:{b%d}:inbox", i)).Val())
	}
	if n != 3 {
		t.Fatalf("%d inboxes hold the message, want 3", n)
	}
}
