package httpapi_test

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herald-push/herald/pkg/httpapi"
	"github.com/herald-push/herald/pkg/node"
)

func TestTheAPIWantsAKeyWithTheRightScope(t *testing.T) {
	n := startNode(t, "a", "", secured(t))
	watcher := dial(t, n, "token="+tokenFor(t, "u1", "news", "board")+"&topics=news,board")
	tests := []struct {
		name, method, path, key string
		status                  int
		code                    string
	}{
		{"send without a key", "POST", "/v1/send", "", 401, "missing_api_key"},
		{"send with an unknown key", "POST", "/v1/send", "unknown-key-0123456789abcd", 401, "invalid_api_key"},
		{"send with a publish-only key", "POST", "/v1/send", publisherKey, 403, "forbidden"},
		{"broadcast with the send key", "POST", "/v1/broadcast", senderKey, 403, "forbidden"},
		{"publish without a key", "POST", "/v1/topics/news", "", 401, "missing_api_key"},
		{"publish outside the key's topics", "POST", "/v1/topics/board", publisherKey, 403, "forbidden"},
		{"publish with the send key", "POST", "/v1/topics/news", senderKey, 403, "forbidden"},
		{"presence without a key", "GET", "/v1/presence/u1", "", 401, "missing_api_key"},
		{"cluster with the send key", "GET", "/v1/cluster", senderKey, 403, "forbidden"},
		{"disconnect with the send key", "DELETE", "/v1/connections/u1", senderKey, 403, "forbidden"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, out := withKey(t, tc.method, n.URL(tc.path), tc.key, `{"key":"u1","data":"rejected"}`)
			if status != tc.status || errorCode(out) != tc.code {
				t.Fatalf("got %d %v, want %d %s", status, out, tc.status, tc.code)
			}
		})
	}
	// The right keys work, and nothing rejected above was delivered.
	if status, _ := withKey(t, "POST", n.URL("/v1/topics/news"), publisherKey, `{"data":"headline"}`); status != 200 {
		t.Fatalf("publisher publishing to news: %d", status)
	}
	if f := watcher.next(); string(f.Data) != `"headline"` {
		t.Fatalf("watcher's first frame is %+v, want the headline", f)
	}
	for _, path := range []string{"/v1/cluster", "/v1/presence/u1"} {
		key := adminKey
		if strings.Contains(path, "presence") {
			key = senderKey
		}
		if status, out := withKey(t, "GET", n.URL(path), key, ""); status != 200 {
			t.Errorf("GET %s with the right key: %d %v", path, status, out)
		}
	}
}

