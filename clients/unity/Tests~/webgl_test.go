package unity_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/golang-jwt/jwt/v5"

	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/internal/wait"
)

// The WebGL transport's exported functions, for the harness's build.
const harnessExports = `["_main","_malloc","_free","_harness_open","_harness_send","_harness_close","_harness_schedule_close","_harness_cancel_close","_harness_free"]`

// TestWebGLTransportInHeadlessChromium builds Tests~/webgl/harness.c with
// Debian's emscripten against Runtime/WebGL/HeraldWebSocket.jslib — the
// C program calls the library as IL2CPP's [DllImport("__Internal")] would —
// serves it from an origin of its own (as a game on a CDN is), and drives it
// in headless Chromium against real herald nodes on a real Redis.
func TestWebGLTransportInHeadlessChromium(t *testing.T) {
	if _, err := exec.LookPath("emcc"); err != nil {
		t.Fatalf("emcc not found (make test installs emscripten): %v", err)
	}
	dir := t.TempDir()
	build := exec.Command("emcc", "webgl/harness.c", "--js-library", "../Runtime/WebGL/HeraldWebSocket.jslib",
		"-s", "SINGLE_FILE=1", "-s", "EXIT_RUNTIME=0", "-s", "EXPORTED_FUNCTIONS="+harnessExports,
		"-s", `EXPORTED_RUNTIME_METHODS=["ccall","UTF8ToString"]`, "-o", filepath.Join(dir, "harness.js"))
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("emcc: %v\n%s", err, out)
	}
	page := `<!doctype html><meta charset="utf-8"><script>window.heraldLog = [];</script><script src="harness.js"></script>`
	if err := os.WriteFile(filepath.Join(dir, "index.html"), []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	game := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(game.Close)

	r := redistest.Start(t).URL()
	bin := buildHerald(t)
	// Frames over 64 KiB cross the library too: the nodes take 256 KiB.
	allow := []string{"--allowed-origins", "127.0.0.1:*", "--max-message-bytes", "262144"}
	a := startNode(t, bin, append([]string{"--node-id", "wa", "--redis-url", r}, allow...)...)
	b := startNode(t, bin, append([]string{"--node-id", "wb", "--redis-url", r}, allow...)...)
	limited := startNode(t, bin, append([]string{"--node-id", "wl", "--redis-url", r, "--max-conns-per-key", "1"}, allow...)...)
	secured := startNode(t, bin, append([]string{"--node-id", "ws", "--redis-url", r, "--env", "HERALD_TOKEN_SECRET=" + tokenSecret}, allow...)...)
	doomed := startNode(t, bin, append([]string{"--node-id", "wd", "--redis-url", r}, allow...)...)

	ctx := browser(t)
	if err := chromedp.Run(ctx, chromedp.Navigate(game.URL+"/index.html")); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, ctx: ctx}
	wait.Until(t, 10*time.Second, "the harness to start", func() bool { return h.eval(`window.heraldReady === true`) == "true" })

	t.Run("a stored send through another node arrives byte-exact, and an ack sent back answers a waiting sender acked", func(t *testing.T) {
		h.t = t
		id := h.open(ws(a.url)+"/v1/ws?key=webgl-1", "")
		h.waitFor(id, "open")
		data := `{"item":"Épée ×1","note":"漢字 🎮","pad":"` + strings.Repeat("x", 70*1024) + `"}`
		sent := make(chan string, 1)
		go func() {
			sent <- post(t, b.url+"/v1/send", `{"key":"webgl-1","data":`+data+`,"store":true,"wait":"acked","timeout_ms":5000}`)
		}()
		text := h.waitFor(id, "text")
		if text.Bytes != len(text.Text) || text.Terminated != 1 {
			t.Fatalf("onText's byte length %d does not match the string", text.Bytes)
		}
		var frame struct {
			ID   string          `json:"id"`
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal([]byte(text.Text), &frame); err != nil || string(frame.Data) != data {
			t.Fatalf("frame %.200q (%v): data is not byte-exact", text.Text, err)
		}
		if got := h.eval(fmt.Sprintf(`Module.ccall("harness_send","number",["number","string"],[%d,%q])`, id, `{"type":"ack","id":"`+frame.ID+`"}`)); got != "0" {
			t.Fatalf("HeraldWs_Send of the ack = %s, want 0", got)
		}
		if answer := <-sent; !strings.Contains(answer, `"acked"`) {
			t.Fatalf("sender: %s, want acked", answer)
		}
		h.free(id)
	})

	t.Run("the token goes as ?token= and a refused one comes back as herald's reason", func(t *testing.T) {
		h.t = t
		id := h.open(ws(secured.url)+"/v1/ws", sign(t, "webgl-token", time.Hour))
		h.waitFor(id, "open")
		h.free(id)
		bad := h.open(ws(secured.url)+"/v1/ws", "not-a-token")
		c := h.waitFor(bad, "close")
		if c.Refused != 1 || c.Code != 401 || !strings.Contains(c.Reason, "invalid_token") {
			t.Fatalf("a bad token: %+v, want refused 401 invalid_token", c)
		}
	})

	t.Run("a refusal for too many connections carries its Retry-After", func(t *testing.T) {
		h.t = t
		first := h.open(ws(limited.url)+"/v1/ws?key=webgl-limit", "")
		h.waitFor(first, "open")
		second := h.open(ws(limited.url)+"/v1/ws?key=webgl-limit", "")
		c := h.waitFor(second, "close")
		if c.Refused != 1 || c.Code != 429 || c.RetryAfterMs <= 0 || !strings.Contains(c.Reason, "too_many_connections") {
			t.Fatalf("a second connection over the limit: %+v, want refused 429 too_many_connections with retryAfterMs", c)
		}
		h.free(first)
	})

	t.Run("Send before the socket opened is refused with -1, and nothing reaches a closed id", func(t *testing.T) {
		h.t = t
		id := h.open(ws(a.url)+"/v1/ws?key=webgl-early", "")
		if got := h.eval(fmt.Sprintf(`Module.ccall("harness_send","number",["number","string"],[%d,"{}"])`, id)); got != "-1" {
			t.Fatalf("Send before open = %s, want -1", got)
		}
		h.waitFor(id, "open")
		h.free(id)
		if got := h.eval(fmt.Sprintf(`Module.ccall("harness_send","number",["number","string"],[%d,"{}"])`, id)); got != "-1" {
			t.Fatalf("Send after Free = %s, want -1", got)
		}
	})

	t.Run("an operator's disconnect arrives as 4001 with its reason", func(t *testing.T) {
		h.t = t
		id := h.open(ws(a.url)+"/v1/ws?key=webgl-op", "")
		h.waitFor(id, "open")
		req, _ := http.NewRequest(http.MethodDelete, b.url+"/v1/connections/webgl-op", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if c := h.waitFor(id, "close"); c.Code != 4001 || c.Refused != 0 || c.Reason == "" {
			t.Fatalf("after DELETE /v1/connections: %+v, want 4001 with a reason", c)
		}
	})

	t.Run("ScheduleClose closes on the browser's timer, and CancelScheduledClose keeps the socket", func(t *testing.T) {
		h.t = t
		kept := h.open(ws(a.url)+"/v1/ws?key=webgl-kept", "")
		closed := h.open(ws(a.url)+"/v1/ws?key=webgl-paused", "")
		h.waitFor(kept, "open")
		h.waitFor(closed, "open")
		h.eval(fmt.Sprintf(`Module.ccall("harness_schedule_close",null,["number","number","number","string"],[%d,300,1000,"app paused"])`, kept))
		h.eval(fmt.Sprintf(`Module.ccall("harness_cancel_close",null,["number"],[%d])`, kept))
		h.eval(fmt.Sprintf(`Module.ccall("harness_schedule_close",null,["number","number","number","string"],[%d,300,1000,"app paused"])`, closed))
		if c := h.waitFor(closed, "close"); c.Code != 1000 {
			t.Fatalf("scheduled close: %+v, want 1000", c)
		}
		wait.Until(t, 5*time.Second, "the node to see webgl-paused go", func() bool {
			return !strings.Contains(post(t, a.url+"/v1/send", `{"key":"webgl-paused","data":1}`), `"online":["webgl-paused"]`)
		})
		time.Sleep(500 * time.Millisecond) // past the cancelled close's time
		if !strings.Contains(post(t, a.url+"/v1/send", `{"key":"webgl-kept","data":1}`), `"online":["webgl-kept"]`) {
			t.Fatal("the socket whose scheduled close was cancelled is gone")
		}
		h.free(kept)
	})

	t.Run("a node killed under an open socket: one close, 1006", func(t *testing.T) {
		h.t = t
		id := h.open(ws(doomed.url)+"/v1/ws?key=webgl-doomed", "")
		h.waitFor(id, "open")
		doomed.cmd.Process.Signal(syscall.SIGKILL)
		if c := h.waitFor(id, "close"); c.Code != 1006 || c.Refused != 0 {
			t.Fatalf("node killed: %+v, want 1006", c)
		}
		time.Sleep(300 * time.Millisecond)
		if n := h.count(id, "close"); n != 1 {
			t.Fatalf("%d close callbacks for one socket, want 1", n)
		}
		refused := h.open(ws(doomed.url)+"/v1/ws?key=webgl-doomed", "")
		if c := h.waitFor(refused, "close"); c.Refused != 1 || c.Code != 0 {
			t.Fatalf("connecting to the dead node: %+v, want refused with status 0", c)
		}
	})
}

// WebGLTransport.cs compiles only in a WebGL player (UNITY_WEBGL): compiled
// so here, with Mono standing in for IL2CPP and a stub of the attribute
// Unity provides, its externs and callbacks must match the C# contract.
func TestTheWebGLTransportCompilesAsAWebGLPlayerBuildsIt(t *testing.T) {
	sources, _ := filepath.Glob("../Runtime/*/*.cs")
	mcs(t, append([]string{"-define:UNITY_WEBGL", "-target:library", "-out:" + filepath.Join(t.TempDir(), "HeraldWebGL.dll"), "webgl/AOTStub.cs"}, sources...)...)
}

// harness drives the page's C harness and reads what its callbacks logged.
type harness struct {
	t   *testing.T
	ctx context.Context
}

type callback struct {
	Ev           string `json:"ev"`
	Socket       int    `json:"socket"`
	Text         string `json:"text"`
	Bytes        int    `json:"bytes"`
	Terminated   int    `json:"terminated"`
	Code         int    `json:"code"`
	Reason       string `json:"reason"`
	Refused      int    `json:"refused"`
	RetryAfterMs int    `json:"retryAfterMs"`
}

func (h *harness) eval(js string) string {
	h.t.Helper()
	var out any
	if err := chromedp.Run(h.ctx, chromedp.Evaluate(js, &out)); err != nil {
		h.t.Fatalf("%s: %v", js, err)
	}
	return fmt.Sprint(out)
}

func (h *harness) open(url, token string) int {
	h.t.Helper()
	var id int
	js := fmt.Sprintf(`Module.ccall("harness_open","number",["string","string"],[%q,%q])`, url, token)
	if err := chromedp.Run(h.ctx, chromedp.Evaluate(js, &id)); err != nil || id <= 0 {
		h.t.Fatalf("HeraldWs_Open(%s) = %d: %v", url, id, err)
	}
	return id
}

func (h *harness) free(id int) {
	h.eval(fmt.Sprintf(`Module.ccall("harness_free",null,["number"],[%d])`, id))
}

func (h *harness) log() []callback {
	h.t.Helper()
	var raw string
	if err := chromedp.Run(h.ctx, chromedp.Evaluate(`JSON.stringify(window.heraldLog)`, &raw)); err != nil {
		h.t.Fatal(err)
	}
	var cbs []callback
	if err := json.Unmarshal([]byte(raw), &cbs); err != nil {
		h.t.Fatal(err)
	}
	return cbs
}

func (h *harness) count(id int, ev string) int {
	n := 0
	for _, c := range h.log() {
		if c.Socket == id && c.Ev == ev {
			n++
		}
	}
	return n
}

// waitFor returns socket id's first callback ev.
func (h *harness) waitFor(id int, ev string) callback {
	h.t.Helper()
	var found callback
	wait.Until(h.t, 15*time.Second, fmt.Sprintf("socket %d's %s", id, ev), func() bool {
		for _, c := range h.log() {
			if c.Socket == id && c.Ev == ev {
				found = c
				return true
			}
			if c.Socket == id && c.Ev == "close" && ev != "close" {
				h.t.Fatalf("socket %d closed while waiting for %s: %+v", id, ev, c)
			}
		}
		return false
	})
	return found
}

func browser(t *testing.T) context.Context {
	t.Helper()
	var path string
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		t.Fatal("chromium not found (make test installs it)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.Flag("headless", true), chromedp.Flag("disable-gpu", true))
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(alloc)
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	return ctx
}

func ws(httpURL string) string { return "ws" + strings.TrimPrefix(httpURL, "http") }

func sign(t *testing.T, key string, ttl time.Duration) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": key, "exp": time.Now().Add(ttl).Unix()}).SignedString([]byte(tokenSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func post(t *testing.T, url, body string) string {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return string(out)
}
