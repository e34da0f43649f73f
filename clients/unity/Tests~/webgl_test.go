package unity_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"

	"github.com/herald-push/herald/internal/browsertest"
	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/internal/wait"
)

// emccArgs is how the test links HeraldWebSocket.jslib into the C harness:
// the library merged into an emscripten module as Unity merges it into a
// WebGL build, in one file so the page needs no .wasm beside it.
func emccArgs(out string) []string {
	return []string{"webgl/harness.c", "--js-library", "../Runtime/WebGL/HeraldWebSocket.jslib",
		"-s", "SINGLE_FILE=1", "-s", "ALLOW_MEMORY_GROWTH=1",
		"-s", `EXPORTED_FUNCTIONS=["_main","_malloc","_free"]`,
		"-s", `EXPORTED_RUNTIME_METHODS=["ccall"]`, "-o", out}
}

// TestWebGLTransport runs HeraldWebSocket.jslib in headless Chromium
// against real herald nodes: the C harness calls it as IL2CPP calls it from
// WebGLTransport.cs, and records every callback for these stories. The
// page is served from another origin than the nodes', as a WebGL game on a
// CDN would be; the nodes allow that origin with --allowed-origins.
func TestWebGLTransport(t *testing.T) {
	if _, err := exec.LookPath("emcc"); err != nil {
		t.Fatal("emcc not found: install emscripten (make deps checks for it)")
	}
	dir := t.TempDir()
	js := filepath.Join(dir, "harness.js")
	if out, err := exec.Command("emcc", emccArgs(js)...).CombinedOutput(); err != nil {
		t.Fatalf("emcc: %v\n%s", err, out)
	}
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/":
			http.ServeFile(w, r, "webgl/index.html")
		case "/harness.js":
			http.ServeFile(w, r, js)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(page.Close)
	origin := strings.TrimPrefix(page.URL, "http://")

	bin := buildHerald(t)
	r := redistest.Start(t)
	common := []string{"--redis-url", r.URL(), "--allowed-origins", origin, "--max-message-bytes", "262144"}
	node := func(args ...string) *process {
		return startNode(t, bin, append(append([]string{}, common...), args...)...)
	}
	a := node("--node-id", "a")
	b := node("--node-id", "b")
	s := node("--node-id", "s", "--env", "HERALD_TOKEN_SECRET="+tokenSecret)
	l := node("--node-id", "l", "--max-conns-per-key", "1")
	k := node("--node-id", "k")
	f := node("--node-id", "f", "--max-conns", "1")
	// A node that does not allow the page's origin.
	o := startNode(t, bin, "--node-id", "o", "--redis-url", r.URL())

	h := openHarness(t, page.URL)

	t.Run("OpenReceivesNonASCIIAndLargeFramesByteExact", func(t *testing.T) {
		id := h.open(ws(a, "key=w-text"), "")
		h.waitFor(id, "open")
		texts := []string{"plain", "é 漢字 🎉 — ünïcödé", strings.Repeat("é漢🎉", 10000)} // the last is 90000 bytes
		for i, want := range texts {
			sendTo(t, b, "w-text", want, "")
			e := h.waitForNth(id, "text", i+1)
			var frame struct{ Data string }
			if err := json.Unmarshal([]byte(e.Text), &frame); err != nil {
				t.Fatalf("frame %d is not JSON: %v", i, err)
			}
			if frame.Data != want {
				t.Fatalf("frame %d: data differs (%d bytes, want %d)", i, len(frame.Data), len(want))
			}
			if e.Bytes != len(e.Text) {
				t.Fatalf("frame %d: onText's byteLength %d, the frame is %d bytes", i, e.Bytes, len(e.Text))
			}
		}
		t.Logf("largest frame: %d bytes through onText", h.nth(id, "text", 3).Bytes)

		// Measured, not asserted: frames of 90000 bytes in a row, and the
		// module's heap before and after (each frame's copy is freed after
		// its callback).
		const n = 100
		var heapBefore, heapAfter int
		h.run(chromedp.Evaluate(`HEAPU8.length`, &heapBefore))
		start := time.Now()
		for i := 0; i < n; i++ {
			sendTo(t, b, "w-text", texts[2], "")
		}
		h.waitForNth(id, "text", len(texts)+n)
		elapsed := time.Since(start)
		h.run(chromedp.Evaluate(`HEAPU8.length`, &heapAfter))
		t.Logf("%d frames of %d bytes (sent one by one over HTTP through node b) in %v; wasm heap %d bytes before, %d after",
			n, h.nth(id, "text", 3).Bytes, elapsed.Round(time.Millisecond), heapBefore, heapAfter)
	})

	t.Run("AnAckSentWithSendAnswersAWaitingSender", func(t *testing.T) {
		id := h.open(ws(a, "key=w-ack"), "")
		h.waitFor(id, "open")
		answer := make(chan string, 1)
		go func() { answer <- sendTo(t, b, "w-ack", "ack me", `,"wait":"acked","timeout_ms":20000`) }()
		e := h.waitFor(id, "text")
		var frame struct{ ID string }
		if err := json.Unmarshal([]byte(e.Text), &frame); err != nil || frame.ID == "" {
			t.Fatalf("frame without an id: %q", e.Text)
		}
		if rc := h.send(id, `{"type":"ack","id":"`+frame.ID+`"}`); rc != 0 {
			t.Fatalf("HeraldWs_Send on an open socket = %d", rc)
		}
		body := <-answer
		if !strings.Contains(body, `"status":"acked"`) {
			t.Fatalf("the waiting sender was answered %s", body)
		}
	})

	t.Run("TheTokenGoesAsAQueryParameter", func(t *testing.T) {
		id := h.open(ws(s, ""), hs256("w-token", tokenSecret))
		h.waitFor(id, "open")
		sendTo(t, b, "w-token", "for the token's key", "")
		if e := h.waitFor(id, "text"); !strings.Contains(e.Text, "for the token's key") {
			t.Fatalf("got %q", e.Text)
		}
	})

	t.Run("TheTokenJoinsAQueryThatHasOtherParameters", func(t *testing.T) {
		// &token=, not a second ?: otherwise format would read "raw?token=..." and be refused.
		id := h.open(ws(s, "format=raw"), hs256("w-token-raw", tokenSecret))
		h.waitFor(id, "open")
		sendTo(t, b, "w-token-raw", "bare é", "")
		if e := h.waitFor(id, "text"); e.Text != "bare é" {
			t.Fatalf("a raw frame: got %q", e.Text)
		}
	})

	t.Run("ABinaryFrameArrivesAsItsUTF8Bytes", func(t *testing.T) {
		// herald sends text frames only; a server that sends binary ones
		// (a proxy re-framing them, say) is read the same way.
		want := "binary é 漢字 🎉"
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := websocket.Accept(w, r, &websocket.AcceptOptions{OriginPatterns: []string{origin}})
			if err != nil {
				return
			}
			defer c.CloseNow()
			c.Write(r.Context(), websocket.MessageBinary, []byte(want))
			c.Close(websocket.StatusNormalClosure, "bye")
		}))
		defer srv.Close()
		id := h.open("ws://"+strings.TrimPrefix(srv.URL, "http://")+"/", "")
		e := h.waitFor(id, "text")
		if e.Text != want || e.Bytes != len(want) {
			t.Fatalf("got %q (%d bytes), want %q (%d)", e.Text, e.Bytes, want, len(want))
		}
		if c := h.waitFor(id, "close"); c.Code != 1000 || c.Reason != "bye" || c.Refused != 0 {
			t.Fatalf("close: %+v", c)
		}
	})

	t.Run("ABadTokenIsRefused401WithHeraldsCode", func(t *testing.T) {
		id := h.open(ws(s, ""), "not-a-token")
		e := h.waitFor(id, "close")
		t.Logf("refusal: %+v", e)
		if e.Refused != 1 || e.Code != 401 || !regexp.MustCompile(`^[a-z_]+: .+`).MatchString(e.Reason) {
			t.Fatalf("want refused 401 \"<code>: <message>\", got %+v", e)
		}
	})

	t.Run("ALimitIsRefused429WithRetryAfter", func(t *testing.T) {
		first := h.open(ws(l, "key=w-solo"), "")
		h.waitFor(first, "open")
		second := h.open(ws(l, "key=w-solo"), "")
		e := h.waitFor(second, "close")
		t.Logf("refusal: %+v", e)
		if e.Refused != 1 || e.Code != 429 || e.RetryAfterMs <= 0 || !strings.HasPrefix(e.Reason, "too_many_connections: ") {
			t.Fatalf("want refused 429 too_many_connections with retryAfterMs > 0, got %+v", e)
		}
		h.close(first, 1000, "done")
		h.waitFor(first, "close")
	})

	t.Run("AFullNodeIsRefused503", func(t *testing.T) {
		first := h.open(ws(f, "key=w-full-1"), "")
		h.waitFor(first, "open")
		second := h.open(ws(f, "key=w-full-2"), "")
		e := h.waitFor(second, "close")
		t.Logf("refusal: %+v", e)
		if e.Refused != 1 || e.Code != 503 || !strings.HasPrefix(e.Reason, "node_full: ") {
			t.Fatalf("want refused 503 node_full, got %+v", e)
		}
		h.close(first, 1000, "done")
		h.waitFor(first, "close")
	})

	t.Run("AnOriginTheNodeDoesNotAllowIsRefused403", func(t *testing.T) {
		id := h.open(ws(o, "key=w-origin"), "")
		e := h.waitFor(id, "close")
		t.Logf("refusal: %+v", e)
		if e.Refused != 1 || e.Code != 403 || !strings.HasPrefix(e.Reason, "origin_not_allowed: ") {
			t.Fatalf("want refused 403 origin_not_allowed, got %+v", e)
		}
	})

	t.Run("BehindAProxyThatBlocksWebSocketsTheStreamOpenedToAskIsCut", func(t *testing.T) {
		// A proxy in front of node a that refuses every WebSocket, as some
		// corporate proxies do, and passes the rest: the diagnosis's request
		// on /v1/sse is accepted, opens a stream, and must be cut at once.
		target, _ := url.Parse(a.url)
		pass := httputil.NewSingleHostReverseProxy(target)
		proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/v1/ws":
				http.Error(w, "<html>WebSockets are not allowed here</html>", http.StatusBadGateway)
			case "/v1/sse":
				pass.ServeHTTP(w, r)
			default:
				http.Error(w, "<html>no</html>", http.StatusBadGateway)
			}
		}))
		defer proxy.Close()
		id := h.open("ws://"+strings.TrimPrefix(proxy.URL, "http://")+"/v1/ws?key=w-proxied", "")
		e := h.waitFor(id, "close")
		t.Logf("refusal: %+v", e)
		if e.Refused != 1 || e.Code != 0 {
			t.Fatalf("want refused, status 0 (the node would accept), got %+v", e)
		}
		online(t, a, "w-proxied", false) // the stream the diagnosis opened was cut

		// Something in front that answers the diagnosis itself, not
		// herald: readable only when it sends CORS headers of its own.
		for _, cors := range []bool{true, false} {
			front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if cors {
					w.Header().Set("Access-Control-Allow-Origin", "*")
				}
				http.Error(w, "<html>Bad gateway</html>", http.StatusBadGateway)
			}))
			id := h.open("ws://"+strings.TrimPrefix(front.URL, "http://")+"/v1/ws?key=w-front", "")
			e := h.waitFor(id, "close")
			front.Close()
			t.Logf("CORS %v: %+v", cors, e)
			if cors && (e.Refused != 1 || e.Code != 502 || !strings.Contains(e.Reason, "not herald's answer")) {
				t.Fatalf("want refused 502, not herald's answer, got %+v", e)
			}
			if !cors && (e.Refused != 1 || e.Code != 0 || !strings.Contains(e.Reason, "no readable answer")) {
				t.Fatalf("want refused, status 0, no readable answer, got %+v", e)
			}
		}
	})

	t.Run("NoNodeIsRefusedWithStatus0", func(t *testing.T) {
		id := h.open("ws://127.0.0.1:6931/v1/ws?key=w-none", "") // nothing listens there (this part's port range)
		e := h.waitFor(id, "close")
		if e.Refused != 1 || e.Code != 0 {
			t.Fatalf("want refused, status 0, got %+v", e)
		}
	})

	t.Run("ABadURLIsRefusedOnALaterTurnNeverInsideOpen", func(t *testing.T) {
		// "not a url" is relative: a browser would resolve it against the
		// page; "ws://[" is one the browser's WebSocket itself rejects.
		for _, bad := range []string{"not a url", "ftp://127.0.0.1/v1/ws", "ws://["} {
			var id int
			h.run(chromedp.Evaluate(fmt.Sprintf(`(function(){ var id = Module.ccall("harness_open","number",["string","string"],[%q,""]);
				Module.heraldLog.push({ev:"returned", socket:id}); return id; })()`, bad), &id))
			h.waitFor(id, "close")
			got := h.entries(id)
			if len(got) != 2 || got[0].Ev != "returned" || got[1].Refused != 1 || got[1].Code != 0 ||
				!strings.HasPrefix(got[1].Reason, "invalid url: ") {
				t.Fatalf("%q: want Open to return before a refused close, status 0, \"invalid url: ...\"; got %+v", bad, got)
			}
			t.Logf("%q: %s", bad, got[1].Reason)
		}
	})

	t.Run("AnOperatorDisconnectClosesWith4001", func(t *testing.T) {
		id := h.open(ws(a, "key=w-op"), "")
		h.waitFor(id, "open")
		req, _ := http.NewRequest(http.MethodDelete, b.url+"/v1/connections/w-op", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		e := h.waitFor(id, "close")
		t.Logf("close: %+v", e)
		if e.Code != 4001 || e.Refused != 0 || e.Reason == "" {
			t.Fatalf("want 4001 with a reason, got %+v", e)
		}
	})

	t.Run("SendBeforeOpenIsRefused", func(t *testing.T) {
		var got []int
		h.run(chromedp.Evaluate(fmt.Sprintf(`(function(){ var id = Module.ccall("harness_open","number",["string","string"],[%q,""]);
			return [id, Module.ccall("harness_send","number",["number","string"],[id,"too early"])]; })()`, ws(a, "key=w-early")), &got))
		if got[1] != -1 {
			t.Fatalf("HeraldWs_Send before open = %d, want -1", got[1])
		}
		h.waitFor(got[0], "open")
		if rc := h.send(got[0], `{"type":"ping"}`); rc != 0 {
			t.Fatalf("HeraldWs_Send after open = %d", rc)
		}
		h.close(got[0], 1000, "")
		if rc := h.send(got[0], `{"type":"ping"}`); rc != -1 {
			t.Fatalf("HeraldWs_Send after Close = %d, want -1", rc)
		}
		h.waitFor(got[0], "close")
	})

	t.Run("ScheduleCloseFiresAndCancelCancels", func(t *testing.T) {
		kept := h.open(ws(a, "key=w-kept"), "")
		paused := h.open(ws(a, "key=w-paused"), "")
		h.waitFor(kept, "open")
		h.waitFor(paused, "open")
		online(t, a, "w-paused", true)
		// kept's timer is due before paused's: had Cancel not cancelled it,
		// kept would close first (browser timers run in order of their due time).
		h.scheduleClose(kept, 100, 1000, "kept")
		h.cancelScheduledClose(kept)
		h.scheduleClose(paused, 400, 1000, "paused")
		e := h.waitFor(paused, "close")
		if e.Code != 1000 || e.Refused != 0 {
			t.Fatalf("want a clean 1000, got %+v", e)
		}
		online(t, a, "w-paused", false)
		if got := h.entries(kept); len(got) != 1 {
			t.Fatalf("the cancelled socket: %+v", got)
		}
		sendTo(t, b, "w-kept", "still here", "")
		h.waitFor(kept, "text")
	})

	t.Run("TheNodeKilledCloses1006ExactlyOnce", func(t *testing.T) {
		id := h.open(ws(k, "key=w-killed"), "")
		h.waitFor(id, "open")
		k.cmd.Process.Kill()
		e := h.waitFor(id, "close")
		if e.Code != 1006 || e.Refused != 0 {
			t.Fatalf("want 1006, got %+v", e)
		}
		// A full open on a live node takes several turns of the event loop:
		// a second close would have come by then.
		other := h.open(ws(a, "key=w-after-kill"), "")
		h.waitFor(other, "open")
		if n := h.count(id, "close"); n != 1 {
			t.Fatalf("%d onClose callbacks for one socket", n)
		}
	})

	t.Run("FreeMeansNoCallbackAfterwards", func(t *testing.T) {
		id := h.open(ws(a, "key=w-freed"), "")
		h.waitFor(id, "open")
		h.free(id)
		sendTo(t, b, "w-freed", "nobody hears this", "")
		online(t, a, "w-freed", false)
		other := h.open(ws(a, "key=w-after-free"), "")
		h.waitFor(other, "open")
		sendTo(t, b, "w-after-free", "after", "")
		h.waitFor(other, "text")
		if got := h.entries(id); len(got) != 1 {
			t.Fatalf("callbacks after Free: %+v", got)
		}
	})
}

