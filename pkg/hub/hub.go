// Package hub holds a node's local client connections: who is connected by
// key and topic, each connection's bounded outgoing queue, and the loop that
// writes a connection's queue to its WebSocket.
//
// Sends only queue: a frame is built once per key (or topic) and the same
// bytes are queued on every connection, and no send ever waits on a socket.
// A connection whose queue overflows is closed as a slow consumer and leaves
// the hub at once.
package hub

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/herald-push/herald/pkg/protocol"
)

// Close codes, re-exported where the hub uses them.
const (
	CloseSlowConsumer = protocol.CloseSlowConsumer
	CloseDisconnected = protocol.CloseDisconnected
)

// Options bound each connection's outgoing queue.
type Options struct {
	QueueMessages int // frames waiting to be written
	QueueBytes    int // bytes of frames waiting to be written
	// MaxConns and MaxConnsPerKey bound Add; 0 or less means no limit.
	MaxConns       int
	MaxConnsPerKey int
	// Removed is called, outside the hub's locks, after a connection left
	// the hub, for whatever reason. Optional.
	Removed func(c *Conn)
}

// Stats are running totals since the hub was made.
type Stats struct {
	Queued       uint64 // frames handed to connection queues
	SlowConsumer uint64 // connections closed because their queue overflowed
}

// Hub is the set of local connections. It is safe for concurrent use.
type Hub struct {
	opts Options

	mu     sync.RWMutex
	keys   map[string][]*Conn
	topics map[string][]*Conn
	all    map[*Conn]struct{}

	queued       atomic.Uint64
	slowConsumer atomic.Uint64
}

// New returns an empty hub.
func New(opts Options) *Hub {
	if opts.Removed == nil {
		opts.Removed = func(*Conn) {}
	}
	return &Hub{
		opts:   opts,
		keys:   make(map[string][]*Conn),
		topics: make(map[string][]*Conn),
		all:    make(map[*Conn]struct{}),
	}
}

// Errors Add returns when a limit is reached.
var (
	ErrFull    = errors.New("node connection limit reached")
	ErrKeyFull = errors.New("connection limit of the key reached")
)

// Add registers a connection for key and topics and returns it. Frames sent
// to it from now on wait in its queue until Serve writes them, which is what
// lets a node register a connection before the WebSocket handshake ends.
func (h *Hub) Add(key string, topics []string, raw bool) (*Conn, error) {
	c := newConn(key, topics, raw, h.opts.QueueMessages, h.opts.QueueBytes)
	h.mu.Lock()
	if h.opts.MaxConns > 0 && len(h.all) >= h.opts.MaxConns {
		h.mu.Unlock()
		return nil, ErrFull
	}
	if h.opts.MaxConnsPerKey > 0 && len(h.keys[key]) >= h.opts.MaxConnsPerKey {
		h.mu.Unlock()
		return nil, ErrKeyFull
	}
	h.all[c] = struct{}{}
	h.keys[key] = append(h.keys[key], c)
	for _, t := range topics {
		h.topics[t] = append(h.topics[t], c)
	}
	h.mu.Unlock()
	return c, nil
}

// Remove takes c out of the hub. It reports false when c had already left.
func (h *Hub) Remove(c *Conn) bool {
	h.mu.Lock()
	if _, ok := h.all[c]; !ok {
		h.mu.Unlock()
		return false
	}
	delete(h.all, c)
	removeFrom(h.keys, c.Key, c)
	for _, t := range c.Topics {
		removeFrom(h.topics, t, c)
	}
	h.mu.Unlock()
	h.opts.Removed(c)
	return true
}

func removeFrom(m map[string][]*Conn, name string, c *Conn) {
	conns := m[name]
	for i, x := range conns {
		if x == c {
			last := len(conns) - 1
			conns[i] = conns[last]
			conns[last] = nil
			conns = conns[:last]
			break
		}
	}
	if len(conns) == 0 {
		delete(m, name)
	} else {
		m[name] = conns
	}
}

