package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"

	"github.com/herald-push/herald/pkg/hub"
	"github.com/herald-push/herald/pkg/node"
	"github.com/herald-push/herald/pkg/protocol"
)

// wsSession is what the WebSocket adapter needs of an admitted connection
// (node.Session).
type wsSession interface {
	Conn() *hub.Conn
	Settings() node.ConnSettings
	Serve(sock hub.Socket)
	Ended(reason hub.EndReason, err error) hub.End
}

// wsSocket is one WebSocket as the hub's shared writers drive it
// (hub.Socket): a burst of frames goes through coder/websocket's framing
// into out, which gathers it and writes it in one system call.
//
// The rest of the connection's life is the adapter's: one goroutine reads
// the client (acks, application-level pings, its close) and a timer pings
// it; when reading ends, the socket tells the session, once.
type wsSocket struct {
	ws           *websocket.Conn
	conn         *hub.Conn
	pingInterval time.Duration
	writeTimeout time.Duration // a ping's pong may take this long
	ping         atomic.Pointer[time.Timer]
	out          wsOut // under ws's buffered writer
}

// newWSSocket returns the socket of a connection being hijacked; its
// WebSocket comes once the handshake is done (serveWebSocket).
func newWSSocket(conn net.Conn) *wsSocket {
	s := &wsSocket{}
	s.out.init(conn)
	return s
}

// serveWebSocket runs sess on ws, whose handshake is done, and returns at
// once: the connection lives on the reading goroutine, its ping timer and
// the hub's writers.
//
// An idle connection costs one parked goroutine (reading: the client's acks,
// pings and close) and one timer (pings). The reads take no context: one
// that can end would register a watcher per connection (coder/websocket's
// context.AfterFunc, and an entry in the parent's children), a few hundred
// bytes of every idle connection. Ending the connection is Kill's job
// instead.
func serveWebSocket(sess wsSession, sock *wsSocket, ws *websocket.Conn) {
	live := sess.Settings()
	sock.ws, sock.conn = ws, sess.Conn()
	sock.pingInterval, sock.writeTimeout = live.PingInterval, live.WriteTimeout
	ws.SetReadLimit(live.ReadLimit)
	sess.Serve(sock)
	// Armed once stored, so that the first ping finds its timer.
	t := time.AfterFunc(time.Duration(math.MaxInt64), sock.pingClient)
	sock.ping.Store(t)
	t.Reset(live.PingInterval)
	go sock.read(sess)
}

func (s *wsSocket) read(sess wsSession) {
	reason, err := s.readClient()
	s.ping.Load().Stop()
	sess.Ended(reason, err)
}

// readClient reads the client's frames until the connection ends: acks go
// to the hub (Options.Acked), pings are answered, anything else is
// dropped. It says how the client ended the connection; if the server
// ended it, the hub knows better (Conn.Ended).
func (s *wsSocket) readClient() (hub.EndReason, error) {
	var msg struct {
		Type string `json:"type"`
		ID   string `json:"id"`
	}
	for {
		_, b, err := s.ws.Read(context.Background())
		if err != nil {
			_ = s.ws.CloseNow()
			switch websocket.CloseStatus(err) {
			case websocket.StatusNormalClosure, websocket.StatusGoingAway, websocket.StatusNoStatusRcvd:
				return hub.EndClientClosed, nil
			case websocket.StatusMessageTooBig:
				return hub.EndReadLimit, err
			}
			return hub.EndReadFailed, err
		}
		msg.Type, msg.ID = "", ""
		if json.Unmarshal(b, &msg) != nil {
			continue
		}
		switch msg.Type {
		case "ack":
			if id, ok := protocol.ParseStoredID(msg.ID); ok {
				s.conn.Acked(id)
			}
		case "ping":
			s.conn.Pong()
		}
	}
}

// pingClient runs from the socket's timer: a pong within the write timeout
// keeps the connection, anything else ends it.
func (s *wsSocket) pingClient() {
	ctx, cancel := context.WithTimeout(context.Background(), s.writeTimeout)
	err := s.ws.Ping(ctx)
	cancel()
	if err != nil {
		s.conn.Fail(hub.EndPingTimeout, err) // a connection ended otherwise keeps its reason
		return
	}
	s.ping.Load().Reset(s.pingInterval)
}

// TryHold starts a burst, unless a ping or the close is being written.
func (s *wsSocket) TryHold(buf []byte) bool { return s.out.tryHold(buf) }

// Hold starts a burst once a ping or the close is written.
func (s *wsSocket) Hold(buf []byte) { s.out.hold(buf) }

// Put frames one message; coder/websocket's writer flushes it into out.
// Into memory: no timeout needed.
func (s *wsSocket) Put(frame []byte, _ protocol.StoredID) error {
	return s.ws.Write(context.Background(), websocket.MessageText, frame)
}

// TryRelease writes the burst without waiting.
func (s *wsSocket) TryRelease() ([]byte, bool, error) { return s.out.tryRelease() }

