package httpapi_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herald-push/herald/internal/redistest"
)

// encoding/json would take {"KEY":...} as "key" and the last of two "key"s;
// a proxy or a log reading the body otherwise would see another recipient.
// Both are refused, in sends, batch envelopes and batch items.
func TestWrongCaseAndRepeatedFieldNamesAreRefused(t *testing.T) {
	n := startNode(t, "solo", "")
	u1, u2 := dial(t, n, "key=u1"), dial(t, n, "key=u2")
	tests := []struct {
		name, path, body string
		code             string
		inBatch          bool
	}{
		{"upper-case key", "/v1/send", `{"KEY":"u1","data":1}`, "unknown_field", false},
		{"capitalised data", "/v1/send", `{"key":"u1","Data":1}`, "unknown_field", false},
		{"key twice", "/v1/send", `{"key":"u1","key":"u2","data":1}`, "duplicate_field", false},
		{"data twice", "/v1/send", `{"key":"u1","data":1,"data":2}`, "duplicate_field", false},
		{"key twice, once escaped", "/v1/send", `{"key":"u1","k\u0065y":"u2","data":1}`, "duplicate_field", false},
		{"topic body with Data", "/v1/topics/board", `{"Data":1}`, "unknown_field", false},
		{"upper-case items", "/v1/batch", `{"ITEMS":[{"key":"u1","data":1}]}`, "unknown_field", false},
		{"items twice", "/v1/batch", `{"items":[{"key":"u1","data":1}],"items":[{"key":"u2","data":1}]}`, "duplicate_field", false},
		{"item with Key", "/v1/batch", `{"items":[{"Key":"u1","data":1}]}`, "unknown_field", true},
		{"item with key twice", "/v1/batch", `{"items":[{"key":"u1","data":1,"key":"u2"}]}`, "duplicate_field", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, out := post(t, n.URL(tc.path), "application/json", tc.body)
			if tc.inBatch {
				out = out["results"].([]any)[0].(map[string]any)
				status = int(out["status"].(float64))
			}
			if status != http.StatusBadRequest || errorCode(out) != tc.code {
				t.Fatalf("got %d %v, want 400 %s", status, out, tc.code)
			}
		})
	}
	u1.nothing(100 * time.Millisecond)
	u2.nothing(0)
	// The exact names still work, an escaped one included.
	sendJSON(t, n, `{"k\u0065y":"u1","data":"ok"}`)
	if f := u1.next(); string(f.Data) != `"ok"` {
		t.Fatalf("u1 got %s", f.Data)
	}
}

