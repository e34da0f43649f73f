package faults

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Link is a TCP proxy standing for a network path: it forwards connections
// made to Addr to a target, holding each byte for a one-way delay in each
// direction (order and stream semantics kept), can stop forwarding
// without closing anything, as a partition does, and can hold back the
// answer to a given command (HoldRepliesAfter). It needs no privileges.
type Link struct {
	t      testing.TB
	ln     net.Listener
	target string

	mu       sync.Mutex
	up, down time.Duration // toward the target, and back
	cut      bool
	healed   chan struct{} // closed by Heal: wakes forwarders held by a cut
	holdOn   []byte        // set by HoldRepliesAfter: a chunk containing it holds its connection's replies
	replies  chan struct{} // closed by ReleaseReplies: wakes replies held since holdOn matched
	conns    map[net.Conn]struct{}
	closed   bool
	wg       sync.WaitGroup
	released chan struct{} // closed when the link closes
}

// chunk is what one read returned, and when it may be passed on.
type chunk struct {
	b   []byte
	due time.Time
}

// NewLink listens on a free loopback port and forwards to target until the
// test ends.
func NewLink(t testing.TB, target string) *Link {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &Link{t: t, ln: ln, target: target, healed: make(chan struct{}),
		replies: make(chan struct{}), conns: map[net.Conn]struct{}{}, released: make(chan struct{})}
	l.wg.Go(l.accept)
	t.Cleanup(l.Close)
	return l
}

// Addr is where to connect instead of the target.
func (l *Link) Addr() string { return l.ln.Addr().String() }

// SetDelay sets the one-way delay toward the target (up) and back (down),
// for bytes read from now on.
func (l *Link) SetDelay(up, down time.Duration) {
	l.mu.Lock()
	l.up, l.down = up, down
	l.mu.Unlock()
}

// Cut stops forwarding in both directions; nothing is closed and nothing is
// dropped: bytes already sent wait, as behind a partition that TCP
// retransmissions will cross once it heals. New connections are accepted
// (a SYN got through) but carry nothing.
func (l *Link) Cut() {
	l.mu.Lock()
	if !l.cut {
		l.cut = true
		l.healed = make(chan struct{})
	}
	l.mu.Unlock()
}

// Heal resumes forwarding; what waited goes through in order.
func (l *Link) Heal() {
	l.mu.Lock()
	if l.cut {
		l.cut = false
		close(l.healed)
	}
	l.mu.Unlock()
}

// HoldRepliesAfter makes a command run while its answer never comes, as
// when a link fails after the command reached the target and before the
// reply came back. A test wants that because a client cannot tell it from
// a command that never ran: a write that timed out may be done, and what
// the client does next (answer, retry) must allow for it. From the first
// chunk containing pattern that a connection forwards toward the target,
// that chunk included, everything the target sends back on that connection
// waits until ReleaseReplies; the chunk itself goes through. Other
// connections, and what goes toward the target, go on. The pattern is
// matched within what one read returned, which holds a whole small
// command, such as a Redis one.
func (l *Link) HoldRepliesAfter(pattern string) {
	l.mu.Lock()
	l.holdOn = []byte(pattern)
	l.mu.Unlock()
}

// ReleaseReplies lets the replies held since HoldRepliesAfter go on, in
// order, and holds no more until the next HoldRepliesAfter.
func (l *Link) ReleaseReplies() {
	l.mu.Lock()
	if l.holdOn != nil {
		l.holdOn = nil
		close(l.replies)
		l.replies = make(chan struct{})
	}
	l.mu.Unlock()
}

// holdIfMatched is called before b is forwarded toward the target: if b
// holds the pattern of HoldRepliesAfter, the connection's replies wait from
// now on. It is armed before b goes, so b's reply cannot slip through.
func (l *Link) holdIfMatched(b []byte, held *atomic.Pointer[chan struct{}]) {
	l.mu.Lock()
	if l.holdOn != nil && bytes.Contains(b, l.holdOn) {
		replies := l.replies
		held.Store(&replies)
	}
	l.mu.Unlock()
}

// Close ends the link and every connection through it.
func (l *Link) Close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	close(l.released)
	for c := range l.conns {
		c.Close()
	}
	l.mu.Unlock()
	l.ln.Close()
	l.wg.Wait()
}

func (l *Link) accept() {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		l.wg.Go(func() { l.serve(c) })
	}
}

func (l *Link) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		c.Close()
		return false
	}
	l.conns[c] = struct{}{}
	return true
}

func (l *Link) serve(client net.Conn) {
	if !l.track(client) {
		return
	}
	// A cut link holds even the connection to the target back: a partition
	// lets nothing through.
	if !l.pass() {
		return
	}
	server, err := net.DialTimeout("tcp", l.target, 5*time.Second)
	if err != nil {
		client.Close()
		return
	}
	if !l.track(server) {
		client.Close()
		return
	}
	// What this connection's replies wait on once held (HoldRepliesAfter).
	var held atomic.Pointer[chan struct{}]
	var wg sync.WaitGroup
	wg.Go(func() { l.pipe(server, client, true, &held) })
	wg.Go(func() { l.pipe(client, server, false, &held) })
	wg.Wait()
	l.mu.Lock()
	delete(l.conns, client)
	delete(l.conns, server)
	l.mu.Unlock()
	client.Close()
	server.Close()
}

// pass waits while the link is cut; false once it closed.
func (l *Link) pass() bool {
	for {
		l.mu.Lock()
		cut, healed := l.cut, l.healed
		l.mu.Unlock()
		if !cut {
			return true
		}
		select {
		case <-healed:
		case <-l.released:
			return false
		}
	}
}

// pipe copies src to dst: a reader stamps each chunk with when it is due, a
// writer holds it until then (and while the link is cut, and, coming back
// from the target, while held points at a channel not yet closed). The
// queue is unbounded so that a delay never slows the sender down, as on a
// long fat network path.
func (l *Link) pipe(dst, src net.Conn, up bool, held *atomic.Pointer[chan struct{}]) {
	queue := make(chan chunk, 4096)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for c := range queue {
			if d := time.Until(c.due); d > 0 {
				select {
				case <-time.After(d):
				case <-l.released:
					return
				}
			}
			if h := held.Load(); !up && h != nil {
				select {
				case <-*h:
				case <-l.released:
					return
				}
			}
			if !l.pass() {
				return
			}
			if up {
				l.holdIfMatched(c.b, held)
			}
			if _, err := dst.Write(c.b); err != nil {
				src.Close() // unblocks the reader
				return
			}
		}
		// The source ended: pass the half-close on.
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			l.mu.Lock()
			delay := l.down
			if up {
				delay = l.up
			}
			l.mu.Unlock()
			select {
			case queue <- chunk{b: append([]byte(nil), buf[:n]...), due: time.Now().Add(delay)}:
			case <-l.released:
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				// A reset or close: end both sides.
				dst.Close()
			}
			break
		}
	}
	close(queue)
	<-done
}