// Release writes the rest of the burst within timeout.
func (s *wsSocket) Release(timeout time.Duration) error { return s.out.release(timeout) }

// Drop forgets the burst.
func (s *wsSocket) Drop() { s.out.drop() }

// Close sends the close frame and waits for the client's answer (at most
// coder/websocket's 5 s); reading then ends.
func (s *wsSocket) Close(code protocol.CloseCode, reason string) error {
	return s.ws.Close(websocket.StatusCode(code), reason)
}

// Kill closes the connection at once; reading then ends.
func (s *wsSocket) Kill() { _ = s.ws.CloseNow() }

// wsOut is the byte stream under a WebSocket's buffered writer. The hub
// holds it while it writes a connection's queued frames, so they gather in a
// buffer of the hub's, and then releases them in one system call: one write
// per connection per burst instead of one per frame, and no buffer of the
// connection's own between bursts, so the WebSocket's writer can stay small.
//
// A plain TCP connection is first written without waiting (the socket is
// non-blocking under Go's poller): a writer shared by many connections then
// never waits for a slow client. What does not fit in the socket's buffer,
// and every write on other connections (TLS), is finished by a goroutine of
// the hub's under the write timeout.
//
// Outside a hold, writes (pings, the close handshake) go straight to the
// connection.
type wsOut struct {
	conn net.Conn
	raw  syscall.RawConn // nil: writes may block

	mu   sync.Mutex
	held bool
	buf  []byte // gathered during a hold
	sent int    // of buf, already written
	// writes counts the writes made on conn: what the gathering saves,
	// for tests.
	writes int

	// attempt is o.writeOnce, bound once: a closure made per write would
	// be an allocation per write. wn and werr are its results.
	attempt func(fd uintptr) bool
	wn      int
	werr    error
}

func (o *wsOut) init(conn net.Conn) {
	o.conn = conn
	if tcp, ok := conn.(*net.TCPConn); ok {
		if raw, err := tcp.SyscallConn(); err == nil {
			o.raw, o.attempt = raw, o.writeOnce
		}
	}
}

// Write is what the WebSocket's buffered writer flushes into.
func (o *wsOut) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.held {
		o.buf = append(o.buf, p...)
		return len(p), nil
	}
	o.writes++
	return o.conn.Write(p)
}

// hold starts gathering into buf, waiting for a write outside a hold to
// end.
func (o *wsOut) hold(buf []byte) {
	o.mu.Lock()
	o.held, o.buf, o.sent = true, buf[:0], 0
	o.mu.Unlock()
}

// tryHold starts gathering into buf, unless a write outside a hold is under
// way: a ping or the close, which waits while the client is slow to read.
// A shared writer must not wait for it.
func (o *wsOut) tryHold(buf []byte) bool {
	if !o.mu.TryLock() {
		return false
	}
	o.held, o.buf, o.sent = true, buf[:0], 0
	o.mu.Unlock()
	return true
}

// drop ends the hold and forgets what was gathered: the connection is
// failing.
func (o *wsOut) drop() {
	o.mu.Lock()
	o.held, o.buf = false, nil
	o.mu.Unlock()
}

// tryRelease writes what was gathered without waiting. When all of it went
// out the hold ends and the buffer is handed back for reuse; when the socket
// is full the rest stays held for release. An error ends the hold.
func (o *wsOut) tryRelease() (buf []byte, done bool, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.raw == nil {
		return nil, false, nil
	}
	for o.sent < len(o.buf) {
		o.writes++
		werr := o.raw.Write(o.attempt)
		if werr == nil {
			werr = o.werr
		}
		n := o.wn
		switch {
		case werr == syscall.EAGAIN:
			return nil, false, nil
		case werr == syscall.EINTR:
			continue
		case werr != nil:
			o.held, o.buf = false, nil
			return nil, false, fmt.Errorf("write: %w", werr)
		}
		o.sent += n
	}
	buf, o.buf, o.held = o.buf[:0], nil, false
	return buf, true, nil
}

// writeOnce writes what is left of buf once, without waiting (it answers
// true: done, whatever happened), leaving the result in wn and werr.
func (o *wsOut) writeOnce(fd uintptr) bool {
	o.wn, o.werr = syscall.Write(int(fd), o.buf[o.sent:])
	return true
}

// release writes the rest of what was gathered, waiting at most timeout,
// and ends the hold.
func (o *wsOut) release(timeout time.Duration) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	rest := o.buf[o.sent:]
	o.held, o.buf = false, nil
	if len(rest) == 0 {
		return nil
	}
	if err := o.conn.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return fmt.Errorf("write deadline: %w", err)
	}
	o.writes++
	_, err := o.conn.Write(rest)
	// Pings and the close handshake write without a deadline of their own.
	if derr := o.conn.SetWriteDeadline(time.Time{}); err == nil && derr != nil {
		err = fmt.Errorf("write deadline: %w", derr)
	}
	return err
}
