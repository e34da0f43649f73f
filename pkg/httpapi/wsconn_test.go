package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/herald-push/herald/pkg/hub"
	"github.com/herald-push/herald/pkg/node"
	"github.com/herald-push/herald/pkg/protocol"
)

// These stories drive a real hub's shared writers through the WebSocket
// adapter over real loopback sockets, without a node: a bare hub lets them
// set what a node would not (one shared writer, tiny socket buffers).

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

func newOut(conn net.Conn) *wsOut {
	o := &wsOut{}
	o.init(conn)
	return o
}

func TestWhatIsGatheredGoesOutOnlyWhenReleasedAndInOrder(t *testing.T) {
	server, client := tcpPair(t)
	o := newOut(server)
	o.hold(nil)
	var want []byte
	for i := range 16 {
		p := fmt.Appendf(nil, "frame %d;", i)
		want = append(want, p...)
		if _, err := o.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	client.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := client.Read(make([]byte, 1)); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the client read %d bytes (%v) while they were held", n, err)
	}
	buf, done, err := o.tryRelease()
	if err != nil || !done {
		t.Fatalf("tryRelease = done %v, %v; want all written", done, err)
	}
	if o.writes != 1 {
		t.Errorf("16 gathered frames took %d writes, want 1", o.writes)
	}
	if cap(buf) < len(want) {
		t.Errorf("the gathering buffer was not handed back for reuse (cap %d)", cap(buf))
	}
	got := make([]byte, len(want))
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(client, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("client read %q (%v), want %q", got, err, want)
	}

	// Outside a hold, a write (a ping, the close) goes straight out.
	if _, err := o.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(client, got[:4]); err != nil || string(got[:4]) != "ping" {
		t.Fatalf("client read %q (%v), want ping", got[:4], err)
	}
}

func TestASlowClientsRestIsFinishedWithAWaitAndANeverReadingOneTimesOut(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB: more than the socket buffers take
	for _, tc := range []struct {
		name      string
		reads     bool
		wantError error
	}{
		{"the client reads late: everything arrives", true, nil},
		{"the client never reads: the write times out", false, os.ErrDeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server, client := tcpPair(t)
			o := newOut(server)
			o.hold(nil)
			o.Write(big)
			if _, done, err := o.tryRelease(); done || err != nil {
				t.Fatalf("tryRelease of 4 MiB to a client not reading = done %v, %v; want not done", done, err)
			}
			// A ping written meanwhile queues behind what is held.
			o.Write([]byte("ping"))
			got := make(chan []byte, 1)
			if tc.reads {
				go func() {
					b, _ := io.ReadAll(io.LimitReader(client, int64(len(big)+4)))
					got <- b
				}()
			}
			err := o.release(300 * time.Millisecond)
			if !errors.Is(err, tc.wantError) {
				t.Fatalf("release = %v, want %v", err, tc.wantError)
			}
			if tc.reads {
				if b := <-got; !bytes.Equal(b, append(big, "ping"...)) {
					t.Fatalf("client read %d bytes, want the 4 MiB then the ping (%d)", len(b), len(big)+4)
				}
			}
		})
	}
}

func TestAConnectionThatIsNotPlainTCPIsWrittenWithAWait(t *testing.T) {
	server, client := net.Pipe()
	defer server.Close()
	defer client.Close()
	o := newOut(server)
	o.hold(nil)
	o.Write([]byte("hello"))
	if _, done, err := o.tryRelease(); done || err != nil {
		t.Fatalf("tryRelease on a pipe = done %v, %v; want not done, without error", done, err)
	}
	got := make(chan string, 1)
	go func() {
		b := make([]byte, 5)
		io.ReadFull(client, b)
		got <- string(b)
	}()
	if err := o.release(time.Second); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s != "hello" {
		t.Fatalf("client read %q, want hello", s)
	}
}

// hubSession is a connection of a bare hub as the WebSocket adapter sees a
// node's session: Serve attaches it, Ended reports its end to done.
type hubSession struct {
	h        *hub.Hub
	c        *hub.Conn
	settings node.ConnSettings
	done     func(hub.End)
}

func (s *hubSession) Conn() *hub.Conn             { return s.c }
func (s *hubSession) Settings() node.ConnSettings { return s.settings }
func (s *hubSession) Serve(sock hub.Socket)       { s.h.Attach(s.c, sock, s.settings.WriteTimeout) }
func (s *hubSession) Ended(r hub.EndReason, err error) hub.End {
	end := s.c.Ended(r, err)
	s.done(end)
	return end
}

