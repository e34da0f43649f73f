package httpapi_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/herald-push/herald/internal/redistest"
)

// A game server hands a node a batch: sends to players on two nodes, a
// board post, a broadcast, and a few mistakes. Each item is answered on its
// own, in order; the mistakes fail alone.
func TestABatchCarriesOutEachItemOnItsOwnAndAnswersInOrder(t *testing.T) {
	r := redistest.Start(t)
	a := startNode(t, "a", r.URL(), withHistory)
	b := startNode(t, "b", r.URL(), withHistory)
	u1, u2 := dial(t, a, "key=u1"), dial(t, b, "key=u2&topics=board")

	body := `{"items":[
		{"key":"u1","data":{"gold":5}},
		{"keys":["u2","nobody"],"data":"hi","store":true},
		{"key":"bad key","data":1},
		{"topic":"board","data":"post"},
		{"broadcast":true,"data":"all"},
		{"key":"u1","data":"` + strings.Repeat("x", 70<<10) + `"},
		{"key":"u1","topic":"board","data":1},
		{"key":"u1"},
		{"key":"u1","data":1,"priority":9},
		{"topic":"board","data":"again","idempotency_key":"post-1"},
		{"topic":"board","data":"again","idempotency_key":"post-1"}
	]}`
	status, out := post(t, a.URL("/v1/batch"), "application/json", body)
	if status != http.StatusOK {
		t.Fatalf("batch: %d %v", status, out)
	}
	results, _ := out["results"].([]any)
	want := []struct {
		status int
		code   string
	}{{200, ""}, {200, ""}, {400, "invalid_key"}, {200, ""}, {200, ""}, {413, "message_too_large"},
		{400, "invalid_request"}, {400, "missing_data"}, {400, "unknown_field"}, {200, ""}, {200, ""}}
	if len(results) != len(want) {
		t.Fatalf("%d results for %d items: %v", len(results), len(want), out)
	}
	for i, w := range want {
		res := results[i].(map[string]any)
		code := ""
		if e, ok := res["error"].(map[string]any); ok {
			code, _ = e["code"].(string)
		}
		if int(res["status"].(float64)) != w.status || code != w.code {
			t.Errorf("item %d: %v, want %d %q", i, res, w.status, w.code)
		}
	}
	second := results[1].(map[string]any)["result"].(map[string]any)
	if fmt.Sprint(second["online"]) != "[u2]" || fmt.Sprint(second["offline"]) != "[nobody]" {
		t.Errorf("the stored send's answer: %v", second)
	}
	first, again := results[9].(map[string]any)["result"], results[10].(map[string]any)["result"]
	if first.(map[string]any)["id"] != again.(map[string]any)["id"] {
		t.Errorf("an item repeated with its idempotency_key was carried out twice: %v %v", first, again)
	}

	// What reached the clients: u1 its send and the broadcast; u2 its send,
	// the two board posts (the repeat kept once) and the broadcast.
	got := map[string]int{}
	for range 2 {
		got[string(u1.next().Data)]++
	}
	for range 4 {
		got[string(u2.next().Data)]++
	}
	for _, d := range []string{`{"gold":5}`, `"hi"`, `"post"`, `"again"`} {
		if got[d] != 1 {
			t.Errorf("%s arrived %d times, want once (all: %v)", d, got[d], got)
		}
	}
	if got[`"all"`] != 2 {
		t.Errorf("the broadcast reached %d clients, want 2", got[`"all"`])
	}
	u1.nothing(200 * 1e6)
	u2.nothing(200 * 1e6)
}

func TestABatchOverTheLimitOrMalformedIsRefusedWhole(t *testing.T) {
	n := startNode(t, "a", "", func(c *testConfig) { c.MaxBatch = 2 })
	tests := []struct {
		name, body, code string
	}{
		{"too many items", `{"items":[{"key":"u1","data":1},{"key":"u1","data":2},{"key":"u1","data":3}]}`, "too_many_items"},
		{"no items", `{"items":[]}`, "missing_items"},
		{"not JSON", `{"items":[`, "invalid_json"},
		{"an unknown field", `{"items":[{"key":"u1","data":1}],"all":true}`, "unknown_field"},
	}
	for _, tc := range tests {
		status, out := post(t, n.URL("/v1/batch"), "application/json", tc.body)
		if status != http.StatusBadRequest || errorCode(out) != tc.code {
			t.Errorf("%s: %d %v, want 400 %s", tc.name, status, out, tc.code)
		}
	}
}

// With API keys, a batch needs a key, and each item the scope of its kind:
// the game's key may send, not publish or broadcast.
func TestEachBatchItemNeedsTheScopeOfItsKind(t *testing.T) {
	n := startNode(t, "a", "", secured(t))
	body := `{"items":[{"key":"u1","data":1},{"topic":"news","data":1},{"broadcast":true,"data":1}]}`
	if status, out := withKey(t, "POST", n.URL("/v1/batch"), "", body); status != http.StatusUnauthorized || errorCode(out) != "missing_api_key" {
		t.Fatalf("a batch without a key: %d %v", status, out)
	}
	for _, tc := range []struct {
		key  string
		want []int
	}{
		{senderKey, []int{200, 403, 403}},
		{publisherKey, []int{403, 200, 403}},
		{adminKey, []int{403, 200, 200}},
	} {
		status, out := withKey(t, "POST", n.URL("/v1/batch"), tc.key, body)
		if status != http.StatusOK {
			t.Fatalf("batch: %d %v", status, out)
		}
		for i, res := range out["results"].([]any) {
			if got := int(res.(map[string]any)["status"].(float64)); got != tc.want[i] {
				t.Errorf("key %s, item %d: %d, want %d", tc.key[:6], i, got, tc.want[i])
			}
		}
	}
}