// A JSON body is JSON only when it says so; and a browser page of another
// origin may not change anything, whatever it sends. Requests without an
// Origin (curl, backends) are unaffected.
func TestJSONNeedsItsContentTypeAndForeignOriginsMayNotChangeState(t *testing.T) {
	n := startNode(t, "solo", "", func(c *testConfig) { c.AllowedOrigins = []string{"*.city.example"} })
	u1 := dial(t, n, "key=u1")
	self := "http://" + n.Addr
	tests := []struct {
		name, method, path, contentType, origin, body string
		status                                        int
		code                                          string
	}{
		{"JSON send as text/plain", "POST", "/v1/send", "text/plain", "", `{"key":"u1","data":"x"}`, 415, "unsupported_media_type"},
		{"JSON send as a form", "POST", "/v1/send", "application/x-www-form-urlencoded", "", `{"key":"u1","data":"x"}`, 415, "unsupported_media_type"},
		{"JSON send without a type", "POST", "/v1/send", "", "", `{"key":"u1","data":"x"}`, 415, "unsupported_media_type"},
		{"batch as text/plain", "POST", "/v1/batch", "text/plain", "", `{"items":[{"key":"u1","data":"x"}]}`, 415, "unsupported_media_type"},
		{"batch without a type", "POST", "/v1/batch", "", "", `{"items":[{"key":"u1","data":"x"}]}`, 415, "unsupported_media_type"},
		{"text send from another site", "POST", "/v1/send?key=u1", "text/plain", "http://evil.example", "x", 403, "origin_not_allowed"},
		{"JSON send from another site", "POST", "/v1/send", "application/json", "http://evil.example", `{"key":"u1","data":"x"}`, 403, "origin_not_allowed"},
		{"post from another port", "POST", "/v1/topics/board", "text/plain", "http://127.0.0.1:1", "x", 403, "origin_not_allowed"},
		{"post from a sandboxed page", "POST", "/v1/topics/board", "text/plain", "null", "x", 403, "origin_not_allowed"},
		{"disconnect from another site", "DELETE", "/v1/connections/u1", "", "http://evil.example", "", 403, "origin_not_allowed"},
		{"websocket from another site", "GET", "/v1/ws?key=u1", "", "http://evil.example", "", 403, "origin_not_allowed"},
		{"JSON send as +json", "POST", "/v1/send", "application/vnd.herald+json", "", `{"key":"u1","data":"a"}`, 200, ""},
		{"text send with ?key=", "POST", "/v1/send?key=u1", "text/plain", "", "b", 200, ""},
		{"text send from the node's own page", "POST", "/v1/send?key=u1", "text/plain", self, "c", 200, ""},
		{"text send from an allowed origin", "POST", "/v1/send?key=u1", "text/plain", "https://board.city.example", "d", 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, n.URL(tc.path), strings.NewReader(tc.body))
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			if tc.origin != "" {
				req.Header.Set("Origin", tc.origin)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || (tc.code != "" && !strings.Contains(string(raw), `"code":"`+tc.code+`"`)) {
				t.Fatalf("got %d %s, want %d %s", resp.StatusCode, raw, tc.status, tc.code)
			}
		})
	}
	// Only the four accepted sends arrived, in order.
	for _, want := range []string{`"a"`, `"b"`, `"c"`, `"d"`} {
		if f := u1.next(); string(f.Data) != want {
			t.Fatalf("u1 got %s, want %s", f.Data, want)
		}
	}
	u1.nothing(100 * time.Millisecond)
	if line := metricLine(t, n, `herald_rejected_requests_total{code="origin_not_allowed"}`); !strings.HasSuffix(line, " 6") {
		t.Errorf("origin refusals counted: %q", line)
	}
}

// Every answer says nosniff and no-referrer; the pages carry a CSP that
// allows their own scripts and styles only and frames by the node and the
// allowed origins only.
func TestAnswersCarrySecurityHeadersAndThePagesAStrictCSP(t *testing.T) {
	n := startNode(t, "solo", "", func(c *testConfig) { c.AllowedOrigins = []string{"board.city.example", "board-?.example"} })
	for _, path := range []string{"/", "/console", "/v1/openapi.json", "/healthz", "/v1/nothing"} {
		resp, err := http.Get(n.URL(path))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s: headers %v", path, resp.Header)
		}
		csp := resp.Header.Get("Content-Security-Policy")
		if path != "/" && path != "/console" {
			continue
		}
		for _, want := range []string{"default-src 'none'", "script-src 'self' 'sha256-", "frame-ancestors 'self' board.city.example", "connect-src 'self'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP %q lacks %q", path, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "board-?") {
			t.Errorf("%s: CSP %q", path, csp)
		}
	}
}