var testSettings = node.ConnSettings{PingInterval: time.Hour, WriteTimeout: 5 * time.Second, ReadLimit: 64}

// wsServer serves WebSockets (at /v1/ws, where the API document has them)
// into h through the adapter, with the lean buffers herald's handler uses. Each is the connection conns returns for
// the key in its ?key= (a new one for the key, by default). done hears how
// each ended. The keys in small get a server socket that takes only a few
// KiB.
type wsServer struct {
	*httptest.Server
	h        *hub.Hub
	settings node.ConnSettings
	done     func(hub.End)
	conns    func(key string) (*hub.Conn, error)
	small    []string

	mu    sync.Mutex
	socks map[string]*wsSocket
}

func newWSServer(t testing.TB, h *hub.Hub, done func(hub.End), small ...string) *wsServer {
	s := &wsServer{h: h, settings: testSettings, done: done, small: small, socks: map[string]*wsSocket{}}
	s.conns = func(key string) (*hub.Conn, error) { return h.Add(key, nil, nil, false) }
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *wsServer) serve(w http.ResponseWriter, r *http.Request) {
	key := r.URL.Query().Get("key")
	c, err := s.conns(key)
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	lean := &leanHijacker{ResponseWriter: w}
	ws, err := websocket.Accept(lean, r, nil)
	if err != nil {
		s.h.Remove(c)
		return
	}
	for _, k := range s.small {
		if k == key {
			lean.sock.out.conn.(*net.TCPConn).SetWriteBuffer(4096)
		}
	}
	s.mu.Lock()
	s.socks[key] = lean.sock
	s.mu.Unlock()
	serveWebSocket(&hubSession{h: s.h, c: c, settings: s.settings, done: s.done}, lean.sock, ws)
}

func (s *wsServer) socket(key string) *wsSocket {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.socks[key]
}

// smallDialer dials with a receive buffer of a few KiB, so that a client
// that does not read soon fills the server's socket.
var smallDialer = &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	return errors.Join(err, serr)
}}

