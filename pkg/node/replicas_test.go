package node_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/internal/wait"
	"github.com/herald-push/herald/pkg/node"
)

// sendOnce posts a stored send with an Idempotency-Key and returns the
// status, the error code or stored id, and whether it was a replay.
func sendOnce(t *testing.T, n *testNode, key, idem string) (status int, codeOrID string, replayed bool) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, n.URL("/v1/send"), strings.NewReader(`{"key":"`+key+`","data":{"item":"sword"},"store":true}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", idem)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out struct {
		Error   struct{ Code string }
		Results map[string]struct{ ID string }
	}
	json.Unmarshal(raw, &out)
	if resp.StatusCode == http.StatusOK {
		return resp.StatusCode, out.Results[key].ID, resp.Header.Get("Idempotent-Replayed") == "true"
	}
	if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
		t.Errorf("503 %s without Retry-After", out.Error.Code)
	}
	return resp.StatusCode, out.Error.Code, false
}

func TestAStoredSendNoReplicaConfirmedIsRefusedThenSentOnceOnRetry(t *testing.T) {
	r := redistest.Start(t) // a master whose replica is not there yet
	oneReplica := func(c *node.Config) {
		c.Redis.MinReplicas = 1
		c.Redis.ReplicaTimeout = 100 * time.Millisecond
	}
	a := startNode(t, "a", r.URL(), oneReplica)
	player := dial(t, a, "key=buyer")

	status, code, _ := sendOnce(t, a, "buyer", "purchase-1")
	if status != http.StatusServiceUnavailable || code != "not_replicated" {
		t.Fatalf("send with no replica: %d %s, want 503 not_replicated", status, code)
	}
	// Stored on the master, but held back: a failover could still lose it.
	player.nothing(300 * time.Millisecond)
	if status, code, _ := sendOnce(t, a, "buyer", "purchase-1"); code != "not_replicated" {
		t.Fatalf("retry with no replica: %d %s", status, code)
	}

	// The replica comes (a restarted pod rejoining): the retry finds the
	// message the first attempt stored, sends it, and answers with it.
	redistest.StartWith(t, "--replicaof", "127.0.0.1", strconv.Itoa(r.Port))
	var id string
	var replayed bool
	wait.Until(t, 10*time.Second, "the retry is confirmed", func() bool {
		status, id, replayed = sendOnce(t, a, "buyer", "purchase-1")
		return status == http.StatusOK
	})
	if f := player.next(); f.ID != id || replayed {
		t.Fatalf("player received %+v after a retry answered %s (replayed %v)", f, id, replayed)
	}
	player.nothing(300 * time.Millisecond)
	if n, err := r.Client().XLen(t.Context(), "herald:{buyer}:inbox").Result(); err != nil || n != 1 {
		t.Fatalf("the inbox holds %d messages (%v), want the purchase once", n, err)
	}
	// The answer is kept: another retry replays it.
	if status, again, replayed := sendOnce(t, a, "buyer", "purchase-1"); status != http.StatusOK || again != id || !replayed {
		t.Fatalf("a later retry: %d %s replayed=%v", status, again, replayed)
	}
}

func TestARetryWhoseUnconfirmedMessageWasLostIsCarriedOutAgain(t *testing.T) {
	r := redistest.Start(t)
	a := startNode(t, "a", r.URL(), func(c *node.Config) {
		c.Redis.MinReplicas = 1
		c.Redis.ReplicaTimeout = 100 * time.Millisecond
	})
	if status, code, _ := sendOnce(t, a, "buyer", "purchase-1"); code != "not_replicated" {
		t.Fatalf("send with no replica: %d %s", status, code)
	}
	// The master fails over to a replica that never got the message.
	if err := r.Client().Del(t.Context(), "herald:{buyer}:inbox").Err(); err != nil {
		t.Fatal(err)
	}
	redistest.StartWith(t, "--replicaof", "127.0.0.1", strconv.Itoa(r.Port))
	var status int
	var id string
	wait.Until(t, 10*time.Second, "the retry is carried out", func() bool {
		status, id, _ = sendOnce(t, a, "buyer", "purchase-1")
		return status == http.StatusOK
	})
	player := dial(t, a, "key=buyer")
	if f := player.next(); f.ID != id {
		t.Fatalf("the player resumed with %+v, want the message stored again as %s", f, id)
	}
	player.nothing(300 * time.Millisecond)
}

func TestARetryWhoseFirstAnswerWasNeverRecordedStoresTheMessageOnce(t *testing.T) {
	r := redistest.Start(t)
	a := startNode(t, "a", r.URL())
	player := dial(t, a, "key=buyer")
	status, first, _ := sendOnce(t, a, "buyer", "purchase-1")
	if status != http.StatusOK {
		t.Fatalf("send: %d %s", status, first)
	}
	player.next()
	// The node stored the message, then lost Redis before it recorded the
	// answer (or the record went down with a master): the claim is gone.
	if err := r.Client().Del(t.Context(), "herald:{idem::purchase-1}").Err(); err != nil {
		t.Fatal(err)
	}
	status, again, replayed := sendOnce(t, a, "buyer", "purchase-1")
	if status != http.StatusOK || again != first || replayed {
		t.Fatalf("retry: %d id %s (replayed %v), want 200 with the stored message's id %s", status, again, replayed, first)
	}
	player.nothing(300 * time.Millisecond)
}