// TestWebGLTransportCompiles compiles the runtime as a WebGL player build
// sees it (UNITY_WEBGL, against a stub of AOT.MonoPInvokeCallbackAttribute),
// then a program that uses WebGLTransport as the default transport factory
// does: a #if that hid the class would fail here, not pass empty. Only a
// Unity WebGL build runs it (its externs are the jslib's).
func TestWebGLTransportCompiles(t *testing.T) {
	out := t.TempDir()
	lib := filepath.Join(out, "Herald.dll")
	runtime, _ := filepath.Glob("../Runtime/*/*.cs")
	mcs(t, append([]string{"-define:UNITY_WEBGL", "-target:library", "-out:" + lib, "webgl/AOTStubs.cs"}, runtime...)...)
	probe := filepath.Join(out, "Probe.cs")
	if err := os.WriteFile(probe, []byte(`class Probe { static void Main() {
		Herald.ITransport t = new Herald.WebGLTransport(); t.Dispose(); } }`), 0o644); err != nil {
		t.Fatal(err)
	}
	mcs(t, "-out:"+filepath.Join(out, "Probe.exe"), "-r:"+lib, probe)
}

type logEntry struct {
	Ev           string
	Socket       int
	Text         string
	Bytes        int
	Code         int
	Reason       string
	Refused      int
	RetryAfterMs int
}

