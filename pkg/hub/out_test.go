package hub

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
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

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

func TestWhatIsGatheredGoesOutOnlyWhenReleasedAndInOrder(t *testing.T) {
	server, client := tcpPair(t)
	o := NewOut(server)
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
			o := NewOut(server)
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
	o := NewOut(server)
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

// outHijacker gives coder/websocket a small writer flushing into an Out, as
// herald's HTTP adapter does.
type outHijacker struct {
	http.ResponseWriter
	out *Out
}

func (w *outHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := w.ResponseWriter.(http.Hijacker).Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.out = NewOut(conn)
	return conn, bufio.NewReadWriter(brw.Reader, bufio.NewWriterSize(w.out, 128)), nil
}

func TestFramesQueuedTogetherReachTheClientInOrderInOneWrite(t *testing.T) {
	h := New(Options{QueueMessages: 64, QueueBytes: 1 << 20})
	c := mustAdd(t, h, "u1", nil, false)
	for i := range 50 { // queued before the handshake ends: one burst
		h.SendKey("u1", Delivery{ID: fmt.Sprint(i), TS: 1, Data: []byte(`"` + strings.Repeat("x", 100) + `"`)})
	}
	outs := make(chan *Out, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hj := &outHijacker{ResponseWriter: w}
		ws, err := websocket.Accept(hj, r, nil)
		if err != nil {
			return
		}
		outs <- hj.out
		h.Serve(context.Background(), c, ws, ServeOptions{PingInterval: time.Hour, WriteTimeout: 5 * time.Second, ReadLimit: 64, Out: hj.out}, func(End) {})
	}))
	defer srv.Close()
	ws, _, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	out := <-outs
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
	out.mu.Lock()
	writes := out.writes
	out.mu.Unlock()
	if writes != 1 {
		t.Errorf("50 queued frames took %d writes, want 1", writes)
	}
}

// readingClients connects conns clients (keys k0, k1, …) to the server at
// url and reads each frame they get into the returned channel, until the
// benchmark ends.
func readingClients(b *testing.B, h *Hub, url string, conns int) <-chan struct{} {
	b.Helper()
	got := make(chan struct{}, conns)
	for i := range conns {
		ws, _, err := websocket.Dial(context.Background(), fmt.Sprintf("ws%s/?key=k%d", strings.TrimPrefix(url, "http"), i), nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { ws.CloseNow() })
		go func() {
			for {
				if _, _, err := ws.Read(context.Background()); err != nil {
					return
				}
				got <- struct{}{}
			}
		}()
	}
	for h.Len() < conns {
		time.Sleep(time.Millisecond)
	}
	return got
}

// BenchmarkBroadcastWrite is one broadcast to 200 real loopback WebSockets
// served through Outs, until every client has read it: queueing, the shared
// writers, coder/websocket's framing and one write(2) per connection.
//
//	go test -run '^$' -bench BroadcastWrite -benchtime 2000x ./pkg/hub
func BenchmarkBroadcastWrite(b *testing.B) {
	const conns = 200
	h := New(Options{QueueMessages: 64, QueueBytes: 1 << 20})
	srv := outServer(b, h, context.Background(), func(End) {})
	got := readingClients(b, h, srv.URL, conns)
	d := Delivery{ID: "m", TS: 1, Data: []byte(`{"item":"sword"}`)}
	b.ReportAllocs()
	for b.Loop() {
		h.SendAll(d)
		for range conns {
			<-got
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*conns), "ns/copy")
}

