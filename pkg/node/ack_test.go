package node_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/herald-push/herald/internal/redistest"
)

// A backend sends a stored message with wait:"acked" through node a to u1,
// whose client reads on node b and acknowledges it by POST /v1/ack on node
// a (as a Server-Sent Events client does, having no socket to ack on): the
// sender is answered "acked", and a client that reconnects without since=
// is not sent the message again.
func TestAnAckPostedToAnyNodeAnswersTheSenderWaitingForIt(t *testing.T) {
	r := redistest.Start(t)
	a := startNode(t, "a", r.URL())
	b := startNode(t, "b", r.URL())
	c := dial(t, b, "key=u1")

	answer := make(chan map[string]any, 1)
	go func() {
		_, out := post(t, a.URL("/v1/send"), "application/json", `{"key":"u1","data":"sword","wait":"acked","timeout_ms":5000}`)
		answer <- out
	}()
	f := c.next()
	start := time.Now()
	status, out := post(t, a.URL("/v1/ack"), "application/json", fmt.Sprintf(`{"key":"u1","id":%q}`, f.ID))
	if status != http.StatusOK || out["key"] != "u1" || out["id"] != f.ID {
		t.Fatalf("ack: %d %v, want 200 with key u1 and id %s", status, out, f.ID)
	}
	got := <-answer
	results, _ := got["results"].(map[string]any)
	u1, _ := results["u1"].(map[string]any)
	if u1["status"] != "acked" {
		t.Fatalf("the sender's answer %v, want u1 acked", got)
	}
	if waited := time.Since(start); waited > 4*time.Second {
		t.Fatalf("the sender learnt of the ack %v after it, at its timeout", waited)
	}

	c.ws.CloseNow()
	again := dial(t, a, "key=u1")
	again.nothing(300 * time.Millisecond)
}

// Acks that cannot be taken are refused with a code saying why, and move
// nothing: a stored message acknowledged by none of them is still sent to
// the next connection.
func TestAnAckThatCannotBeTakenIsRefusedAndMovesNothing(t *testing.T) {
	r := redistest.Start(t)
	n := startNode(t, "a", r.URL())
	out := sendJSON(t, n, `{"key":"u1","data":"kept","store":true}`)
	results, _ := out["results"].(map[string]any)
	u1, _ := results["u1"].(map[string]any)
	id := fmt.Sprint(u1["id"])
	var ms, seq int64
	fmt.Sscanf(id, "%d-%d", &ms, &seq)
	ahead := fmt.Sprintf("%d-%d", ms, seq+1)

	for _, tc := range []struct {
		what, contentType, body string
		status                  int
		code                    string
	}{
		{"an id that is no stored id", "application/json", `{"key":"u1","id":"yesterday"}`, 400, "invalid_id"},
		{"no id", "application/json", `{"key":"u1"}`, 400, "invalid_id"},
		{"no key in open mode", "application/json", fmt.Sprintf(`{"id":%q}`, id), 400, "missing_key"},
		{"a key outside the alphabet", "application/json", fmt.Sprintf(`{"key":"u 1","id":%q}`, id), 400, "invalid_key"},
		{"an id after the newest stored message", "application/json", fmt.Sprintf(`{"key":"u1","id":%q}`, ahead), 400, "ack_ahead"},
		{"an id of a key that stored nothing", "application/json", fmt.Sprintf(`{"key":"u2","id":%q}`, id), 400, "ack_ahead"},
		{"an unknown field", "application/json", fmt.Sprintf(`{"key":"u1","id":%q,"all":true}`, id), 400, "unknown_field"},
		{"a field twice", "application/json", fmt.Sprintf(`{"key":"u2","key":"u1","id":%q}`, id), 400, "duplicate_field"},
		{"not JSON", "application/json", `id=1`, 400, "invalid_json"},
		{"a text body", "text/plain", fmt.Sprintf(`{"key":"u1","id":%q}`, id), 415, "unsupported_media_type"},
	} {
		t.Run(tc.what, func(t *testing.T) {
			status, out := post(t, n.URL("/v1/ack"), tc.contentType, tc.body)
			if status != tc.status || errorCode(out) != tc.code {
				t.Fatalf("%s: %d %v, want %d %s", tc.body, status, out, tc.status, tc.code)
			}
		})
	}
	c := dial(t, n, "key=u1")
	if f := c.next(); f.ID != id {
		t.Fatalf("after the refused acks the client got %+v, want the stored %s", f, id)
	}
}

// With tokens on, an ack carries the client's connection token (in the
// body or as Authorization: Bearer) and the token decides the key: no
// token, a bad one, or one for another key is refused; the client's own
// token acknowledges its stream.
func TestWithTokensAnAckNeedsTheClientsOwnToken(t *testing.T) {
	r := redistest.Start(t)
	n := startNode(t, "a", r.URL(), secured(t))
	status, out := withKey(t, http.MethodPost, n.URL("/v1/send"), senderKey, `{"key":"u1","data":"kept","store":true}`)
	if status != http.StatusOK {
		t.Fatalf("send: %d %v", status, out)
	}
	results, _ := out["results"].(map[string]any)
	u1, _ := results["u1"].(map[string]any)
	id := fmt.Sprint(u1["id"])
	mine, theirs := tokenFor(t, "u1"), tokenFor(t, "u2")

	for _, tc := range []struct {
		what, bearer, body string
		status             int
		code               string
	}{
		{"no token, only a key", "", fmt.Sprintf(`{"key":"u1","id":%q}`, id), 401, "missing_token"},
		{"a token that is not one", "", fmt.Sprintf(`{"token":"not.a.token","id":%q}`, id), 401, "invalid_token"},
		{"another key's token naming u1", "", fmt.Sprintf(`{"key":"u1","token":%q,"id":%q}`, theirs, id), 403, "forbidden"},
		{"another key's token alone: its own stream stored nothing", theirs, fmt.Sprintf(`{"id":%q}`, id), 400, "ack_ahead"},
		{"an API key instead of a token", senderKey, fmt.Sprintf(`{"id":%q}`, id), 401, "invalid_token"},
	} {
		t.Run(tc.what, func(t *testing.T) {
			status, out := withKey(t, http.MethodPost, n.URL("/v1/ack"), tc.bearer, tc.body)
			if status != tc.status || errorCode(out) != tc.code {
				t.Fatalf("%s: %d %v, want %d %s", tc.body, status, out, tc.status, tc.code)
			}
		})
	}
	if status, out := withKey(t, http.MethodPost, n.URL("/v1/ack"), mine, fmt.Sprintf(`{"id":%q}`, id)); status != 200 || out["key"] != "u1" {
		t.Fatalf("ack with u1's token as Bearer: %d %v, want 200 for u1", status, out)
	}
	if status, out := withKey(t, http.MethodPost, n.URL("/v1/ack"), "", fmt.Sprintf(`{"token":%q,"id":%q}`, mine, id)); status != 200 || out["key"] != "u1" {
		t.Fatalf("ack with u1's token in the body: %d %v, want 200 for u1", status, out)
	}
	if acked, err := r.Client().Get(t.Context(), "herald:{u1}:acked").Result(); err != nil || acked != id {
		t.Fatalf("u1's ack position in Redis: %q (%v), want %s", acked, err, id)
	}
}
