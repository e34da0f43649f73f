package hub

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-push/herald/pkg/ordering"
	"github.com/herald-push/herald/pkg/protocol"
)

// entry is one frame waiting to be written.
type entry struct {
	frame  []byte
	id     protocol.StoredID // zero: not stored
	stream ordering.StreamID // the stream id belongs to
	notice *ordering.Notice
	fanout *fanout // topic and broadcast messages: when the last copy is out
}

// fanout times one topic or broadcast message from its arrival at the hub
// to its write on the last local connection it was queued for.
type fanout struct {
	start   time.Time
	pending atomic.Int64
	done    func(time.Duration)
}

// written counts one copy out; the last one reports the time.
func (f *fanout) written() {
	if f != nil && f.pending.Add(-1) == 0 {
		f.done(time.Since(f.start))
	}
}

// offer results.
type offerResult uint8

const (
	offerQueued offerResult = iota + 1
	offerDuplicate
	offerBehind // a gap: the connection must catch up from the store
	offerOverflow
	offerClosed
)

// Conn is one client connection's place in the hub: who it is and the frames
// waiting to be written to it. The queue is bounded in messages and bytes;
// senders never wait for the socket.
//
// Stored messages of each stream (the key's inbox, and each history topic
// the connection joined) are queued in stream order by the stream's
// ordering.Cursor.
type Conn struct {
	// Key, Topics and Raw are set by Add and never change.
	Key    string
	Topics []string
	// Raw connections receive only the data of each message.
	Raw bool

	maxMsgs, maxBytes int
	hub               *Hub
	drained           chan struct{} // signalled when the writer took the queue

	// mu guards the fields below. It is taken under the hub's lock (Remove,
	// and sends, under the read lock), never the other way round, and is
	// never held while calling the Socket or a callback of Options except
	// FanoutDone (which closeLocked may run).
	mu      sync.Mutex
	queue   []entry
	spare   []entry        // the previous queue's backing array, reused
	bytes   int            // of the frames in queue
	streams []streamCursor // the key's stream first
	closed  bool           // closing: nothing more is queued
	code    protocol.CloseCode
	reason  string
	// sock is set once, by Attach. The writers read it without mu: they
	// run only once needsWriterLocked saw it set.
	sock         Socket
	writeTimeout time.Duration
	writing      bool      // a writer is draining the queue
	endReason    EndReason // why the server ended the connection, if it did (Fail)
	endErr       error
}

func newConn(h *Hub, key string, topics []string, history []ordering.StreamID, raw bool, maxMsgs, maxBytes int) *Conn {
	c := &Conn{
		hub: h, Key: key, Topics: topics, Raw: raw,
		maxMsgs: maxMsgs, maxBytes: maxBytes,
		streams: make([]streamCursor, 0, 1+len(history)),
		drained: make(chan struct{}, 1),
	}
	c.streams = append(c.streams, streamCursor{ordering.KeyStream, ordering.NewCursor[entry]()})
	for _, s := range history {
		c.streams = append(c.streams, streamCursor{s, ordering.NewCursor[entry]()})
	}
	return c
}

// streamCursor is the order of one stream a connection follows. A
// connection follows its key and a few history topics: a slice costs an
// idle connection less than a map and is searched as fast.
type streamCursor struct {
	id  ordering.StreamID
	cur *ordering.Cursor[entry]
}

// cursorLocked returns c's cursor of stream s, or nil if c does not follow
// s.
func (c *Conn) cursorLocked(s ordering.StreamID) *ordering.Cursor[entry] {
	for _, sc := range c.streams {
		if sc.id == s {
			return sc.cur
		}
	}
	return nil
}

// fullLocked reports whether frame would overflow the queue. One frame
// always fits an empty queue, whatever its size.
func (c *Conn) fullLocked(frame []byte) bool {
	return len(c.queue) >= c.maxMsgs || (len(c.queue) > 0 && c.bytes+len(frame) > c.maxBytes)
}

func (c *Conn) appendLocked(e entry) {
	c.queue = append(c.queue, e)
	c.bytes += len(e.frame)
}

// offer queues e, or says why not. Overflow closes the connection as a slow
// consumer.
func (c *Conn) offer(e entry, prev protocol.StoredID) offerResult {
	c.mu.Lock()
	result := c.offerLocked(e, prev)
	if result == offerOverflow {
		c.closeLocked(CloseSlowConsumer, "slow consumer: outgoing queue overflowed")
	}
	start := c.needsWriterLocked()
	c.mu.Unlock()
	if start {
		c.hub.schedule(c)
	}
	return result
}

