package node_test

import (
	"bytes"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// slowLink is a TCP proxy in front of Redis that makes the link slow: every
// chunk waits delay in each direction, as on a long network path (latency,
// not bandwidth). It can also hold back Redis's replies on each connection
// that sends a given command, once the command reached Redis: the command
// runs, and its answer does not come, as when a link fails mid-command.
// Other connections go on.
type slowLink struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	delay   time.Duration
	armed   []byte        // a command containing it holds its connection's replies
	release chan struct{} // closed by Release
	clients []net.Conn
}

func newSlowLink(t *testing.T, target string, delay time.Duration) *slowLink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &slowLink{ln: ln, target: target, delay: delay, release: make(chan struct{})}
	go l.accept()
	t.Cleanup(func() {
		ln.Close()
		l.Release()
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, c := range l.clients {
			c.Close()
		}
	})
	return l
}

func (l *slowLink) URL() string { return "redis://" + l.ln.Addr().String() }

// SetDelay changes the delay of what is sent from now on.
func (l *slowLink) SetDelay(d time.Duration) {
	l.mu.Lock()
	l.delay = d
	l.mu.Unlock()
}

// HoldRepliesAfter holds, until Release, the replies on every connection
// that sends a command containing pattern, from that command on.
func (l *slowLink) HoldRepliesAfter(pattern string) {
	l.mu.Lock()
	l.armed = []byte(pattern)
	l.mu.Unlock()
}

// Release lets held replies go on, and holds no more.
func (l *slowLink) Release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.armed != nil {
		l.armed = nil
		close(l.release)
		l.release = make(chan struct{})
	}
}

func (l *slowLink) accept() {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", l.target)
		if err != nil {
			c.Close()
			continue
		}
		l.mu.Lock()
		l.clients = append(l.clients, c, s)
		l.mu.Unlock()
		var held atomic.Pointer[chan struct{}] // this connection's replies wait on it
		go l.pipe(c, s, &held, true)
		go l.pipe(s, c, &held, false)
	}
}

type chunk struct {
	at time.Time
	b  []byte
}

// pipe copies from to to, each chunk delay after it was read, in order.
func (l *slowLink) pipe(from, to net.Conn, held *atomic.Pointer[chan struct{}], toRedis bool) {
	q := make(chan chunk, 4096)
	go func() {
		defer close(q)
		for {
			buf := make([]byte, 32<<10)
			n, err := from.Read(buf)
			if n > 0 {
				l.mu.Lock()
				d := l.delay
				l.mu.Unlock()
				q <- chunk{at: time.Now().Add(d), b: buf[:n]}
			}
			if err != nil {
				return
			}
		}
	}()
	defer to.Close()
	for c := range q {
		time.Sleep(time.Until(c.at))
		if h := held.Load(); !toRedis && h != nil {
			<-*h
		}
		if toRedis {
			// Held before the command goes: its reply cannot slip through.
			l.mu.Lock()
			if l.armed != nil && bytes.Contains(c.b, l.armed) {
				release := l.release
				held.Store(&release)
			}
			l.mu.Unlock()
		}
		if _, err := to.Write(c.b); err != nil {
			go io.Copy(io.Discard, from) // keep the reader from blocking
			return
		}
	}
}
