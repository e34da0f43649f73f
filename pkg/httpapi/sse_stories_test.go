package httpapi_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/internal/ssetest"
	"github.com/herald-push/herald/internal/wait"
)

// openEvents opens GET /v1/sse?query on n, failing on anything but a stream.
func openEvents(t *testing.T, n *testNode, query string, header http.Header) *ssetest.Stream {
	t.Helper()
	return ssetest.MustOpen(t, http.DefaultClient, n.URL("/v1/sse?"+query), header)
}

// storedID returns the stored id a send's answer gives key.
func storedIDOf(t *testing.T, out map[string]any, key string) string {
	t.Helper()
	results, _ := out["results"].(map[string]any)
	r, _ := results[key].(map[string]any)
	id, _ := r["id"].(string)
	if id == "" {
		t.Fatalf("answer %v has no stored id for %s", out, key)
	}
	return id
}

func frameOf(t *testing.T, e ssetest.Event) frame {
	t.Helper()
	var f frame
	if err := json.Unmarshal([]byte(e.Data), &f); err != nil {
		t.Fatalf("event %+v holds no frame: %v", e, err)
	}
	return f
}

func closeOf(t *testing.T, e ssetest.Event) ssetest.CloseEvent {
	t.Helper()
	var c ssetest.CloseEvent
	if e.Type != "close" || json.Unmarshal([]byte(e.Data), &c) != nil {
		t.Fatalf("event %+v, want a close event", e)
	}
	return c
}