type harness struct {
	t   *testing.T
	ctx context.Context
}

// openHarness starts headless Chromium (Debian's package) and loads the
// harness page in it.
func openHarness(t *testing.T, pageURL string) *harness {
	t.Helper()
	ctx, cancel := context.WithTimeout(browsertest.Start(t), 3*time.Minute)
	t.Cleanup(cancel)
	h := &harness{t: t, ctx: ctx}
	h.run(chromedp.Navigate(pageURL), chromedp.Poll(`window.harnessReady === true`, nil))
	return h
}

func (h *harness) run(actions ...chromedp.Action) {
	h.t.Helper()
	if err := chromedp.Run(h.ctx, actions...); err != nil {
		h.t.Fatalf("in the browser: %v", err)
	}
}

func (h *harness) call(fn, ret string, types []string, args ...any) any {
	h.t.Helper()
	tj, _ := json.Marshal(types)
	aj, _ := json.Marshal(args)
	var out any
	h.run(chromedp.Evaluate(fmt.Sprintf(`Module.ccall(%q, %q, %s, %s)`, fn, ret, tj, aj), &out))
	return out
}

func (h *harness) open(url, token string) int {
	return int(h.call("harness_open", "number", []string{"string", "string"}, url, token).(float64))
}

func (h *harness) send(id int, text string) int {
	return int(h.call("harness_send", "number", []string{"number", "string"}, id, text).(float64))
}

