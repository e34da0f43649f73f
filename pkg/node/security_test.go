package node_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/pkg/auth"
	"github.com/herald-push/herald/pkg/node"
	"github.com/herald-push/herald/pkg/protocol"
	"github.com/herald-push/herald/pkg/redisconn"
)

var tokenSecret = []byte("test-secret-test-secret-test-secret!")

const (
	senderKey    = "sender-key-0123456789abcdef"
	publisherKey = "publisher-key-0123456789ab"
	adminKey     = "admin-key-0123456789abcdef"
)

// secured configures a node the way production runs: API keys and tokens.
func secured(t *testing.T) func(*node.Config) {
	t.Helper()
	keys, err := auth.ParseAPIKeys([]byte(`[
		{"name":"game","key":"` + senderKey + `","scopes":["send","presence"]},
		{"name":"news","key":"` + publisherKey + `","scopes":["publish:news"]},
		{"name":"ops","key":"` + adminKey + `","scopes":["admin","broadcast","publish"]}]`))
	if err != nil {
		t.Fatal(err)
	}
	ring, err := auth.NewKeyring(keys)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := auth.NewVerifier(auth.TokenConfig{HS256Secret: tokenSecret})
	if err != nil {
		t.Fatal(err)
	}
	return func(c *node.Config) { c.APIKeys, c.Tokens = ring, verifier }
}

func token(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(tokenSecret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func tokenFor(t *testing.T, key string, topics ...string) string {
	claims := jwt.MapClaims{"sub": key, "exp": time.Now().Add(time.Hour).Unix()}
	if topics != nil {
		claims["topics"] = topics
	}
	return token(t, claims)
}

// withKey performs a request carrying an API key.
func withKey(t *testing.T, method, url, apiKey, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+apiKey)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, decode(resp.Body)
}

func decode(r io.Reader) map[string]any {
	raw, _ := io.ReadAll(r)
	var out map[string]any
	if len(raw) == 0 || json.Unmarshal(raw, &out) != nil {
		out = map[string]any{"body": string(raw)}
	}
	return out
}

// dialStatus tries a WebSocket and returns the HTTP status of a refusal,
// or 101 with the connection.
func dialStatus(t *testing.T, n *testNode, query string, header http.Header) (int, *websocket.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, "ws://"+n.Addr+"/v1/ws?"+query, &websocket.DialOptions{HTTPHeader: header})
	if err == nil {
		t.Cleanup(func() { ws.CloseNow() })
		return http.StatusSwitchingProtocols, ws
	}
	if resp == nil {
		t.Fatalf("dial ?%s: %v", query, err)
	}
	return resp.StatusCode, nil
}

func TestATokenForOneKeyNeverReceivesAnotherKeysMessages(t *testing.T) {
	n := startNode(t, "a", "", secured(t))
	u1 := tokenFor(t, "u1")

	if status, _ := dialStatus(t, n, "token="+u1+"&key=u2", nil); status != http.StatusForbidden {
		t.Fatalf("u1's token claiming u2: %d, want 403", status)
	}
	browser := dial(t, n, "token="+u1)
	status, ws := dialStatus(t, n, "key=u1", http.Header{"Authorization": {"Bearer " + u1}})
	if status != http.StatusSwitchingProtocols {
		t.Fatalf("native client with a Bearer token: %d", status)
	}
	native := &client{t: t, ws: ws, frames: make(chan []byte, 16), closed: make(chan error, 1)}
	native.startReading()

	for _, key := range []string{"u2", "u1"} {
		if status, out := withKey(t, "POST", n.URL("/v1/send"), senderKey, `{"key":"`+key+`","data":"for `+key+`"}`); status != 200 {
			t.Fatalf("send: %d %v", status, out)
		}
	}
	for name, cl := range map[string]*client{"browser": browser, "native": native} {
		if f := cl.next(); f.Key != "u1" || string(f.Data) != `"for u1"` {
			t.Errorf("%s received %+v, want only u1's message", name, f)
		}
		cl.nothing(100 * time.Millisecond)
	}
}