// outServer serves WebSockets, each for the key in its ?key=, into h
// through Outs as herald's HTTP adapter does, on ctx; done hears how each
// ended. The keys in small get a server socket that takes only a few KiB.
func outServer(t testing.TB, h *Hub, ctx context.Context, done func(End), small ...string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.URL.Query().Get("key")
		c, err := h.Add(key, nil, nil, false)
		if err != nil {
			return
		}
		hj := &smallSocketHijacker{outHijacker{ResponseWriter: w}, slices.Contains(small, key)}
		ws, err := websocket.Accept(hj, r, nil)
		if err != nil {
			h.Remove(c)
			return
		}
		h.Serve(ctx, c, ws, ServeOptions{PingInterval: time.Hour, WriteTimeout: 5 * time.Second, ReadLimit: 64, Out: hj.out}, done)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// smallSocketHijacker is an outHijacker whose socket, if small, takes only
// a few KiB before a write would wait.
type smallSocketHijacker struct {
	outHijacker
	small bool
}

func (w *smallSocketHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := w.outHijacker.Hijack()
	if err == nil && w.small {
		err = conn.(*net.TCPConn).SetWriteBuffer(4096)
	}
	return conn, brw, err
}

// A client stops reading while a shared writer moves on to another
// connection: what the slow client had not taken yet stays intact, and
// reaches it, in order, once it reads again.
func TestASlowClientsPendingFramesSurviveTheSharedWriterMovingOn(t *testing.T) {
	h := New(Options{QueueMessages: 1024, QueueBytes: 64 << 20})
	h.writers.max = 1 // one shared writer: the next connection reuses its buffer
	srv := outServer(t, h, context.Background(), func(End) {}, "slow")
	// The slow client's socket takes little too, so that the server's
	// socket fills after a few KiB.
	small := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return errors.Join(err, serr)
	}}
	dial := func(key string) *websocket.Conn {
		var opts *websocket.DialOptions
		if key == "slow" {
			opts = &websocket.DialOptions{HTTPClient: &http.Client{Transport: &http.Transport{DialContext: small.DialContext}}}
		}
		ws, _, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http")+"/?key="+key, opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ws.CloseNow() })
		ws.SetReadLimit(1 << 20)
		return ws
	}
	slow, fast, other := dial("slow"), dial("fast"), dial("other")
	for h.Len() < 3 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	frame := func(c byte, n int) []byte { return []byte(`"` + strings.Repeat(string(c), n) + `"`) }
	// Hold the writers back while three connections get their frames, so
	// that one writer takes them in a row: fast's 48 KiB frame grows its
	// buffer, slow's 36 KiB burst fits in it but not in slow's socket, and
	// other's frame comes next.
	h.writers.mu.Lock()
	h.writers.running = h.writers.max
	h.writers.mu.Unlock()
	h.SendKey("fast", Delivery{ID: "f", TS: 1, Data: frame('f', 48<<10)})
	const slowFrames = 6
	for i := range slowFrames {
		h.SendKey("slow", Delivery{ID: fmt.Sprint("s", i), TS: 1, Data: frame(byte('a'+i), 6<<10)})
	}
	h.SendKey("other", Delivery{ID: "o", TS: 1, Data: frame('z', 40<<10)})
	h.writers.mu.Lock()
	h.writers.running = 1
	h.writers.mu.Unlock()
	go h.writeReady()
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

// A node that stops ends its connections with CloseNow after cancelling the
// context it serves them on; a connection whose handshake finishes only
// after that ends at once too, instead of reading on.
func TestCloseNowEndsEveryConnectionAndOneServedAfterIt(t *testing.T) {
	h := New(Options{QueueMessages: 8, QueueBytes: 1 << 20})
	ctx, cancel := context.WithCancel(context.Background())
	ends := make(chan End, 2)
	srv := outServer(t, h, ctx, func(e End) { ends <- e })
	dial := func(key string) *websocket.Conn {
		ws, _, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http")+"/?key="+key, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ws.CloseNow() })
		return ws
	}
	before := dial("before")
	for h.Len() < 1 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	h.CloseNow()
	after := dial("after")
	rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer rcancel()
	for _, ws := range []*websocket.Conn{before, after} {
		if _, _, err := ws.Read(rctx); err == nil || rctx.Err() != nil {
			t.Fatalf("a client read on after the node stopped (%v)", err)
		}
	}
	for range 2 {
		if e := <-ends; e.Reason != EndStopped {
			t.Errorf("a connection ended with %v, want stopped", e)
		}
	}
}

// BenchmarkOneFrameAtATime is what a node holding connections does under
// many small sends: one frame for one connection, written before the next
// comes, so each finds the shared writers stopped and starts one. Its
// allocations per frame are the write path's own.
//
//	go test -run '^$' -bench OneFrameAtATime -benchmem ./pkg/hub
func BenchmarkOneFrameAtATime(b *testing.B) {
	const conns = 100
	h := New(Options{QueueMessages: 64, QueueBytes: 1 << 20})
	srv := outServer(b, h, context.Background(), func(End) {})
	got := readingClients(b, h, srv.URL, conns)
	keys := make([]string, conns)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%d", i)
	}
	d := Delivery{ID: "m", TS: 1, Data: []byte(`{"item":"sword"}`)}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		h.SendKey(keys[i%conns], d)
		i++
		<-got
	}
}
