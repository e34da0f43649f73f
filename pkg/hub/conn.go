package hub

import (
	"sync"

	"github.com/coder/websocket"
)

// Conn is one client connection's place in the hub: who it is and the frames
// waiting to be written to it. The queue is bounded in messages and bytes;
// senders never wait for the socket.
type Conn struct {
	Key    string
	Topics []string
	// Raw connections receive only the data of each message.
	Raw bool

	maxMsgs, maxBytes int

	mu     sync.Mutex
	queue  [][]byte
	spare  [][]byte // the previous queue's backing array, reused
	bytes  int
	closed bool
	code   websocket.StatusCode
	reason string
	wake   chan struct{}
}

func newConn(key string, topics []string, raw bool, maxMsgs, maxBytes int) *Conn {
	return &Conn{
		Key: key, Topics: topics, Raw: raw,
		maxMsgs: maxMsgs, maxBytes: maxBytes,
		wake: make(chan struct{}, 1),
	}
}

// enqueue queues frame. It reports false when the connection is closed or
// when the frame overflowed the queue, in which case the connection is now
// closed as a slow consumer and overflowed is true.
func (c *Conn) enqueue(frame []byte) (queued, overflowed bool) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false, false
	}
	// One frame always fits an empty queue, whatever its size.
	if len(c.queue) >= c.maxMsgs || (len(c.queue) > 0 && c.bytes+len(frame) > c.maxBytes) {
		c.closeLocked(CloseSlowConsumer, "slow consumer: outgoing queue overflowed")
		c.mu.Unlock()
		c.signal()
		return false, true
	}
	c.queue = append(c.queue, frame)
	c.bytes += len(frame)
	c.mu.Unlock()
	c.signal()
	return true, false
}

func (c *Conn) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Close asks the connection to close with code and reason once the frame
// being written, if any, is out. Queued frames are dropped. It reports false
// when the connection was already closing.
func (c *Conn) Close(code websocket.StatusCode, reason string) bool {
	c.mu.Lock()
	was := c.closed
	c.closeLocked(code, reason)
	c.mu.Unlock()
	c.signal()
	return !was
}

func (c *Conn) closeLocked(code websocket.StatusCode, reason string) {
	if c.closed {
		return
	}
	c.closed = true
	c.code, c.reason = code, reason
	clear(c.queue)
	c.queue = c.queue[:0]
	c.bytes = 0
}

// take returns the queued frames and whether the connection is closing.
// The caller hands the slice back with recycle once written.
func (c *Conn) take() (frames [][]byte, closed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, true
	}
	frames = c.queue
	c.queue = c.spare[:0]
	c.spare = nil
	c.bytes = 0
	return frames, false
}

func (c *Conn) recycle(frames [][]byte) {
	clear(frames) // let written frames be collected
	c.mu.Lock()
	if c.spare == nil {
		c.spare = frames[:0]
	}
	c.mu.Unlock()
}

func (c *Conn) closeStatus() (websocket.StatusCode, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.code, c.reason
}
