package hub

import (
	"sync"

	"github.com/herald-push/herald/pkg/ordering"
	"github.com/herald-push/herald/pkg/protocol"
)

// writers is the hub's shared set of writer goroutines. A connection with
// frames queued waits in ready, at most once; a writer takes it, gathers all
// its queued frames in one burst of its Socket (one system call on a plain
// TCP connection) and puts it back at the end of the line if more came
// meanwhile. A broadcast to many connections so costs one write each and
// no goroutine each. The set grows to max only while work waits and shrinks
// to none when there is none.
type writers struct {
	max int    // set by New
	run func() // Hub.writeReady, bound once: "go h.writeReady()" makes a closure, an allocation, every time a writer starts

	// mu guards the fields below. It is the last lock in the hub's order
	// (package doc): taken with no Conn.mu held, and held over no other.
	mu      sync.Mutex
	ready   []*Conn
	head    int // ready[head:] wait
	running int
	// spare holds the gathering buffers of writers that stopped, for the
	// next to start: under many small sends each frame finds the writers
	// stopped, and a buffer per start was an allocation per frame.
	spare [][]byte
}

// maxGatherBuffer is the largest gathering buffer a writer keeps between
// connections; a larger one, grown by a big burst, is left to the collector.
const maxGatherBuffer = 64 << 10

// schedule has c's queue written; c's writer is claimed
// (needsWriterLocked).
func (h *Hub) schedule(c *Conn) {
	w := &h.writers
	w.mu.Lock()
	w.ready = append(w.ready, c)
	start := w.running < w.max
	if start {
		w.running++
	}
	w.mu.Unlock()
	if start {
		go w.run()
	}
}

// buffer hands a starting writer a spare gathering buffer, if there is one.
func (w *writers) buffer() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	if n := len(w.spare); n > 0 {
		buf := w.spare[n-1]
		w.spare[n-1] = nil
		w.spare = w.spare[:n-1]
		return buf
	}
	return nil
}

// next takes the connection waiting longest, or says there is none, keeps
// the caller's buffer (at most maxGatherBuffer) for the next writer to
// start, and stops counting the caller as running.
func (w *writers) next(buf []byte) *Conn {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.head == len(w.ready) {
		clear(w.ready)
		w.ready, w.head = w.ready[:0], 0
		w.running--
		if buf != nil && cap(buf) <= maxGatherBuffer && len(w.spare) < w.max {
			w.spare = append(w.spare, buf[:0])
		}
		return nil
	}
	c := w.ready[w.head]
	w.ready[w.head] = nil
	w.head++
	return c
}

func (h *Hub) writeReady() {
	buf := h.writers.buffer()
	for c := h.writers.next(buf); c != nil; c = h.writers.next(buf) {
		buf = h.writeBurst(c, buf)
		if cap(buf) > maxGatherBuffer {
			buf = nil
		}
	}
}

// writeBurst writes what c has queued, gathered in buf, and returns buf for
// the next connection.
func (h *Hub) writeBurst(c *Conn, buf []byte) []byte {
	entries, closing := c.take()
	if closing {
		go h.closeSocket(c)
		return buf
	}
	if len(entries) > 0 {
		if !c.sock.TryHold(buf) {
			go h.writeBurstWaiting(c, entries)
			return buf
		}
		if !c.gather(entries) {
			return buf // the socket forgot buf with the burst
		}
		reuse, done, err := c.sock.TryRelease()
		if err != nil {
			c.failWrite(entries, err)
			return buf
		}
		if !done {
			// A slow client, or a connection that cannot be written without
			// waiting: finish on a goroutine of its own. What is left to
			// write may be in buf, which the socket keeps until then.
			go h.finishBurst(c, entries)
			return nil
		}
		buf = reuse
		h.written(entries)
		c.recycle(entries)
	}
	if c.more() {
		h.schedule(c)
	}
	return buf
}

// gather puts entries into c's held burst. If one fails, the burst is
// dropped and c fails: none of entries, not even those put before, will be
// written, and every one of them is accounted for as such.
func (c *Conn) gather(entries []entry) bool {
	for _, e := range entries {
		// Into memory: no timeout needed. A WebSocket's can wait only
		// behind a ping being written to a full socket, which the ping's
		// own timeout bounds.
		id := e.id
		if e.stream != ordering.KeyStream {
			// A history topic's id: a position in another stream, which
			// a transport resuming the key's (SSE's Last-Event-ID) must
			// not take for the key's.
			id = protocol.StoredID{}
		}
		if err := c.sock.Put(e.frame, id); err != nil {
			c.sock.Drop()
			c.failWrite(entries, err)
			return false
		}
	}
	return true
}

// writeBurstWaiting writes c's burst on a goroutine of its own, for when
// c's socket is busy with a write that may wait.
func (h *Hub) writeBurstWaiting(c *Conn, entries []entry) {
	c.sock.Hold(nil)
	if c.gather(entries) {
		h.finishBurst(c, entries)
	}
}

// finishBurst writes the rest of c's burst, waiting at most the write
// timeout, and hands c back to the shared writers.
func (h *Hub) finishBurst(c *Conn, entries []entry) {
	if err := c.sock.Release(c.writeTimeout); err != nil {
		c.failWrite(entries, err)
		return
	}
	h.written(entries)
	c.recycle(entries)
	if c.more() {
		h.schedule(c)
	}
}