func TestAPublicTopicAcceptsExactlyItsRateThenAnswers429(t *testing.T) {
	public := func(c *testConfig) {
		c.PublicTopics = []string{"board"}
		c.PublicBurst = 3
		c.PublicRate = 0.01 // one more post every 100 s
		c.PublicMaxMessageBytes = 100
	}
	n := startNode(t, "a", "", secured(t), public)
	board := dial(t, n, "token="+tokenFor(t, "screen", "board")+"&topics=board")

	postAs := func(xff, body string) (int, http.Header, map[string]any) {
		req, _ := http.NewRequest("POST", n.URL("/v1/topics/board"), strings.NewReader(body))
		req.Header.Set("Content-Type", "text/plain")
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.StatusCode, resp.Header, decode(resp.Body)
	}
	if status, _, out := postAs("", strings.Repeat("x", 101)); status != 413 || errorCode(out) != "message_too_large" {
		t.Fatalf("oversized public post: %d %v", status, out)
	}
	for i := range 2 { // the oversized post above took the first token
		if status, _, out := postAs("", "suggestion"); status != 200 {
			t.Fatalf("post %d within the burst: %d %v", i, status, out)
		}
	}
	status, header, out := postAs("", "one too many")
	if status != 429 || errorCode(out) != "rate_limited" || header.Get("Retry-After") == "" {
		t.Fatalf("post over the rate: %d %v Retry-After=%q, want 429 with Retry-After", status, out, header.Get("Retry-After"))
	}
	// The peer is no trusted proxy: a forged X-Forwarded-For changes nothing.
	if status, _, _ := postAs("203.0.113.9", "forged"); status != 429 {
		t.Fatalf("forged X-Forwarded-For escaped the limit: %d", status)
	}
	for range 2 {
		if f := board.next(); string(f.Data) != `"suggestion"` {
			t.Fatalf("board received %+v", f)
		}
	}
	board.nothing(100 * time.Millisecond)

	// Behind a trusted proxy each client address has its own bucket.
	proxied := startNode(t, "b", "", secured(t), public, func(c *testConfig) { c.TrustedProxies = []string{"127.0.0.1"} })
	req := func(xff string) int {
		r, _ := http.NewRequest("POST", proxied.URL("/v1/topics/board"), strings.NewReader("hi"))
		r.Header.Set("X-Forwarded-For", xff)
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for range 3 {
		req("198.51.100.1")
	}
	if req("198.51.100.1") != 429 || req("198.51.100.2") != 200 {
		t.Fatal("trusted proxy's X-Forwarded-For not used to tell clients apart")
	}
}

func TestATricklingHeaderIsCutOffByTheTimeout(t *testing.T) {
	n := startNode(t, "a", "", func(c *testConfig) { c.HTTPReadHeaderTimeout = 300 * time.Millisecond })
	conn, err := net.Dial("tcp", n.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	go func() {
		for _, b := range []byte("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaa") {
			if _, err := conn.Write([]byte{b}); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	// The server either answers an error or hangs up; what matters is that
	// it does so at the timeout rather than waiting for the headers.
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err == nil && !strings.HasPrefix(line, "HTTP/1.1 4") {
		t.Fatalf("trickling client got %q", line)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("cut off only after %v", time.Since(start))
	}
	t.Logf("trickling client cut off after %v (%q, %v)", time.Since(start).Round(time.Millisecond), strings.TrimSpace(line), err)
}

func TestBrowsersFromOtherOriginsAreRefusedUnlessAllowed(t *testing.T) {
	n := startNode(t, "a", "", func(c *testConfig) { c.AllowedOrigins = []string{"board.example"} })
	if status, _ := dialStatus(t, n, "key=u1", http.Header{"Origin": {"https://evil.example"}}); status != http.StatusForbidden {
		t.Fatalf("foreign origin: %d, want 403", status)
	}
	if status, _ := dialStatus(t, n, "key=u1", http.Header{"Origin": {"https://board.example"}}); status != 101 {
		t.Fatalf("allowed origin: %d, want 101", status)
	}
	if status, _ := dialStatus(t, n, "key=u1", http.Header{"Origin": {"http://" + n.Addr}}); status != 101 {
		t.Fatalf("same origin: %d, want 101", status)
	}
}

func TestListeningBeyondLoopbackNeedsAuthOrInsecure(t *testing.T) {
	open := node.Config{NodeID: "a"}
	keyed := testConfig{Config: node.Config{NodeID: "a"}}
	secured(t)(&keyed)
	for name, tc := range map[string]struct {
		engine node.Config
		api    httpapi.Config
		want   string // "" accepted
	}{
		"open on all interfaces": {open, httpapi.Config{Listen: "0.0.0.0:8080"}, "refusing to listen on 0.0.0.0:8080 without authentication"},
		"open and insecure":      {open, httpapi.Config{Listen: "0.0.0.0:8080", Insecure: true}, ""},
		"open on loopback":       {open, httpapi.Config{Listen: "127.0.0.1:8080"}, ""},
		"open on the default":    {open, httpapi.Config{}, ""},
		"secured everywhere":     {keyed.Config, httpapi.Config{Listen: ":8080"}, ""},
	} {
		t.Run(name, func(t *testing.T) {
			n, err := node.New(tc.engine)
			if err != nil {
				t.Fatal(err)
			}
			defer n.Shutdown(context.Background())
			_, err = httpapi.New(n, tc.api)
			if tc.want == "" && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("got %v, want an error about %q", err, tc.want)
			}
		})
	}
}

// An operator's mistakes in the HTTP adapter's configuration are refused
// before the engine starts (Validate) with a message that names them.
func TestABadHTTPConfigIsRefusedSayingWhy(t *testing.T) {
	for _, tc := range []struct {
		name   string
		engine node.Config
		api    httpapi.Config
		want   string
	}{
		{"a certificate without its key", node.Config{}, httpapi.Config{TLSCertFile: "cert.pem"}, "TLS needs both a certificate and a key file"},
		{"a key without its certificate", node.Config{}, httpapi.Config{TLSKeyFile: "key.pem"}, "TLS needs both"},
		{"a wait longer than a request may take", node.Config{Limits: node.Limits{MaxWait: 40 * time.Second}}, httpapi.Config{}, "max wait 40s must be shorter than the HTTP write timeout 30s"},
		{"a short write timeout under the default wait", node.Config{}, httpapi.Config{HTTPWriteTimeout: 10 * time.Second}, "max wait 25s must be shorter than the HTTP write timeout 10s"},
		{"a negative timeout", node.Config{}, httpapi.Config{HTTPReadTimeout: -time.Second}, "HTTP read timeout must be positive"},
		{"a negative public rate", node.Config{}, httpapi.Config{PublicRate: -1}, "public topic limits must be positive"},
		{"a negative batch bound", node.Config{}, httpapi.Config{MaxBatch: -1}, "max batch must be positive"},
		{"a certificate file that is not there", node.Config{}, httpapi.Config{TLSCertFile: "/nonexistent/cert.pem", TLSKeyFile: "/nonexistent/key.pem"}, "TLS certificate and key"},
		{"a malformed origin pattern", node.Config{}, httpapi.Config{AllowedOrigins: []string{"http://[::1"}}, `allowed origin "http://[::1": not a valid pattern`},
		{"an origin of another scheme", node.Config{}, httpapi.Config{AllowedOrigins: []string{"ftp://x"}}, "http:// or https://"},
		{"an empty origin", node.Config{}, httpapi.Config{AllowedOrigins: []string{""}}, `allowed origin "": empty`},
		{"a host with a space", node.Config{}, httpapi.Config{AllowedHosts: []string{"exa mple.com"}}, "no spaces"},
		{"a host given as a URL", node.Config{}, httpapi.Config{AllowedHosts: []string{"http://example.com/"}}, "a host names no scheme"},
		{"a malformed host pattern", node.Config{}, httpapi.Config{AllowedHosts: []string{"["}}, "not a valid pattern"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.api.Validate(tc.engine); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate: %v, want an error about %q", err, tc.want)
			}
			n, err := node.New(node.Config{NodeID: "a", Limits: tc.engine.Limits})
			if err != nil {
				t.Fatal(err)
			}
			defer n.Shutdown(context.Background())
			if _, err := httpapi.New(n, tc.api); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error about %q", err, tc.want)
			}
		})
	}
}

