package node_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/herald-push/herald/pkg/node"
)

// postJSONWith posts a JSON body with extra headers.
func postJSONWith(t *testing.T, url, body string, header map[string]string) (int, map[string]any, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, decode(resp.Body), resp.Header
}

// A backend storing big sends to ever new keys on a single node fills its
// --inbox-memory-bytes: the next stored send is refused with its own code
// and a Retry-After, and everything accepted before is still delivered.
func TestAStoredSendBeyondTheSingleNodesMemoryIsRefusedAndNothingAcceptedIsLost(t *testing.T) {
	n := startNode(t, "solo", "", func(c *node.Config) { c.InboxMemoryBytes = 1 << 20 })
	data := `"` + strings.Repeat("x", 60<<10) + `"`
	var accepted []string
	for i := range 100 {
		status, out, h := postJSONWith(t, n.URL("/v1/send"), fmt.Sprintf(`{"key":"u%d","data":%s,"store":true}`, i, data), nil)
		if status == http.StatusServiceUnavailable {
			if errorCode(out) != "storage_full" || h.Get("Retry-After") == "" {
				t.Fatalf("refused send: %v, Retry-After %q; want storage_full with a Retry-After", out, h.Get("Retry-After"))
			}
			break
		}
		if status != http.StatusOK {
			t.Fatalf("send %d: %d %v", i, status, out)
		}
		accepted = append(accepted, fmt.Sprint("u", i))
	}
	if len(accepted) < 10 || len(accepted) > 17 {
		t.Fatalf("%d sends of 60 KB accepted into 1 MB, want about 16 and then a refusal", len(accepted))
	}
	for _, key := range accepted {
		c := dial(t, n, "key="+key)
		if f := c.next(); f.ID == "" || len(f.Data) < 60<<10 {
			t.Fatalf("%s got %+v, want its stored send", key, f)
		}
	}
}

// The same node refuses a new Idempotency-Key beyond
// --idempotency-memory-bytes, and still answers retries of the keys it
// remembers.
func TestAnIdempotentSendBeyondTheSingleNodesMemoryIsRefusedAndRetriesStillAnswer(t *testing.T) {
	n := startNode(t, "solo", "", func(c *node.Config) { c.IdempotencyMemoryBytes = 16 << 10 })
	var first map[string]any
	for i := 0; ; i++ {
		status, out, h := postJSONWith(t, n.URL("/v1/send"), `{"key":"u1","data":1}`, map[string]string{"Idempotency-Key": fmt.Sprint("order-", i)})
		if status == http.StatusServiceUnavailable {
			if errorCode(out) != "storage_full" || h.Get("Retry-After") == "" || i < 10 {
				t.Fatalf("after %d keys: %v, Retry-After %q; want storage_full with a Retry-After", i, out, h.Get("Retry-After"))
			}
			break
		}
		if status != http.StatusOK || i > 1000 {
			t.Fatalf("idempotent send %d: %d %v", i, status, out)
		}
		if i == 0 {
			first = out
		}
	}
	status, again, h := postJSONWith(t, n.URL("/v1/send"), `{"key":"u1","data":1}`, map[string]string{"Idempotency-Key": "order-0"})
	if status != http.StatusOK || again["id"] != first["id"] || h.Get("Idempotent-Replayed") == "" {
		t.Fatalf("retry of order-0 when full: %d %v, want the first answer %v", status, again, first)
	}
}
