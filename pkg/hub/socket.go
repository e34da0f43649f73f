package hub

import (
	"errors"
	"fmt"
	"time"

	"github.com/herald-push/herald/pkg/protocol"
)

// Socket is the transport under one connection, as the hub's shared writers
// drive it: a burst of queued frames is gathered, then written without
// waiting where the transport can, or finished on a goroutine of the hub's.
// The hub calls the burst methods from one goroutine at a time per
// connection, and calls no Socket method with a lock of its own held.
//
// A burst is TryHold or Hold, then Put for each frame, then TryRelease and,
// if it was not done, Release; or Drop at any point after the hold. The
// buffer handed to a hold is the writer's: the socket may gather into it
// (growing it as append does) until the burst ends, and must not keep it
// after that, except as the reuse TryRelease hands back.
type Socket interface {
	// TryHold starts a burst gathered in buf (the writer's buffer, may be
	// nil), unless a write that may wait (a ping, a heartbeat, the close)
	// is under way: then it reports false and starts nothing.
	TryHold(buf []byte) bool
	// Hold starts a burst, waiting for such a write to end.
	Hold(buf []byte)
	// Put adds one frame to the burst; id is its id in the key's stored
	// stream, zero when it has none (not stored, or a history topic's
	// message): the event stream writes it as the event's id, so that
	// Last-Event-ID is always a position in the key's stream. An error
	// ends the connection: the hub drops the burst and fails it.
	Put(frame []byte, id protocol.StoredID) error
	// TryRelease writes the burst without waiting. done: all of it went
	// out and the burst ended; reuse is a buffer the writer may keep for
	// the next connection (nil if the socket kept it). !done: the rest
	// waits for Release, and the socket holds the buffer until then. An
	// error ends the burst and the connection.
	TryRelease() (reuse []byte, done bool, err error)
	// Release writes the rest of the burst, waiting at most timeout, and
	// ends it.
	Release(timeout time.Duration) error
	// Drop ends the burst, forgetting it: the connection is failing.
	Drop()
	// Close sends the close (a WebSocket close frame; a closing event) with
	// code and reason and ends the connection. It may wait for the client
	// (the hub calls it on a goroutine of its own); the transport then
	// ends, and its adapter calls Conn.Ended.
	Close(code protocol.CloseCode, reason string) error
	// Kill ends the connection at once, without a close; the adapter's
	// loop must then return and call Conn.Ended. It must not wait and may
	// be called more than once, also before or during a burst.
	Kill()
}

// EndReason is why a connection ended.
type EndReason uint8

const (
	EndClientClosed EndReason = iota + 1 // the client closed or went away
	EndServerClosed                      // Conn.Close: see End.Code
	EndReadLimit                         // the client sent a frame over the limit: 1009
	EndReadFailed                        // the connection broke or the client broke the protocol
	EndWriteFailed                       // a write failed or timed out
	EndPingTimeout                       // a ping went unanswered
	EndStopped                           // the node stopped (Hub.CloseNow)
)

var endNames = [...]string{
	EndClientClosed: "client_closed",
	EndServerClosed: "server_closed",
	EndReadLimit:    "read_limit",
	EndReadFailed:   "read_failed",
	EndWriteFailed:  "write_failed",
	EndPingTimeout:  "ping_timeout",
	EndStopped:      "stopped",
}

// String is the reason's name in logs and metrics.
func (r EndReason) String() string {
	if int(r) < len(endNames) && endNames[r] != "" {
		return endNames[r]
	}
	return "unknown"
}

// End says why a connection ended.
type End struct {
	Reason EndReason
	Code   protocol.CloseCode // the close code sent, for EndServerClosed
	Err    error
}

func (e End) String() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %v", e.Reason, e.Err)
	}
	return e.Reason.String()
}

// errStopped is the cause of an EndStopped.
var errStopped = errors.New("the hub stopped")