// SendKey queues the message on every connection of key and returns how
// many connections took it.
func (h *Hub) SendKey(key, id string, ts int64, data []byte) int {
	return h.sendNamed(h.keys, protocol.KindKey, key, id, ts, data)
}

// SendTopic queues the message on every subscriber of topic.
func (h *Hub) SendTopic(topic, id string, ts int64, data []byte) int {
	return h.sendNamed(h.topics, protocol.KindTopic, topic, id, ts, data)
}

// sendNamed queues on the connections registered under name in m, which is
// one of the hub's maps and so read under its lock.
func (h *Hub) sendNamed(m map[string][]*Conn, kind protocol.Kind, name, id string, ts int64, data []byte) int {
	f := frames{kind: kind, id: id, name: name, ts: ts, data: data}
	h.mu.RLock()
	n, evicted := h.queueAll(m[name], &f)
	h.mu.RUnlock()
	h.evict(evicted)
	return n
}

// SendAll queues the message on every connection.
func (h *Hub) SendAll(id string, ts int64, data []byte) int {
	f := frames{kind: protocol.KindBroadcast, id: id, ts: ts, data: data}
	n := 0
	var evicted []*Conn
	h.mu.RLock()
	for c := range h.all {
		if f.queue(c, &evicted) {
			n++
		}
	}
	h.mu.RUnlock()
	h.queued.Add(uint64(n))
	h.evict(evicted)
	return n
}

func (h *Hub) queueAll(conns []*Conn, f *frames) (int, []*Conn) {
	var evicted []*Conn
	n := 0
	for _, c := range conns {
		if f.queue(c, &evicted) {
			n++
		}
	}
	h.queued.Add(uint64(n))
	return n, evicted
}

func (h *Hub) evict(conns []*Conn) {
	for _, c := range conns {
		h.slowConsumer.Add(1)
		h.Remove(c)
	}
}

// frames builds a message's two encodings at most once each, on first use.
type frames struct {
	kind      protocol.Kind
	id, name  string
	ts        int64
	data      []byte
	full, raw []byte
}

func (f *frames) queue(c *Conn, evicted *[]*Conn) bool {
	var b []byte
	if c.Raw {
		if f.raw == nil {
			f.raw = protocol.RawPayload(f.data)
		}
		b = f.raw
	} else {
		if f.full == nil {
			size := len(`{"id":"","topic":"","data":,"ts":}`) + len(f.id) + len(f.name) + len(f.data) + 20
			f.full = protocol.AppendFrame(make([]byte, 0, size), f.kind, f.id, f.name, f.data, f.ts)
		}
		b = f.full
	}
	queued, overflowed := c.enqueue(b)
	if overflowed {
		*evicted = append(*evicted, c)
	}
	return queued
}

// CloseKey closes every connection of key as disconnected by the server and
// returns how many there were.
func (h *Hub) CloseKey(key string) int {
	h.mu.RLock()
	conns := append([]*Conn(nil), h.keys[key]...)
	h.mu.RUnlock()
	for _, c := range conns {
		c.Close(CloseDisconnected, "disconnected by the server")
	}
	return len(conns)
}

// Conns returns a snapshot of every connection.
func (h *Hub) Conns() []*Conn {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]*Conn, 0, len(h.all))
	for c := range h.all {
		out = append(out, c)
	}
	return out
}

// Len returns the number of connections.
func (h *Hub) Len() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.all)
}

// KeyConns returns how many connections key has here.
func (h *Hub) KeyConns(key string) int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.keys[key])
}

// TopicConns returns how many connections subscribe to topic here.
func (h *Hub) TopicConns(topic string) int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.topics[topic])
}

// Keys returns every key with a connection here.
func (h *Hub) Keys() []string {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]string, 0, len(h.keys))
	for k := range h.keys {
		out = append(out, k)
	}
	return out
}

// Stats returns running totals.
func (h *Hub) Stats() Stats {
	return Stats{Queued: h.queued.Load(), SlowConsumer: h.slowConsumer.Load()}
}
