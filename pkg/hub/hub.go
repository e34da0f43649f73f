// Package hub holds a node's local client connections: who is connected by
// key and topic, each connection's bounded outgoing queue, and the shared
// writers that write the queues to each connection's Socket, whatever its
// transport (a WebSocket, an event stream: adapters in pkg/httpapi).
//
// Sends only queue: a frame is built once per key (or topic) and the same
// bytes are queued on every connection, and no send ever waits on a socket.
// A connection whose queue overflows is closed as a slow consumer and leaves
// the hub at once.
//
// # Locks
//
// Three mutexes, always taken in this order, never the other way round:
//
//  1. Hub.mu (a read-write lock) guards the registry: keys, topics, all.
//     Add and Remove hold it for writing; sends (SendKey, SendTopic,
//     SendAll) offer to each connection under the read lock, so that a
//     connection cannot leave between being found and being offered to.
//  2. Conn.mu guards one connection's queue, its stream cursors, its
//     closing state and its end reason. Remove takes it under Hub.mu to
//     mark the connection closed; offers take it under Hub.mu's read lock.
//  3. writers.mu guards the shared writers' line of ready connections and
//     their spare buffers. schedule takes it after Conn.mu is released;
//     it is held over no other lock.
//
// No lock is held while calling a Socket method, Options.Removed,
// Options.Behind, Options.Delivered or Options.Acked. Options.FanoutDone
// may be called with Hub.mu and Conn.mu held (a closing connection drops
// the copies it still had): it must not call into the hub.
package hub

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-push/herald/pkg/ordering"
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
	// Behind is called when a live stored message shows that c missed one
	// of stream s: the caller catches s up (ordering.Catcher). It must not
	// block. Optional.
	Behind func(c *Conn, s ordering.StreamID)
	// Delivered is called from the writing goroutine when a Notice's message
	// was first written on this node. It must not block. Optional.
	Delivered func(n *ordering.Notice)
	// Acked is called, through Conn.Acked, when a client acknowledges a
	// stored id it was sent: from the adapter's reading goroutine. It must
	// not block. Optional.
	Acked func(c *Conn, id protocol.StoredID)
	// FanoutDone is told, per topic or broadcast message, how long it took
	// from reaching the hub to being written on the last connection it was
	// queued for (copies dropped with a closing connection, or with a burst
	// whose write failed, count as written). It may run under the hub's
	// locks: it must not block or call into the hub. Optional.
	FanoutDone func(kind protocol.Kind, d time.Duration)
	// Writers bounds the shared writer goroutines; 0 or less means twice
	// GOMAXPROCS.
	Writers int
}

// Stats are running totals since the hub was made.
type Stats struct {
	Queued       uint64 // frames handed to connection queues
	SlowConsumer uint64 // connections closed because their queue overflowed
}

// Hub is the set of local connections. It is safe for concurrent use.
type Hub struct {
	opts Options

	mu     sync.RWMutex // see the package doc for the lock order
	keys   map[string][]*Conn
	topics map[string][]*Conn
	all    map[*Conn]struct{}

	queued       atomic.Uint64
	slowConsumer atomic.Uint64
	stopped      atomic.Bool // CloseNow ran: connections attached later are killed

	writers writers
}

// New returns an empty hub.
func New(opts Options) *Hub {
	if opts.Removed == nil {
		opts.Removed = func(*Conn) {}
	}
	if opts.Behind == nil {
		opts.Behind = func(*Conn, ordering.StreamID) {}
	}
	if opts.Delivered == nil {
		opts.Delivered = func(*ordering.Notice) {}
	}
	if opts.Acked == nil {
		opts.Acked = func(*Conn, protocol.StoredID) {}
	}
	if opts.FanoutDone == nil {
		opts.FanoutDone = func(protocol.Kind, time.Duration) {}
	}
	if opts.Writers <= 0 {
		// Shared writers never wait for a socket: more of them than
		// processors would only take turns.
		opts.Writers = 2 * runtime.GOMAXPROCS(0)
	}
	h := &Hub{
		opts:    opts,
		keys:    make(map[string][]*Conn),
		topics:  make(map[string][]*Conn),
		all:     make(map[*Conn]struct{}),
		writers: writers{max: opts.Writers},
	}
	h.writers.run = h.writeReady
	return h
}

// Errors Add returns when a limit is reached.
var (
	ErrFull    = errors.New("node connection limit reached")
	ErrKeyFull = errors.New("connection limit of the key reached")
)