// Requests that a node holds at once are bounded: over the bound the
// answer is 503 overloaded with Retry-After, while health, metrics and
// WebSockets go on; once the held requests finish, sends pass again.
func TestRequestsAndBodyBytesInFlightAreBounded(t *testing.T) {
	n := startNode(t, "solo", "", func(c *testConfig) {
		c.MaxRequestsInFlight = 2
		c.MaxBodyBytesInFlight = 100_000
	})
	u1 := dial(t, n, "key=u1")

	// hold starts a send whose body arrives but for its last byte, which
	// comes only when release is called; a contentLength of -1 sends it
	// chunked, and only its first 10 bytes before release.
	hold := func(contentLength int64) (release func() int) {
		pr, pw := io.Pipe()
		req, _ := http.NewRequest("POST", n.URL("/v1/send?key=u1"), pr)
		req.Header.Set("Content-Type", "text/plain")
		req.ContentLength = contentLength
		size, early := int(contentLength), int(contentLength)-1
		if contentLength < 0 {
			size, early = 20, 10
		}
		done := make(chan int, 1)
		go func() {
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				done <- 0
				return
			}
			resp.Body.Close()
			done <- resp.StatusCode
		}()
		go fmt.Fprint(pw, strings.Repeat("x", early))
		return func() int {
			fmt.Fprint(pw, strings.Repeat("x", size-early))
			pw.Close()
			return <-done
		}
	}
	// overloaded polls until the request is refused as overloaded.
	overloaded := func(method, path, body string) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			req, _ := http.NewRequest(method, n.URL(path), strings.NewReader(body))
			req.Header.Set("Content-Type", "text/plain")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(string(raw), `"overloaded"`) {
				if resp.Header.Get("Retry-After") == "" {
					t.Fatal("503 overloaded without Retry-After")
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s %s never refused as overloaded: %d %s", method, path, resp.StatusCode, raw)
			}
		}
	}

	// Body bytes: one send holding 60 kB leaves room for a small one, not
	// for one of 50 kB. What counts is what arrived.
	big := hold(60_000)
	inFlight := func(series, want string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); metricLine(t, n, series) != series+" "+want; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%q, want %s", metricLine(t, n, series), want)
			}
		}
	}
	inFlight("herald_api_body_bytes_in_flight", "59999")
	overloaded("POST", "/v1/send?key=nobody", strings.Repeat("y", 50_000))
	if status, out := post(t, n.URL("/v1/send?key=u1"), "text/plain", "small"); status != http.StatusOK {
		t.Fatalf("a small send beside the held one: %d %v", status, out)
	}
	// Requests: with a second one held, a third is refused, whatever it is.
	second := hold(10)
	inFlight("herald_api_body_bytes_in_flight", "60008")
	overloaded("GET", "/v1/cluster", "")
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if status, _ := get(t, n.URL(path)); status != http.StatusOK {
			t.Errorf("%s while full: %d", path, status)
		}
	}
	dial(t, n, "key=u2") // WebSockets have caps of their own
	if s := big(); s != http.StatusOK {
		t.Fatalf("the held big send: %d", s)
	}
	if s := second(); s != http.StatusOK {
		t.Fatalf("the second held send: %d", s)
	}
	// A body trickled without a length holds what it sent, not the
	// endpoint's limit: a few such connections cannot lock sends out.
	trickle := hold(-1)
	inFlight("herald_api_body_bytes_in_flight", "10")
	if status, out := post(t, n.URL("/v1/send?key=u1"), "text/plain", strings.Repeat("z", 50_000)); status != http.StatusOK {
		t.Fatalf("a 50 kB send beside a trickled body: %d %v", status, out)
	}
	if s := trickle(); s != http.StatusOK {
		t.Fatalf("the trickled send: %d", s)
	}
	sendJSON(t, n, `{"key":"u1","data":"after"}`)
	got := []string{}
	for range 6 {
		got = append(got, string(u1.next().Data))
	}
	if want := `"small" "` + strings.Repeat("x", 60_000) + `" "xxxxxxxxxx" "` + strings.Repeat("z", 50_000) + `" "` + strings.Repeat("x", 20) + `" "after"`; strings.Join(got, " ") != want {
		t.Fatalf("u1 got %.200v", got)
	}
}

// withPublicBoard makes "board" public, with history, and a rate these
// stories do not reach.
func withPublicBoard(c *testConfig) {
	c.PublicTopics = []string{"board"}
	c.HistoryTopics = []string{"board"}
	c.PublicRate, c.PublicBurst = 1000, 1000
}