// kick starts a writer if there is something to write and none runs.
func (c *Conn) kick() {
	c.mu.Lock()
	start := c.needsWriterLocked()
	c.mu.Unlock()
	if start {
		c.hub.schedule(c)
	}
}

// needsWriterLocked reports, and claims, the need for a writer:
// there is something to write (or a close to send) and none is running.
// Before Attach the queue waits: there is no socket yet.
func (c *Conn) needsWriterLocked() bool {
	if c.writing || c.sock == nil || (len(c.queue) == 0 && !c.closed) {
		return false
	}
	c.writing = true
	return true
}

func (c *Conn) offerLocked(e entry, prev protocol.StoredID) offerResult {
	if c.closed {
		return offerClosed
	}
	var cur *ordering.Cursor[entry]
	if !e.id.IsZero() { // only stored messages need their stream's order
		cur = c.cursorLocked(e.stream)
	}
	if cur == nil { // not stored, or a stream this connection does not follow
		if c.fullLocked(e.frame) {
			return offerOverflow
		}
		c.appendLocked(e)
		return offerQueued
	}
	switch cur.Offer(ordering.Msg[entry]{ID: e.id, Prev: prev, V: e}, c.maxMsgs) {
	case ordering.Duplicate:
		return offerDuplicate
	case ordering.Hold:
		return offerQueued
	case ordering.Behind:
		return offerBehind
	case ordering.Overflow:
		return offerOverflow
	}
	if c.fullLocked(e.frame) {
		return offerOverflow
	}
	c.appendLocked(e)
	return offerQueued
}

func (c *Conn) signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Last returns the newest id of stream s queued: where a catch-up reads
// from.
func (c *Conn) Last(s ordering.StreamID) protocol.StoredID {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur := c.cursorLocked(s); cur != nil {
		return cur.Last()
	}
	return protocol.StoredID{}
}

// Close asks the connection to close with code and reason once the burst
// being written, if any, is out (Socket.Close, on a goroutine of the hub's).
// Queued frames are dropped. It reports false when the connection was
// already closing.
func (c *Conn) Close(code protocol.CloseCode, reason string) bool {
	c.mu.Lock()
	was := c.closed
	c.closeLocked(code, reason)
	start := c.needsWriterLocked()
	c.mu.Unlock()
	c.signal(c.drained)
	if start {
		c.hub.schedule(c)
	}
	return !was
}

// Closed reports whether the connection is closing.
func (c *Conn) Closed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

func (c *Conn) closeLocked(code protocol.CloseCode, reason string) {
	if c.closed {
		return
	}
	c.closed = true
	c.code, c.reason = code, reason
	for _, e := range c.queue {
		e.fanout.written() // dropped: it will never be written
	}
	clear(c.queue)
	c.queue = c.queue[:0]
	for _, sc := range c.streams {
		for _, m := range sc.cur.Drop() {
			m.V.fanout.written() // dropped with the connection
		}
	}
	c.bytes = 0
}

// take returns the queued entries and whether the connection is closing.
// The caller hands the slice back with recycle once written.
func (c *Conn) take() (entries []entry, closed bool) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, true
	}
	entries = c.queue
	c.queue = c.spare[:0]
	c.spare = nil
	c.bytes = 0
	c.mu.Unlock()
	c.signal(c.drained)
	return entries, false
}

// more reports whether the writer must go on: frames were queued, or a
// close asked for, while it wrote. If not, the writer lets go of c.
func (c *Conn) more() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.queue) == 0 && !c.closed {
		c.writing = false
		return false
	}
	return true
}

func (c *Conn) recycle(entries []entry) {
	clear(entries) // let written frames be collected
	c.mu.Lock()
	if c.spare == nil {
		c.spare = entries[:0]
	}
	c.mu.Unlock()
}

func (c *Conn) closeStatus() (protocol.CloseCode, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.code, c.reason
}

// waitRoom blocks until the queue is at most half full, in messages and in
// bytes (the writer took it), the connection closes, or ctx ends; it
// reports whether the connection is still open.
func (c *Conn) waitRoom(ctx context.Context) bool {
	for {
		c.mu.Lock()
		room := len(c.queue) == 0 || (len(c.queue) < c.maxMsgs/2+1 && c.bytes <= c.maxBytes/2)
		closed := c.closed
		c.mu.Unlock()
		if closed {
			return false
		}
		if room {
			return true
		}
		select {
		case <-c.drained:
		case <-ctx.Done():
			return false
		}
	}
}