func (h *harness) close(id, code int, reason string) {
	h.call("harness_close", "null", []string{"number", "number", "string"}, id, code, reason)
}

func (h *harness) scheduleClose(id, delayMs, code int, reason string) {
	h.call("harness_schedule_close", "null", []string{"number", "number", "number", "string"}, id, delayMs, code, reason)
}

func (h *harness) cancelScheduledClose(id int) {
	h.call("harness_cancel_scheduled_close", "null", []string{"number"}, id)
}

func (h *harness) free(id int) { h.call("harness_free", "null", []string{"number"}, id) }

func (h *harness) entries(id int) []logEntry {
	h.t.Helper()
	var s string
	h.run(chromedp.Evaluate(fmt.Sprintf(`JSON.stringify(Module.heraldLog.filter(function(e){ return e.socket === %d; }))`, id), &s))
	var out []logEntry
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		h.t.Fatal(err)
	}
	return out
}

func (h *harness) count(id int, ev string) int {
	n := 0
	for _, e := range h.entries(id) {
		if e.Ev == ev {
			n++
		}
	}
	return n
}

func (h *harness) nth(id int, ev string, n int) logEntry {
	for _, e := range h.entries(id) {
		if e.Ev == ev {
			if n--; n == 0 {
				return e
			}
		}
	}
	h.t.Fatalf("socket %d has no %s #%d", id, ev, n)
	return logEntry{}
}

