package hub

import (
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"
)

// Out is the byte stream under a WebSocket's buffered writer. The hub holds
// it while it writes a connection's queued frames, so they gather in a
// buffer of the hub's, and then releases them in one system call: one write
// per connection per burst instead of one per frame, and no buffer of the
// connection's own between bursts, so the WebSocket's writer can stay small.
//
// A plain TCP connection is first written without waiting (the socket is
// non-blocking under Go's poller): a writer shared by many connections then
// never waits for a slow client. What does not fit in the socket's buffer,
// and every write on other connections (TLS), is finished by a goroutine of
// its own under the write timeout.
//
// Outside a hold, writes (pings, the close handshake) go straight to the
// connection.
type Out struct {
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

// NewOut returns the stream for conn.
func NewOut(conn net.Conn) *Out {
	o := &Out{conn: conn}
	if tcp, ok := conn.(*net.TCPConn); ok {
		if raw, err := tcp.SyscallConn(); err == nil {
			o.raw, o.attempt = raw, o.writeOnce
		}
	}
	return o
}

// Write is what the WebSocket's buffered writer flushes into.
func (o *Out) Write(p []byte) (int, error) {
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
func (o *Out) hold(buf []byte) {
	o.mu.Lock()
	o.held, o.buf, o.sent = true, buf[:0], 0
	o.mu.Unlock()
}

// tryHold starts gathering into buf, unless a write outside a hold is under
// way: a ping or the close, which waits while the client is slow to read.
// A shared writer must not wait for it.
func (o *Out) tryHold(buf []byte) bool {
	if !o.mu.TryLock() {
		return false
	}
	o.held, o.buf, o.sent = true, buf[:0], 0
	o.mu.Unlock()
	return true
}

// drop ends the hold and forgets what was gathered: the connection is
// failing.
func (o *Out) drop() {
	o.mu.Lock()
	o.held, o.buf = false, nil
	o.mu.Unlock()
}

// tryRelease writes what was gathered without waiting. When all of it went
// out the hold ends and the buffer is handed back for reuse; when the socket
// is full the rest stays held for release. An error ends the hold.
func (o *Out) tryRelease() (buf []byte, done bool, err error) {
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
func (o *Out) writeOnce(fd uintptr) bool {
	o.wn, o.werr = syscall.Write(int(fd), o.buf[o.sent:])
	return true
}

// release writes the rest of what was gathered, waiting at most timeout,
// and ends the hold.
func (o *Out) release(timeout time.Duration) error {
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