func TestBadTokensAreRefusedBeforeTheUpgrade(t *testing.T) {
	n := startNode(t, "a", "", secured(t))
	now := time.Now()
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "u1", "exp": now.Add(time.Hour).Unix()}).
		SignedString(jwt.UnsafeAllowNoneSignatureType)
	hs384, _ := jwt.NewWithClaims(jwt.SigningMethodHS384, jwt.MapClaims{"sub": "u1", "exp": now.Add(time.Hour).Unix()}).
		SignedString(tokenSecret)
	forged, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "u1", "exp": now.Add(time.Hour).Unix()}).
		SignedString([]byte("not-the-secret-not-the-secret-not!"))
	tests := []struct {
		name   string
		query  string
		status int
		code   string
	}{
		{"no token", "", 401, "missing_token"},
		{"a key alone", "key=u1", 401, "missing_token"},
		{"expired", "token=" + token(t, jwt.MapClaims{"sub": "u1", "exp": now.Add(-time.Hour).Unix()}), 401, "invalid_token"},
		{"not yet valid", "token=" + token(t, jwt.MapClaims{"sub": "u1", "exp": now.Add(time.Hour).Unix(), "nbf": now.Add(time.Hour).Unix()}), 401, "invalid_token"},
		{"wrongly signed", "token=" + forged, 401, "invalid_token"},
		{"alg none", "token=" + none, 401, "invalid_token"},
		{"wrong algorithm", "token=" + hs384, 401, "invalid_token"},
		{"garbage", "token=abc.def.ghi", 401, "invalid_token"},
		{"topic not in the token", "token=" + tokenFor(t, "u1", "news") + "&topics=board", 403, "forbidden"},
		{"topics without a claim", "token=" + tokenFor(t, "u1") + "&topics=board", 403, "forbidden"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, out := get(t, n.URL("/v1/ws?"+tc.query))
			if status != tc.status || errorCode(out) != tc.code {
				t.Fatalf("got %d %v, want %d %s", status, out, tc.status, tc.code)
			}
		})
	}
	if status, _ := dialStatus(t, n, "token="+tokenFor(t, "u1", "board", "news")+"&topics=board", nil); status != 101 {
		t.Fatalf("a token allowing the topic was refused: %d", status)
	}
}

func TestAConnectionWhoseTokenExpiresIsClosedWith4002(t *testing.T) {
	n := startNode(t, "a", "", secured(t))
	short := token(t, jwt.MapClaims{"sub": "u1", "exp": time.Now().Add(1500 * time.Millisecond).Unix()})
	cl := dial(t, n, "token="+short)
	if code := cl.closeStatus(); code != protocol.CloseTokenExpired {
		t.Fatalf("closed with %d, want %d", code, protocol.CloseTokenExpired)
	}
}

func TestConnectionLimitsPerKeyPerIPAndRateHold(t *testing.T) {
	tests := []struct {
		name  string
		tune  func(*node.Config)
		keys  []string
		code  string
		retry bool
	}{
		{"per key", func(c *node.Config) { c.MaxConnsPerKey = 2 }, []string{"u1", "u1", "u1"}, "too_many_connections", true},
		{"per IP", func(c *node.Config) { c.MaxConnsPerIP = 2 }, []string{"u1", "u2", "u3"}, "too_many_connections", true},
		{"new connections per IP", func(c *node.Config) { c.ConnRatePerIP, c.ConnBurstPerIP = 0.01, 2 }, []string{"u1", "u2", "u3"}, "too_many_connection_attempts", true},
		{"per node", func(c *node.Config) { c.MaxConns = 2 }, []string{"u1", "u2", "u3"}, "node_full", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := startNode(t, "a", "", tc.tune)
			for _, k := range tc.keys[:len(tc.keys)-1] {
				dial(t, n, "key="+k)
			}
			// A real handshake: limits count only clients that could connect.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, resp, err := websocket.Dial(ctx, "ws://"+n.Addr+"/v1/ws?key="+tc.keys[len(tc.keys)-1], nil)
			if resp == nil {
				t.Fatalf("connection over the limit: %v", err)
			}
			out := decode(resp.Body)
			resp.Body.Close()
			if (resp.StatusCode != 429 && resp.StatusCode != 503) || errorCode(out) != tc.code {
				t.Fatalf("connection over the limit: %d %v, want %s", resp.StatusCode, out, tc.code)
			}
			if tc.retry && resp.Header.Get("Retry-After") == "" {
				t.Error("no Retry-After")
			}
		})
	}
}

func TestRedisWithAPasswordAndAnACLUser(t *testing.T) {
	r := redistest.StartWith(t, "--requirepass", "s3cret",
		"--user", "herald", "on", ">herald-pass", "~herald:*", "&herald:*", "+@all", "-@dangerous", "+info")
	for name, url := range map[string]string{
		"password": "redis://:s3cret@" + r.Addr(),
		"ACL user": "redis://herald:herald-pass@" + r.Addr(),
	} {
		t.Run(name, func(t *testing.T) {
			a := startNode(t, "a", url)
			b := startNode(t, "b", url)
			cl := dial(t, b, "key=u1")
			sendJSON(t, a, `{"key":"u1","data":1}`)
			cl.next()
		})
	}
	// A wrong password leaves the node unready rather than half-working.
	c := startUnready(t, node.Config{NodeID: "c", Redis: redisconn.Config{URL: "redis://:wrong@" + r.Addr()}})
	time.Sleep(1500 * time.Millisecond) // a second probe has run
	if status, _ := get(t, c.URL("/readyz")); status != 503 {
		t.Fatalf("node with a wrong Redis password reads %d, want 503", status)
	}
}