// Attach gives c its socket and has what was queued for it so far written:
// from now on the hub's shared writers drive sock. writeTimeout bounds the
// rest of a burst that could not be written without waiting
// (Socket.Release). A connection CloseNow ended, or one attached after
// CloseNow, is killed at once.
//
// The adapter keeps what only its transport has: reading the client
// (Acked, Pong), keeping the connection alive (Fail on a lost client), and
// calling Ended once its transport has ended, whoever ended it.
func (h *Hub) Attach(c *Conn, sock Socket, writeTimeout time.Duration) {
	c.mu.Lock()
	c.sock, c.writeTimeout = sock, writeTimeout
	failed := c.endReason != 0
	c.mu.Unlock()
	if failed || h.stopped.Load() {
		c.Fail(EndStopped, errStopped)
		return
	}
	c.kick() // what was queued before the transport was ready
}

// Ended is the adapter saying that c's transport has ended (its loop
// returned; nothing more will be read or written): c leaves the hub, and
// Ended says why the connection ended. The server's own reason wins: a
// Fail, a Close the server asked for, CloseNow; otherwise it is reason and
// err, the transport's account (the client closed, a read failed). Call it
// once per connection.
func (c *Conn) Ended(reason EndReason, err error) End {
	c.mu.Lock()
	failed, cause, code, closed := c.endReason, c.endErr, c.code, c.closed
	c.mu.Unlock()
	c.hub.Remove(c)
	switch {
	case failed != 0:
		return End{Reason: failed, Err: cause}
	case closed:
		return End{Reason: EndServerClosed, Code: code}
	case c.hub.stopped.Load():
		return End{Reason: EndStopped, Err: errStopped}
	}
	return End{Reason: reason, Err: err}
}

// Fail ends c at once for reason, without a close (Socket.Kill): a write
// failed, a ping went unanswered, the node stops. The first reason given
// is the one Ended reports.
func (c *Conn) Fail(reason EndReason, err error) {
	c.mu.Lock()
	if c.endReason == 0 {
		c.endReason, c.endErr = reason, err
	}
	sock := c.sock
	c.mu.Unlock()
	if sock != nil {
		sock.Kill()
	}
}

// Acked is the client acknowledging a stored id it was sent: it runs
// Options.Acked. It must not block.
func (c *Conn) Acked(id protocol.StoredID) { c.hub.opts.Acked(c, id) }

// pongFrame answers a client's {"type":"ping"}.
const pongFrame = `{"type":"pong"}`

// Pong queues the answer to a client's application-level ping, for clients
// whose WebSocket library hides protocol pings (.NET's): it is queued like
// any frame, so it also proves the queue moves.
func (c *Conn) Pong() { c.offer(entry{frame: []byte(pongFrame)}, protocol.StoredID{}) }

// CloseNow ends every connection at once, without a close: for a node that
// stops after its connections had their chance to close cleanly. Each
// reports EndStopped, and so does every connection attached after it: the
// hub takes no more.
func (h *Hub) CloseNow() {
	h.stopped.Store(true)
	for _, c := range h.Conns() {
		c.Fail(EndStopped, errStopped)
	}
}

// closeSocket sends the close c was asked for and ends its transport.
func (h *Hub) closeSocket(c *Conn) {
	code, reason := c.closeStatus()
	// Leave the hub before the close handshake: presence must not wait for
	// it.
	h.Remove(c)
	_ = c.sock.Close(code, reason)
}

// written accounts for entries that are out: delivery notices and fan-out
// timing.
func (h *Hub) written(entries []entry) {
	for _, e := range entries {
		if e.notice != nil && e.notice.First() {
			h.opts.Delivered(e.notice)
		}
		e.fanout.written()
	}
}

// failWrite ends c after the write of a burst failed: none of entries will
// be written, so each copy counts as done for its fan-out's timing.
func (c *Conn) failWrite(entries []entry, err error) {
	for _, e := range entries {
		e.fanout.written()
	}
	c.Fail(EndWriteFailed, err)
}