// waitForNth waits (without a deadline of its own: the browser context's
// bounds it) until socket id has had n callbacks of kind ev.
func (h *harness) waitForNth(id int, ev string, n int) logEntry {
	h.t.Helper()
	cond := fmt.Sprintf(`Module.heraldLog.filter(function(e){ return e.socket === %d && e.ev === %q; }).length >= %d`, id, ev, n)
	if err := chromedp.Run(h.ctx, chromedp.Poll(cond, nil, chromedp.WithPollingInterval(20*time.Millisecond))); err != nil {
		h.t.Fatalf("socket %d: no %s #%d (%v); its log: %+v", id, ev, n, err, h.entries(id))
	}
	return h.nth(id, ev, n)
}

func (h *harness) waitFor(id int, ev string) logEntry { return h.waitForNth(id, ev, 1) }

func ws(p *process, query string) string {
	u := "ws://" + strings.TrimPrefix(p.url, "http://") + "/v1/ws"
	if query != "" {
		u += "?" + query
	}
	return u
}

// sendTo posts text to key through node p; extra is more JSON fields.
func sendTo(t *testing.T, p *process, key, text, extra string) string {
	k, _ := json.Marshal(key)
	d, _ := json.Marshal(text)
	resp, err := http.Post(p.url+"/v1/send", "application/json",
		bytes.NewReader([]byte(`{"key":`+string(k)+`,"data":`+string(d)+extra+`}`)))
	if err != nil {
		t.Error(err)
		return ""
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	body.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("send to %s: %d %s", key, resp.StatusCode, body.String())
	}
	return body.String()
}

// online waits until presence on p says key is (or is not) connected.
func online(t *testing.T, p *process, key string, want bool) {
	t.Helper()
	wait.Until(t, 10*time.Second, fmt.Sprintf("%s online=%v", key, want), func() bool {
		resp, err := http.Get(p.url + "/v1/presence/" + key)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var v struct{ Online bool }
		json.NewDecoder(resp.Body).Decode(&v)
		return v.Online == want
	})
}

// hs256 mints a connection token as a game's backend would.
func hs256(key, secret string) string {
	enc := base64.RawURLEncoding
	header := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	sub, _ := json.Marshal(key)
	claims := enc.EncodeToString([]byte(fmt.Sprintf(`{"sub":%s,"exp":%d}`, sub, time.Now().Add(time.Hour).Unix())))
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(header + "." + claims))
	return header + "." + claims + "." + enc.EncodeToString(m.Sum(nil))
}