// dialWS connects to srv as key; a small client has a small receive buffer.
func dialWS(t testing.TB, srv *httptest.Server, key string, small bool) *websocket.Conn {
	t.Helper()
	var opts *websocket.DialOptions
	if small {
		opts = &websocket.DialOptions{HTTPClient: &http.Client{Transport: &http.Transport{DialContext: smallDialer.DialContext}}}
	}
	ws, _, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http")+"/v1/ws?key="+key, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	ws.SetReadLimit(1 << 20)
	return ws
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s after 10s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestFramesQueuedTogetherReachTheClientInOrderInOneWrite(t *testing.T) {
	h := hub.New(hub.Options{QueueMessages: 64, QueueBytes: 1 << 20})
	c, err := h.Add("u1", nil, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 { // queued before the handshake ends: one burst
		h.SendKey("u1", hub.Delivery{ID: fmt.Sprint(i), TS: 1, Data: []byte(`"` + strings.Repeat("x", 100) + `"`)})
	}
	srv := newWSServer(t, h, func(hub.End) {})
	srv.conns = func(string) (*hub.Conn, error) { return c, nil }
	ws := dialWS(t, srv.Server, "u1", false)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := range 50 {
		_, b, err := ws.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf(`{"id":"%d",`, i); !strings.HasPrefix(string(b), want) {
			t.Fatalf("frame %d is %s, want it to start %s", i, b, want)
		}
	}
	out := &srv.socket("u1").out
	out.mu.Lock()
	writes := out.writes
	out.mu.Unlock()
	if writes != 1 {
		t.Errorf("50 queued frames took %d writes, want 1", writes)
	}
}

// A client stops reading while a shared writer moves on to another
// connection: what the slow client had not taken yet stays intact, and
// reaches it, in order, once it reads again.
func TestASlowClientsPendingFramesSurviveTheSharedWriterMovingOn(t *testing.T) {
	// One shared writer: each connection's burst is gathered in the buffer
	// the one before it used, handed on directly or through the spare.
	h := hub.New(hub.Options{QueueMessages: 1024, QueueBytes: 64 << 20, Writers: 1})
	conns := map[string]*hub.Conn{}
	for _, key := range []string{"fast", "slow", "other"} {
		c, err := h.Add(key, nil, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		conns[key] = c
	}
	frame := func(c byte, n int) []byte { return []byte(`"` + strings.Repeat(string(c), n) + `"`) }
	// Queued before each socket opens, and written as the sockets open one
	// after the other: fast's 48 KiB frame grows the writer's buffer,
	// slow's 36 KiB burst fits in it but not in slow's socket, and other's
	// frame comes next.
	h.SendKey("fast", hub.Delivery{ID: "f", TS: 1, Data: frame('f', 48<<10)})
	const slowFrames = 6
	for i := range slowFrames {
		h.SendKey("slow", hub.Delivery{ID: fmt.Sprint("s", i), TS: 1, Data: frame(byte('a'+i), 6<<10)})
	}
	h.SendKey("other", hub.Delivery{ID: "o", TS: 1, Data: frame('z', 40<<10)})
	srv := newWSServer(t, h, func(hub.End) {}, "slow")
	srv.conns = func(key string) (*hub.Conn, error) { return conns[key], nil }
	fast, slow, other := dialWS(t, srv.Server, "fast", false), dialWS(t, srv.Server, "slow", true), dialWS(t, srv.Server, "other", false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, c := range []struct {
		ws   *websocket.Conn
		want byte
	}{{fast, 'f'}, {other, 'z'}} {
		_, b, err := c.ws.Read(ctx)
		if err != nil || !strings.Contains(string(b), strings.Repeat(string(c.want), 100)) {
			t.Fatalf("read %.60s… (%v), want %c…", b, err, c.want)
		}
	}
	for i := range slowFrames {
		_, b, err := slow.Read(ctx)
		if err != nil {
			t.Fatalf("slow client, frame %d: %v", i, err)
		}
		want := fmt.Sprintf(`{"id":"s%d","key":"slow","data":"%s"`, i, strings.Repeat(string(byte('a'+i)), 6<<10))
		if !strings.HasPrefix(string(b), want) {
			at := 0
			for at < len(b) && at < len(want) && b[at] == want[at] {
				at++
			}
			t.Fatalf("slow client's frame %d differs from byte %d on: %.40q, want %.40q", i, at, b[at:], want[at:])
		}
	}
}

// A node that stops ends its connections with CloseNow; a connection whose
// handshake finishes only after that ends at once too, instead of reading
// on.
func TestCloseNowEndsEveryConnectionAndOneServedAfterIt(t *testing.T) {
	h := hub.New(hub.Options{QueueMessages: 8, QueueBytes: 1 << 20})
	ends := make(chan hub.End, 2)
	srv := newWSServer(t, h, func(e hub.End) { ends <- e })
	before := dialWS(t, srv.Server, "before", false)
	waitFor(t, "the first connection to be served", func() bool { return h.Len() == 1 })
	h.CloseNow()
	after := dialWS(t, srv.Server, "after", false)
	rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer rcancel()
	for _, ws := range []*websocket.Conn{before, after} {
		if _, _, err := ws.Read(rctx); err == nil || rctx.Err() != nil {
			t.Fatalf("a client read on after the node stopped (%v)", err)
		}
	}
	for range 2 {
		if e := <-ends; e.Reason != hub.EndStopped {
			t.Errorf("a connection ended with %v, want stopped", e)
		}
	}
}

// A subscriber stops reading while topic messages pile up in its socket:
// the burst's write times out, the connection ends as a failed write, and
// each of those messages still has its fan-out reported, as the other
// subscriber's copies went out.
func TestATopicMessagesFanoutIsReportedWhenTheWriteOfItsBurstFails(t *testing.T) {
	var mu sync.Mutex
	reported := 0
	h := hub.New(hub.Options{QueueMessages: 64, QueueBytes: 64 << 20, FanoutDone: func(kind protocol.Kind, _ time.Duration) {
		if kind == protocol.KindTopic {
			mu.Lock()
			reported++
			mu.Unlock()
		}
	}})
	ends := make(chan hub.End, 2)
	srv := newWSServer(t, h, func(e hub.End) { ends <- e }, "stuck")
	srv.settings.WriteTimeout = 200 * time.Millisecond
	srv.conns = func(key string) (*hub.Conn, error) { return h.Add(key, []string{"board"}, nil, false) }
	reader := dialWS(t, srv.Server, "reader", false)
	dialWS(t, srv.Server, "stuck", true) // never read
	waitFor(t, "both subscribers to be served", func() bool { return h.TopicConns("board") == 2 })
	const posts = 8
	data := []byte(`"` + strings.Repeat("p", 256<<10) + `"`) // 2 MiB in all: more than the stuck client's sockets take
	go func() {
		for range posts {
			if _, _, err := reader.Read(context.Background()); err != nil {
				return
			}
		}
	}()
	for i := range posts {
		h.SendTopic("board", hub.Delivery{ID: fmt.Sprint("p", i), TS: 1, Data: data})
	}
	select {
	case e := <-ends:
		if e.Reason != hub.EndWriteFailed {
			t.Fatalf("the stuck subscriber ended with %v, want write_failed", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stuck subscriber is still connected 10 s after its writes should have timed out")
	}
	waitFor(t, "every post's fan-out to be reported", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return reported == posts
	})
}

// readingClients connects conns clients (keys k0, k1, …) to srv and reads
// each frame they get into the returned channel, until the benchmark ends.
func readingClients(b *testing.B, h *hub.Hub, srv *httptest.Server, conns int) <-chan struct{} {
	b.Helper()
	got := make(chan struct{}, conns)
	for i := range conns {
		ws := dialWS(b, srv, fmt.Sprintf("k%d", i), false)
		go func() {
			for {
				if _, _, err := ws.Read(context.Background()); err != nil {
					return
				}
				got <- struct{}{}
			}
		}()
	}
	waitFor(b, "every client to be served", func() bool { return h.Len() == conns })
	return got
}

// BenchmarkBroadcastWrite is one broadcast to 200 real loopback WebSockets
// served through the adapter, until every client has read it: queueing,
// the shared writers, coder/websocket's framing and one write(2) per
// connection.
//
//	go test -run '^$' -bench BroadcastWrite -benchtime 2000x ./pkg/httpapi
func BenchmarkBroadcastWrite(b *testing.B) {
	const conns = 200
	h := hub.New(hub.Options{QueueMessages: 64, QueueBytes: 1 << 20})
	srv := newWSServer(b, h, func(hub.End) {})
	got := readingClients(b, h, srv.Server, conns)
	d := hub.Delivery{ID: "m", TS: 1, Data: []byte(`{"item":"sword"}`)}
	b.ReportAllocs()
	for b.Loop() {
		h.SendAll(d)
		for range conns {
			<-got
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*conns), "ns/copy")
}

// BenchmarkOneFrameAtATime is what a node holding connections does under
// many small sends: one frame for one connection, written before the next
// comes, so each finds the shared writers stopped and starts one. Its
// allocations per frame are the write path's own.
//
//	go test -run '^$' -bench OneFrameAtATime -benchmem ./pkg/httpapi
func BenchmarkOneFrameAtATime(b *testing.B) {
	const conns = 100
	h := hub.New(hub.Options{QueueMessages: 64, QueueBytes: 1 << 20})
	srv := newWSServer(b, h, func(hub.End) {})
	got := readingClients(b, h, srv.Server, conns)
	keys := make([]string, conns)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%d", i)
	}
	d := hub.Delivery{ID: "m", TS: 1, Data: []byte(`{"item":"sword"}`)}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		h.SendKey(keys[i%conns], d)
		i++
		<-got
	}
}

// FuzzClientFrames writes arbitrary bytes, as a client would after the
// handshake, into a real served connection. Whatever the bytes, the server
// must not panic, must end or keep the connection cleanly, and must forget
// it once the client hangs up.
func FuzzClientFrames(f *testing.F) {
	// A masked text frame "hi", a ping, a close, an oversized length, an
	// unmasked frame, a reserved opcode, a fragmented message, garbage.
	for _, seed := range [][]byte{
		{0x81, 0x82, 1, 2, 3, 4, 'h' ^ 1, 'i' ^ 2},
		{0x89, 0x80, 0, 0, 0, 0},
		{0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8},
		{0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4},
		{0x81, 0x02, 'h', 'i'},
		{0x83, 0x80, 0, 0, 0, 0},
		{0x01, 0x81, 0, 0, 0, 0, 'a', 0x80, 0x81, 0, 0, 0, 0, 'b'},
		[]byte("GET / HTTP/1.1\r\n\r\n"),
	} {
		f.Add(seed)
	}
	h := hub.New(hub.Options{QueueMessages: 16, QueueBytes: 1 << 16})
	srv := newWSServer(f, h, func(hub.End) {})
	srv.settings.WriteTimeout = time.Second
	addr := strings.TrimPrefix(srv.URL, "http://")

	f.Fuzz(func(t *testing.T, frames []byte) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = conn.Write([]byte("GET /v1/ws?key=fuzz HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("handshake: %v %v", resp, err)
		}
		conn.Write(frames) // the server may already have closed on bad input
		h.SendKey("fuzz", hub.Delivery{ID: "m1", TS: 1, Data: []byte(`1`)})
		conn.Close()
		deadline := time.Now().Add(5 * time.Second)
		for h.Len() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("connection still registered after the client hung up (frames %x)", frames)
			}
			time.Sleep(time.Millisecond)
		}
	})
}