// Add registers a connection for key and topics and returns it. Frames sent
// to it from now on wait in its queue until Attach gives it a socket, which
// is what lets a node register a connection before the WebSocket handshake
// (or the event stream's first byte) ends.
//
// history are the streams of the joined topics that keep history; their
// stored messages reach c in order, like its key's.
func (h *Hub) Add(key string, topics []string, history []ordering.StreamID, raw bool) (*Conn, error) {
	c := newConn(h, key, topics, history, raw, h.opts.QueueMessages, h.opts.QueueBytes)
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

// Remove takes c out of the hub and marks it closed, so that nothing more is
// queued on it. It does not end its transport: a close that was asked for
// is still sent, and the adapter still calls Ended. It reports false when c
// had already left.
func (h *Hub) Remove(c *Conn) bool {
	h.mu.Lock()
	if _, ok := h.all[c]; !ok {
		h.mu.Unlock()
		return false
	}
	delete(h.all, c)
	c.mu.Lock()
	c.closeLocked(protocol.CloseNormal, "") // nothing more is written to it
	c.mu.Unlock()
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

// Delivery is one message for local connections.
type Delivery struct {
	ID     string            // the id clients see
	Stored protocol.StoredID // zero when the message was not stored
	Prev   protocol.StoredID // the stream's stored id before this one
	Stream ordering.StreamID // the stream Stored belongs to
	TS     int64             // unix milliseconds
	Data   []byte            // JSON
	Notice *ordering.Notice  // reported on the first write; nil when nobody waits
}

// SendKey queues d on every connection of key and returns how many
// connections have it (a connection that already had it counts).
func (h *Hub) SendKey(key string, d Delivery) int {
	return h.sendNamed(h.keys, protocol.KindKey, key, d)
}

// SendTopic queues d on every subscriber of topic.
func (h *Hub) SendTopic(topic string, d Delivery) int {
	return h.sendNamed(h.topics, protocol.KindTopic, topic, d)
}

// sendNamed queues on the connections registered under name in m, which is
// one of the hub's maps and so read under its lock.
func (h *Hub) sendNamed(m map[string][]*Conn, kind protocol.Kind, name string, d Delivery) int {
	f := frames{kind: kind, name: name, d: d}
	if kind == protocol.KindTopic {
		f.trace = h.newFanout(kind)
		defer f.trace.written() // the hub's own count, released once all are queued
	}
	h.mu.RLock()
	n, out := h.offerAll(m[name], &f)
	h.mu.RUnlock()
	h.settle(out)
	return n
}

// SendAll queues d on every connection.
func (h *Hub) SendAll(d Delivery) int {
	f := frames{kind: protocol.KindBroadcast, d: d, trace: h.newFanout(protocol.KindBroadcast)}
	defer f.trace.written()
	var out outcome
	n := 0
	h.mu.RLock()
	for c := range h.all {
		if f.offer(c, &out) {
			n++
		}
	}
	h.mu.RUnlock()
	h.queued.Add(uint64(n))
	h.settle(out)
	return n
}

// outcome collects the connections that need work after the hub's lock is
// released. It stays nil, and costs nothing, in the common case.
type outcome struct {
	evicted, behind []*Conn
	stream          ordering.StreamID // of behind
}

func (h *Hub) offerAll(conns []*Conn, f *frames) (int, outcome) {
	var out outcome
	n := 0
	for _, c := range conns {
		if f.offer(c, &out) {
			n++
		}
	}
	h.queued.Add(uint64(n))
	return n, out
}

func (h *Hub) settle(out outcome) {
	for _, c := range out.evicted {
		h.slowConsumer.Add(1)
		h.Remove(c)
	}
	for _, c := range out.behind {
		h.opts.Behind(c, out.stream)
	}
}

func (h *Hub) newFanout(kind protocol.Kind) *fanout {
	f := &fanout{start: time.Now(), done: func(d time.Duration) { h.opts.FanoutDone(kind, d) }}
	f.pending.Store(1) // held by the hub until every copy is queued
	return f
}

// frames builds a message's two encodings at most once each, on first use,
// and shares them between connections.
type frames struct {
	kind      protocol.Kind
	name      string
	d         Delivery
	full, raw []byte
	trace     *fanout
}

func (f *frames) frame(raw bool) []byte {
	if raw {
		if f.raw == nil {
			f.raw = protocol.RawPayload(f.d.Data)
		}
		return f.raw
	}
	if f.full == nil {
		size := len(`{"id":"","topic":"","data":,"ts":}`) + len(f.d.ID) + len(f.name) + len(f.d.Data) + 20
		f.full = protocol.AppendFrame(make([]byte, 0, size), f.kind, f.d.ID, f.name, f.d.Data, f.d.TS)
	}
	return f.full
}

func (f *frames) offer(c *Conn, out *outcome) bool {
	if f.trace != nil {
		f.trace.pending.Add(1)
	}
	result := c.offer(entry{frame: f.frame(c.Raw), id: f.d.Stored, stream: f.d.Stream, notice: f.d.Notice, fanout: f.trace}, f.d.Prev)
	if result != offerQueued && result != offerBehind { // behind: held, written later
		f.trace.written() // not queued: nothing will write it
	}
	switch result {
	case offerQueued, offerDuplicate:
		return true
	case offerBehind:
		out.behind = append(out.behind, c)
		out.stream = f.d.Stream
		return true
	case offerOverflow:
		out.evicted = append(out.evicted, c)
	}
	return false
}

// Replay queues stored messages of stream s, read from the store oldest
// first, skipping any the connection has, as far as its queue has room.
// start is where the client resumes (a since id, its acknowledged position,
// or the stream's newest id); nothing at or before it is queued. Replay
// returns how many of ms it used: wait with WaitRoom before replaying the
// rest.
func (c *Conn) Replay(s ordering.StreamID, start protocol.StoredID, ms []ordering.Stored) int {
	kind, name := protocol.KindKey, c.Key
	if topic, ok := s.Topic(); ok {
		kind, name = protocol.KindTopic, topic
	}
	es := make([]entry, len(ms))
	for i, m := range ms {
		if m.Skip {
			es[i] = entry{id: m.ID, stream: s} // no frame: the cursor moves past it
			continue
		}
		f := frames{kind: kind, name: name, d: Delivery{ID: m.ID.String(), TS: m.TS, Data: m.Data}}
		es[i] = entry{frame: f.frame(c.Raw), id: m.ID, stream: s, notice: m.Notice}
	}
	c.mu.Lock()
	cur := c.cursorLocked(s)
	if cur == nil {
		c.mu.Unlock()
		return len(ms)
	}
	cur.StartAt(start)
	used, queued := 0, 0
	for _, e := range es {
		if c.closed || (e.frame != nil && e.id.After(cur.Last()) && c.fullLocked(e.frame)) {
			break
		}
		if cur.Replayed(e.id) && e.frame != nil {
			c.appendLocked(e)
			queued++
		}
		used++
	}
	c.mu.Unlock()
	c.hub.queued.Add(uint64(queued))
	c.kick()
	return used
}

// EndCatchUp queues the live messages of stream s held while the connection
// was catching up, in order, and says what is left to do.
func (c *Conn) EndCatchUp(s ordering.StreamID) ordering.State {
	c.mu.Lock()
	cur := c.cursorLocked(s)
	if cur == nil || c.closed {
		c.mu.Unlock()
		return ordering.CaughtUp
	}
	room := c.maxMsgs - len(c.queue)
	bytes := c.bytes
	write, dropped, state := cur.EndCatchUp(func(e entry) bool {
		fits := room > 0 && (room == c.maxMsgs || bytes+len(e.frame) <= c.maxBytes)
		if fits {
			room--
			bytes += len(e.frame)
		}
		return fits
	})
	for _, m := range write {
		c.appendLocked(m.V)
	}
	c.mu.Unlock()
	for _, m := range dropped {
		m.V.fanout.written() // replayed already: this copy is dropped
	}
	c.kick()
	return state
}

// MarkBehind makes c hold the live stored messages of each of its streams
// until it has caught up, and returns the streams that were live (those
// already catching up, or a closed connection, need nothing more).
func (c *Conn) MarkBehind() []ordering.StreamID {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	var marked []ordering.StreamID
	for _, sc := range c.streams {
		if sc.cur.MarkBehind() {
			marked = append(marked, sc.id)
		}
	}
	return marked
}

// WaitRoom blocks until c's queue has room for more replayed messages; it
// reports false when c closed or ctx ended first.
func (c *Conn) WaitRoom(ctx context.Context) bool { return c.waitRoom(ctx) }

// Room returns how many messages and bytes c's queue takes now (an empty
// queue also takes one frame bigger than its bytes).
func (c *Conn) Room() (msgs, bytes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.queue) == 0 {
		return c.maxMsgs, c.maxBytes
	}
	return c.maxMsgs - len(c.queue), c.maxBytes - c.bytes
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