// A client reading Server-Sent Events on node b gets what backends send
// through node a: a plain send as an event without an id, a stored one with
// its stored id as the event's id, each event's data the frame a WebSocket
// client would get; the stream's headers keep proxies from holding it back.
func TestALiveSendAcrossNodesReachesAnEventStreamClient(t *testing.T) {
	r := redistest.Start(t)
	a := startNode(t, "a", r.URL())
	b := startNode(t, "b", r.URL())
	s := openEvents(t, b, "key=u1&topics=news", nil)
	for name, want := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"} {
		if got := s.Resp.Header.Get(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	if enc := s.Resp.Header.Get("Content-Encoding"); enc != "" {
		t.Errorf("Content-Encoding %q: a compressed stream is buffered", enc)
	}
	if p := presenceOf(t, a, "u1"); p["online"] != true {
		t.Fatalf("u1 reads %v on node a once its stream is open, want online", p)
	}

	sendJSON(t, a, `{"key":"u1","data":{"gold":5}}`)
	plain := s.Next(5 * time.Second)
	if f := frameOf(t, plain); plain.Type != "message" || plain.LastID != "" || f.Key != "u1" || string(f.Data) != `{"gold":5}` || f.TS == 0 {
		t.Fatalf("plain send arrived as %+v, want a message with the frame of u1 and no id", plain)
	}
	id := storedIDOf(t, sendJSON(t, a, `{"key":"u1","data":"kept","store":true}`), "u1")
	stored := s.Next(5 * time.Second)
	if f := frameOf(t, stored); stored.LastID != id || f.ID != id || string(f.Data) != `"kept"` {
		t.Fatalf("stored send arrived as %+v, want the frame with id %s as the event id", stored, id)
	}
	post(t, a.URL("/v1/topics/news"), "application/json", `{"data":"extra"}`)
	topic := s.Next(5 * time.Second)
	if f := frameOf(t, topic); f.Topic != "news" || topic.LastID != id {
		t.Fatalf("topic post arrived as %+v, want the news frame, the last id still %s", topic, id)
	}
}

// Only the key's stored messages carry their id as the event's, so that
// Last-Event-ID is always a position in the key's stream: a stored message
// of a history topic the stream joined (which resumes with since.<topic>)
// comes without one, in JSON and in raw streams alike, and the last id
// stays the key's.
func TestOnlyTheKeysStoredMessagesBecomeEventIDs(t *testing.T) {
	n := startNode(t, "solo", "", func(c *testConfig) { c.HistoryTopics = []string{"board-json", "board-raw"} })
	for _, format := range []string{"json", "raw"} {
		t.Run(format, func(t *testing.T) {
			key, topic := "screen-"+format, "board-"+format
			s := openEvents(t, n, "key="+key+"&topics="+topic+"&format="+format, nil)
			id := storedIDOf(t, sendJSON(t, n, `{"key":"`+key+`","data":"mine","store":true}`), key)
			if e := s.Next(5 * time.Second); e.LastID != id {
				t.Fatalf("the key's stored message arrived as %+v, want event id %s", e, id)
			}
			post(t, n.URL("/v1/topics/"+topic), "application/json", `{"data":"a post"}`)
			e := s.Next(5 * time.Second)
			if !strings.Contains(e.Data, "a post") || e.LastID != id {
				t.Fatalf("the history topic's message arrived as %+v, want no id of its own (last id still %s)", e, id)
			}
		})
	}
}

// A stream opened with format=raw carries each message's data alone, a
// JSON string as its bare text, its line breaks as several data lines that
// EventSource joins again.
func TestARawEventStreamCarriesTheDataAloneLineBreaksAndAll(t *testing.T) {
	n := startNode(t, "solo", "")
	s := openEvents(t, n, "key=u1&format=raw", nil)
	sendJSON(t, n, `{"key":"u1","data":"first line\nsecond line"}`)
	if e := s.Next(5 * time.Second); e.Data != "first line\nsecond line" {
		t.Fatalf("raw event %+v, want the text with its line break", e)
	}
	sendJSON(t, n, "{\"key\":\"u1\",\"data\":{\n  \"a\": 1\n}}")
	if e := s.Next(5 * time.Second); e.Data != "{\n  \"a\": 1\n}" {
		t.Fatalf("raw event %+v, want the JSON as sent, whitespace and all", e)
	}
}

// A client that comes back with Last-Event-ID (as EventSource does) gets
// the stored messages after it, once; since= in the URL it first opened
// does not send again what it has, and a later since= wins over the header.
func TestLastEventIDResumesAfterTheLastEventAndTheLaterOfItAndSinceWins(t *testing.T) {
	r := redistest.Start(t)
	n := startNode(t, "a", r.URL())
	var ids []string
	for i := range 4 {
		ids = append(ids, storedIDOf(t, sendJSON(t, n, fmt.Sprintf(`{"key":"u1","data":%d,"store":true}`, i)), "u1"))
	}
	for _, tc := range []struct {
		what, query, lastEventID string
		first                    int
	}{
		{"Last-Event-ID alone", "key=u1", ids[0], 1},
		{"Last-Event-ID after the URL's since", "key=u1&since=" + ids[0], ids[2], 3},
		{"since after Last-Event-ID", "key=u1&since=" + ids[1], ids[0], 2},
		{"a Last-Event-ID that is no stored id is ignored", "key=u1&since=" + ids[2], "hello", 3},
	} {
		t.Run(tc.what, func(t *testing.T) {
			s := openEvents(t, n, tc.query, http.Header{"Last-Event-Id": {tc.lastEventID}})
			for _, want := range ids[tc.first:] {
				if e := s.Next(5 * time.Second); e.LastID != want {
					t.Fatalf("event %+v, want stored %s", e, want)
				}
			}
			s.Nothing(200 * time.Millisecond)
		})
	}
}

// An idle stream gets a comment every ping interval: proxies see it alive,
// and EventSource ignores it.
func TestAnIdleEventStreamGetsHeartbeats(t *testing.T) {
	n := startNode(t, "solo", "", func(c *testConfig) { c.PingInterval = 50 * time.Millisecond })
	s := openEvents(t, n, "key=u1", nil)
	wait.Until(t, 5*time.Second, "three heartbeats", func() bool { return s.Comments.Load() >= 3 })
	s.Nothing(100 * time.Millisecond)
}

// Every refusal comes before the stream starts, as the same plain HTTP
// error a WebSocket client gets, and leaves nothing behind in presence.
func TestABadEventStreamRequestIsRefusedBeforeTheStreamStarts(t *testing.T) {
	r := redistest.Start(t)
	n := startNode(t, "a", r.URL(), secured(t))
	for _, tc := range []struct {
		what, query string
		header      http.Header
		status      int
		code        string
	}{
		{"no token", "key=u1", nil, 401, "missing_token"},
		{"a bad token", "token=nonsense", nil, 401, "invalid_token"},
		{"another key's token", "key=u1&token=" + tokenFor(t, "u2"), nil, 403, "forbidden"},
		{"a topic the token does not allow", "topics=secret&token=" + tokenFor(t, "u1"), nil, 403, "forbidden"},
		{"a bad format", "format=xml&token=" + tokenFor(t, "u1"), nil, 400, "invalid_format"},
		{"a bad since", "since=yesterday&token=" + tokenFor(t, "u1"), nil, 400, "invalid_since"},
		{"a page of another site", "token=" + tokenFor(t, "u1"), http.Header{"Origin": {"https://evil.example"}}, 403, "origin_not_allowed"},
	} {
		t.Run(tc.what, func(t *testing.T) {
			s, resp := ssetest.Open(t, http.DefaultClient, n.URL("/v1/sse?"+tc.query), tc.header)
			if s != nil {
				t.Fatalf("the stream opened, want %d %s", tc.status, tc.code)
			}
			out := decode(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || errorCode(out) != tc.code {
				t.Fatalf("%d %v, want %d %s", resp.StatusCode, out, tc.status, tc.code)
			}
		})
	}
	for _, key := range []string{"u1", "u2"} {
		if status, out := withKey(t, http.MethodGet, n.URL("/v1/presence/"+key), senderKey, ""); status != 200 || out["online"] != false {
			t.Fatalf("presence of %s after the refusals: %d %v, want offline", key, status, out)
		}
	}
	// The token as Authorization: Bearer, for clients that are not browsers.
	s := openEvents(t, n, "", http.Header{"Authorization": {"Bearer " + tokenFor(t, "u1")}})
	withKey(t, http.MethodPost, n.URL("/v1/send"), senderKey, `{"key":"u1","data":"hi"}`)
	if f := frameOf(t, s.Next(5*time.Second)); f.Key != "u1" {
		t.Fatalf("frame %+v, want u1's", f)
	}
}

// A node shutting down ends its event streams with the closing event, code
// 1012, which tells the client to reconnect elsewhere, and then ends the
// response.
func TestADrainingNodeEndsEventStreamsWithACloseEvent1012(t *testing.T) {
	n := startNode(t, "solo", "")
	s := openEvents(t, n, "key=u1", nil)
	stopped := make(chan struct{})
	go func() { n.stop(); close(stopped) }()
	events, err := s.End(15 * time.Second)
	if err != io.EOF {
		t.Fatalf("the stream ended with %v, want the response's end", err)
	}
	if len(events) != 1 || closeOf(t, events[0]).Code != 1012 {
		t.Fatalf("events at shutdown %+v, want one close event with 1012", events)
	}
	<-stopped
}

// An operator's disconnect ends the stream with 4001, as it closes a
// WebSocket; the token's expiry with 4002.
func TestAnOperatorsDisconnectEndsAnEventStreamWith4001(t *testing.T) {
	r := redistest.Start(t)
	a := startNode(t, "a", r.URL())
	b := startNode(t, "b", r.URL())
	s := openEvents(t, b, "key=u1", nil)
	do(t, http.MethodDelete, a.URL("/v1/connections/u1"), "", "")
	events, err := s.End(10 * time.Second)
	if err != io.EOF || len(events) != 1 || closeOf(t, events[0]).Code != 4001 {
		t.Fatalf("events %+v ended by %v, want one close event with 4001 and the end", events, err)
	}
}

// A client that opens a stream and never reads it (a raw TCP client with a
// small receive buffer) is evicted once its queue overflows or a write to
// it times out, and the stream ends; a client of another key on the same
// node meanwhile gets every message at once.
func TestAnEventStreamClientThatStopsReadingIsEvictedAndHoldsBackNoOne(t *testing.T) {
	n := startNode(t, "solo", "", func(c *testConfig) {
		c.WriteTimeout = 500 * time.Millisecond
		c.QueueMessages = 64
	})
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	conn, err := d.Dial("tcp", n.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "GET /v1/sse?key=slow HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n", n.Addr)
	wait.Until(t, 5*time.Second, "the slow client online", func() bool { return presenceOf(t, n, "slow")["online"] == true })
	fast := openEvents(t, n, "key=fast", nil)

	// More than the socket buffers on both sides hold, whatever the
	// kernel sizes them to.
	data := `"` + strings.Repeat("x", 60<<10) + `"`
	for i := range 200 {
		sendJSON(t, n, fmt.Sprintf(`{"keys":["slow","fast"],"data":%s}`, data))
		if e := fast.Next(5 * time.Second); !strings.Contains(e.Data, "xxxx") {
			t.Fatalf("fast client's event %d: %.80s", i, e.Data)
		}
	}
	wait.Until(t, 10*time.Second, "the slow client evicted", func() bool { return presenceOf(t, n, "slow")["online"] == false })
	// What the server managed to write is still in the socket; then the
	// stream ends.
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	rest, err := io.ReadAll(bufio.NewReader(conn))
	if err != nil {
		t.Fatalf("the slow client's connection did not end: %v after %d bytes", err, len(rest))
	}
	if !strings.HasPrefix(string(rest), "HTTP/1.1 200 OK") {
		t.Fatalf("the slow client read %.200q", rest)
	}
	_, metrics := get(t, n.URL("/metrics"))
	body, _ := metrics["body"].(string)
	if !strings.Contains(body, `herald_connections_closed_total{reason="slow_consumer"}`) && !strings.Contains(body, `herald_connections_closed_total{reason="write_failed"}`) {
		t.Fatalf("no slow_consumer or write_failed end counted:\n%s", grepLines(body, "herald_connections_closed_total"))
	}
	fast.Nothing(50 * time.Millisecond)
}

func grepLines(s, substr string) string {
	var out []string
	for l := range strings.SplitSeq(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// haproxy runs haproxy in front of backend with the frontend lines given
// (after "bind <addr>"), and returns its address.
func haproxy(t *testing.T, backend, bindOptions string, frontend ...string) string {
	t.Helper()
	if _, err := exec.LookPath("haproxy"); err != nil {
		t.Fatalf("haproxy not found (make test installs it): %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfg := fmt.Sprintf(`global
  maxconn 256
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend in
  bind %s %s
  %s
  default_backend node
backend node
  server n %s
`, addr, bindOptions, strings.Join(frontend, "\n  "), backend)
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("haproxy", "-db", "-f", path)
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	wait.Until(t, 10*time.Second, "haproxy listening", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return addr
}

// Behind a proxy that refuses every WebSocket upgrade (as some corporate
// proxies and old balancers do), the demo board in a real browser reads
// the board as Server-Sent Events: a post made over plain HTTP appears.
func TestTheBoardBehindAProxyThatRefusesWebSocketsShowsAPost(t *testing.T) {
	r := redistest.Start(t)
	a := startNode(t, "a", r.URL())
	proxy := haproxy(t, a.Addr, "", `http-request deny deny_status 403 if { req.hdr(upgrade) -m found }`)
	// The proxy refuses upgrades: a WebSocket does not get through it.
	if status, _ := dialStatus(t, &testNode{ID: "proxy", Addr: proxy}, "key=u1", nil); status != http.StatusForbidden {
		t.Fatalf("a WebSocket through the proxy: %d, want its 403", status)
	}

	board := tab(t, browser(t))
	var transport string
	if err := chromedp.Run(board, chromedp.Tasks{
		chromedp.Navigate("http://" + proxy + "/"),
		chromedp.Poll(`document.querySelector("#state").textContent === "live"`, nil),
		chromedp.Evaluate(`document.querySelector("#state").dataset.transport`, &transport),
	}); err != nil {
		t.Fatalf("the board behind the proxy never went live: %v", err)
	}
	if transport != "sse" {
		t.Fatalf("the board went live over %q, want sse", transport)
	}
	post(t, a.URL("/v1/topics/board"), "application/json", `{"data":{"text":"Seen behind the proxy","name":"Ada"}}`)
	var shown string
	if err := chromedp.Run(board, chromedp.Tasks{
		chromedp.Poll(`document.querySelector("#board li") !== null`, nil),
		chromedp.Text("#board li", &shown),
	}); err != nil {
		t.Fatalf("the post never appeared on the board: %v", err)
	}
	if !strings.Contains(shown, "Seen behind the proxy") {
		t.Fatalf("board shows %q", shown)
	}
}

// Through an HTTP/2 hop (haproxy speaking cleartext HTTP/2 to the client,
// HTTP/1.1 to the node), a client on HTTP/2 receives its events as they
// are sent.
func TestAnEventStreamWorksThroughAnHTTP2Proxy(t *testing.T) {
	n := startNode(t, "solo", "", func(c *testConfig) { c.PingInterval = 100 * time.Millisecond })
	proxy := haproxy(t, n.Addr, "proto h2")
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	client := &http.Client{Transport: &http.Transport{Protocols: &protocols}}
	s := ssetest.MustOpen(t, client, "http://"+proxy+"/v1/sse?key=u1", nil)
	if s.Resp.ProtoMajor != 2 {
		t.Fatalf("the stream came over %s, want HTTP/2", s.Resp.Proto)
	}
	for i := range 3 {
		sendJSON(t, n, fmt.Sprintf(`{"key":"u1","data":%d}`, i))
		if f := frameOf(t, s.Next(5*time.Second)); string(f.Data) != fmt.Sprint(i) {
			t.Fatalf("event %d: %+v", i, f)
		}
	}
	wait.Until(t, 5*time.Second, "heartbeats through the proxy", func() bool { return s.Comments.Load() >= 2 })
}

// Event streams count against the same connection limits as WebSockets:
// one key's second connection on a node that allows one is refused 429
// with a Retry-After, whichever transport either uses.
func TestEventStreamsCountAgainstTheConnectionLimitsLikeWebSockets(t *testing.T) {
	n := startNode(t, "solo", "", func(c *testConfig) { c.MaxConnsPerKey = 1 })
	openEvents(t, n, "key=u1", nil)
	s, resp := ssetest.Open(t, http.DefaultClient, n.URL("/v1/sse?key=u1"), nil)
	if s != nil {
		t.Fatal("a second stream of u1 opened, over the limit of 1 per key")
	}
	out := decode(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || errorCode(out) != "too_many_connections" || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("second stream: %d %v (Retry-After %q), want 429 too_many_connections with a Retry-After", resp.StatusCode, out, resp.Header.Get("Retry-After"))
	}
	if status, _ := dialStatus(t, n, "key=u1", nil); status != http.StatusTooManyRequests {
		t.Fatalf("a WebSocket of u1 beside its stream: %d, want 429", status)
	}
	openEvents(t, n, "key=u2", nil) // another key is not concerned
}

// A game on a CDN (another origin the node allows) asks why its WebSocket
// was refused by the same request on /v1/sse: the browser lets it read the
// answer, and the Retry-After in it, only if the node says so.
func TestAPageOfAnAllowedOriginCanReadWhyItsConnectionWasRefused(t *testing.T) {
	n := startNode(t, "solo", "", func(c *testConfig) {
		c.MaxConnsPerKey = 1
		c.AllowedOrigins = []string{"games.example"}
	})
	openEvents(t, n, "key=u1", nil)
	req, _ := http.NewRequest(http.MethodGet, n.URL("/v1/sse?key=u1"), nil)
	req.Header.Set("Origin", "https://games.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h := resp.Header
	if resp.StatusCode != http.StatusTooManyRequests || h.Get("Access-Control-Allow-Origin") != "https://games.example" ||
		h.Get("Access-Control-Expose-Headers") != "Retry-After" || h.Get("Retry-After") == "" {
		t.Fatalf("refusal: %d, headers %v; want 429 readable by https://games.example with its Retry-After", resp.StatusCode, h)
	}
}

// A game on an origin the node does not allow reads that this is why its
// WebSocket was refused, on /v1/sse: a 403 origin_not_allowed it may read,
// with nothing opened or counted.
func TestAPageOfAnOriginNotAllowedCanReadThatItIsNot(t *testing.T) {
	n := startNode(t, "solo", "", func(c *testConfig) { c.AllowedOrigins = []string{"games.example"} })
	req, _ := http.NewRequest(http.MethodGet, n.URL("/v1/sse?key=u1"), nil)
	req.Header.Set("Origin", "https://elsewhere.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "https://elsewhere.example" ||
		!strings.Contains(string(body), `"origin_not_allowed"`) {
		t.Fatalf("refusal: %d %s, headers %v; want 403 origin_not_allowed readable by its page", resp.StatusCode, body, resp.Header)
	}
	// A WebSocket's refusal stays as it was: a page cannot read it anyway.
	req, _ = http.NewRequest(http.MethodGet, n.URL("/v1/ws?key=u1"), nil)
	req.Header.Set("Origin", "https://elsewhere.example")
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("/v1/ws refusal: %d, headers %v", resp.StatusCode, resp.Header)
	}
}

// An operator sees how many of a node's connections are event streams:
// herald_event_streams counts a stream while it is open, herald_connections
// counts it with the WebSockets, and both let go of it when it ends.
func TestAnOpenEventStreamIsCountedAndForgottenOnceItEnds(t *testing.T) {
	n := startNode(t, "solo", "")
	s := openEvents(t, n, "key=u1", nil)
	dial(t, n, "key=u2") // a WebSocket beside it
	if got := metricLine(t, n, "herald_event_streams"); got != "herald_event_streams 1" {
		t.Fatalf("with one stream open: %q", got)
	}
	if got := metricLine(t, n, "herald_connections"); got != "herald_connections 2" {
		t.Fatalf("with a stream and a WebSocket open: %q", got)
	}
	s.Close()
	wait.Until(t, 5*time.Second, "the ended stream is no longer counted", func() bool {
		return metricLine(t, n, "herald_event_streams") == "herald_event_streams 0" &&
			metricLine(t, n, "herald_connections") == "herald_connections 1"
	})
}