// Data no client could read is refused on every way in, with a code that
// says why, and neither reaches a connection nor stays in the board's
// history for the next subscriber.
func TestPoisonedDataIsRefusedOnEveryWayInAndNeitherDeliveredNorKept(t *testing.T) {
	r := redistest.Start(t)
	a := startNode(t, "a", r.URL(), withPublicBoard)
	b := startNode(t, "b", r.URL(), withPublicBoard)
	watcher := dial(t, b, "key=u1&topics=board")

	poisons := []struct{ name, data string }{
		{"a raw 0xff byte in a string", `{"text":"poison ` + "\xff" + ` here"}`},
		{"a truncated UTF-8 sequence", `"euro ` + "\xe2\x82" + `"`},
		{"an escaped lone high surrogate", `{"text":"\ud800"}`},
		{"an escaped lone low surrogate", `"\udc00 alone"`},
		{"a high surrogate before a plain escape", `"\ud83d\u0041"`},
	}
	ways := []struct {
		name, method, path, contentType string
		body                            func(data string) string
		inBatch                         bool
	}{
		{"send", "POST", "/v1/send", "application/json", func(d string) string { return `{"key":"u1","data":` + d + `}` }, false},
		{"stored send", "POST", "/v1/send", "application/json", func(d string) string { return `{"key":"u1","store":true,"data":` + d + `}` }, false},
		{"anonymous board post", "POST", "/v1/topics/board", "application/json", func(d string) string { return `{"data":` + d + `}` }, false},
		{"broadcast", "POST", "/v1/broadcast", "application/json", func(d string) string { return `{"data":` + d + `}` }, false},
		{"batch send", "POST", "/v1/batch", "application/json", func(d string) string { return `{"items":[{"key":"u1","data":` + d + `}]}` }, true},
		{"batch publish", "POST", "/v1/batch", "application/json", func(d string) string { return `{"items":[{"topic":"board","data":` + d + `}]}` }, true},
		{"batch broadcast", "POST", "/v1/batch", "application/json", func(d string) string { return `{"items":[{"broadcast":true,"data":` + d + `}]}` }, true},
	}
	for _, p := range poisons {
		for _, w := range ways {
			t.Run(p.name+" by "+w.name, func(t *testing.T) {
				status, out := do(t, w.method, a.URL(w.path), w.contentType, w.body(p.data))
				if w.inBatch {
					if status != http.StatusOK {
						t.Fatalf("batch answered %d %v", status, out)
					}
					out = out["results"].([]any)[0].(map[string]any)
					status = int(out["status"].(float64))
				}
				if status != http.StatusBadRequest || errorCode(out) != "invalid_utf8" {
					t.Fatalf("got %d %v, want 400 invalid_utf8", status, out)
				}
				if msg, _ := out["error"].(map[string]any)["message"].(string); !strings.Contains(msg, "UTF-8") {
					t.Errorf("the message does not say what is wrong: %q", msg)
				}
			})
		}
	}
	// A surrogate pair is one valid character and passes.
	if status, out := post(t, a.URL("/v1/topics/board"), "application/json", `{"data":{"text":"\ud83d\ude00"}}`); status != http.StatusOK {
		t.Fatalf("a valid surrogate pair: %d %v", status, out)
	}
	if f := watcher.next(); f.Topic != "board" || !strings.Contains(string(f.Data), `\ud83d\ude00`) {
		t.Fatalf("the watcher's first frame is %s, want the valid post", f.Data)
	}
	marker := sendJSON(t, a, `{"key":"u1","data":"marker"}`)
	if f := watcher.next(); f.ID != marker["id"] {
		t.Fatalf("watcher got %+v, want the marker", f)
	}
	// A subscriber joining now is replayed the board's history: the valid
	// post only, and it stays connected.
	late := dial(t, a, "key=late&topics=board")
	if f := late.next(); !strings.Contains(string(f.Data), `\ud83d\ude00`) {
		t.Fatalf("replayed %s", f.Data)
	}
	late.nothing(200 * time.Millisecond)
}