// A page of an allowed origin reading an event stream acks by POST with a
// JSON body, which the browser sends only after a CORS preflight: the node
// answers the preflight of allowed origins, lets the page read its ack's
// answer, and refuses every other origin before anything is acked. The
// JavaScript client itself may be imported from any page.
func TestAPageOfAnAllowedOriginMayAckOverHTTPAndNoOtherMay(t *testing.T) {
	n := startNode(t, "a", "", func(c *testConfig) { c.AllowedOrigins = []string{"board.example"} })
	preflight := func(origin string) *http.Response {
		req, _ := http.NewRequest(http.MethodOptions, n.URL("/v1/ack"), nil)
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "content-type, authorization")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	resp := preflight("https://board.example")
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "https://board.example" ||
		resp.Header.Get("Access-Control-Allow-Methods") != "POST" ||
		!strings.Contains(strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers")), "authorization") {
		t.Fatalf("preflight of an allowed origin: %d %v", resp.StatusCode, resp.Header)
	}
	for _, origin := range []string{"https://evil.example", "null", ""} {
		if resp := preflight(origin); resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("preflight from %q: %d %v, want 403 without CORS headers", origin, resp.StatusCode, resp.Header)
		}
	}

	id := storedIDOf(t, sendJSON(t, n, `{"key":"u1","data":"sword","store":true}`), "u1")
	ack := func(origin string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, n.URL("/v1/ack"), strings.NewReader(`{"key":"u1","id":"`+id+`"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Origin", origin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := ack("https://evil.example"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("an ack from another origin: %d, want 403", resp.StatusCode)
	}
	if resp := ack("https://board.example"); resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != "https://board.example" {
		t.Fatalf("an ack from the allowed origin: %d %v, want 200 the page may read", resp.StatusCode, resp.Header)
	}

	req, _ := http.NewRequest(http.MethodGet, n.URL("/v1/herald.js"), nil)
	req.Header.Set("Origin", "https://anywhere.example")
	js, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	js.Body.Close()
	if js.StatusCode != http.StatusOK || js.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("herald.js from another page: %d %v, want it importable from any origin", js.StatusCode, js.Header)
	}
}
