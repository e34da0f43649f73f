package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/coder/websocket"

	"github.com/herald-push/herald/pkg/protocol"
)

// ServeOptions govern the life of one WebSocket.
type ServeOptions struct {
	PingInterval time.Duration // how often the server pings
	WriteTimeout time.Duration // a write or a ping's pong may take this long
	ReadLimit    int64         // largest client frame; larger closes with 1009
	// Out is the stream under ws's buffered writer (required): the hub's
	// shared writers gather the connection's queued frames there and write
	// them in one system call.
	Out *Out
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
	EndStopped                           // the serving context ended
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
	Code   websocket.StatusCode // the close code sent, for EndServerClosed
	Err    error
}

func (e End) String() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %v", e.Reason, e.Err)
	}
	return e.Reason.String()
}

// Serve takes over ws for c and returns at once; done is called, from the
// connection's reading goroutine, once it has ended and left the hub.
//
// An idle connection costs one parked goroutine (reading: the client's acks,
// pongs and close) and one timer (pings). Queued frames are written by the
// hub's shared writers, so that a send never waits on a socket and an idle
// connection keeps no second stack. The request that upgraded the
// connection has returned by then: neither its context nor its goroutine
// lives on.
func (h *Hub) Serve(ctx context.Context, c *Conn, ws *websocket.Conn, o ServeOptions, done func(End)) {
	if o.Out == nil {
		panic("hub: Serve needs ServeOptions.Out")
	}
	ws.SetReadLimit(o.ReadLimit)
	c.mu.Lock()
	c.ws, c.opts, c.out = ws, o, o.Out
	c.ping = time.AfterFunc(o.PingInterval, func() { h.ping(ctx, c) })
	c.mu.Unlock()
	if ctx.Err() != nil {
		// CloseNow has run, or is about to without seeing c: end it here.
		c.fail(EndStopped, ctx.Err())
	}
	c.kick() // what was queued before the handshake
	go func() {
		end := h.read(ctx, c, ws)
		c.ping.Stop()
		h.Remove(c)
		done(end)
	}()
}

// pongFrame answers a client's {"type":"ping"}.
const pongFrame = `{"type":"pong"}`

// read reads the client's frames until the connection ends: acks go to
// Options.Acked, pings are answered, anything else is dropped.
//
// The reads take no context: one that can end would register a watcher per
// connection (coder/websocket's context.AfterFunc, and an entry in the
// parent's children), a few hundred bytes of every idle connection. ctx's
// end is CloseNow's job instead.
func (h *Hub) read(ctx context.Context, c *Conn, ws *websocket.Conn) End {
	var msg struct {
		Type string `json:"type"`
		ID   string `json:"id"`
	}
	for {
		_, b, err := ws.Read(context.Background())
		if err != nil {
			_ = ws.CloseNow()
			return c.endFor(ctx, err)
		}
		msg.Type, msg.ID = "", ""
		if json.Unmarshal(b, &msg) != nil {
			continue
		}
		switch msg.Type {
		case "ack":
			if id, ok := protocol.ParseStoredID(msg.ID); ok {
				h.opts.Acked(c, id)
			}
		case "ping":
			// An application-level ping, for clients whose WebSocket
			// library hides protocol pings (.NET's): the pong is queued
			// like any frame, so it also proves the queue moves.
			c.offer(entry{frame: []byte(pongFrame)}, protocol.StoredID{})
		}
	}
}

// endFor says why the connection ended, given the error that ended reading:
// the server's own reason when it ended the connection, the client's
// otherwise.
func (c *Conn) endFor(ctx context.Context, err error) End {
	c.mu.Lock()
	reason, cause, code, closedByServer := c.endReason, c.endErr, c.code, c.closed && c.code != 0
	c.mu.Unlock()
	switch {
	case reason != 0:
		return End{Reason: reason, Err: cause}
	case closedByServer:
		return End{Reason: EndServerClosed, Code: code}
	case ctx.Err() != nil:
		return End{Reason: EndStopped, Err: ctx.Err()}
	}
	switch websocket.CloseStatus(err) {
	case websocket.StatusNormalClosure, websocket.StatusGoingAway, websocket.StatusNoStatusRcvd:
		return End{Reason: EndClientClosed}
	case websocket.StatusMessageTooBig:
		return End{Reason: EndReadLimit, Err: err}
	}
	return End{Reason: EndReadFailed, Err: err}
}

// CloseNow ends every connection at once, without a close handshake: for a
// node that stops after its connections had their chance to close cleanly.
// Each reports EndStopped.
func (h *Hub) CloseNow() {
	for _, c := range h.Conns() {
		c.fail(EndStopped, context.Canceled)
	}
}

// fail ends the connection at once for reason; the reader then reports it.
func (c *Conn) fail(reason EndReason, err error) {
	c.mu.Lock()
	if c.endReason == 0 {
		c.endReason, c.endErr = reason, err
	}
	ws := c.ws
	c.mu.Unlock()
	if ws != nil {
		_ = ws.CloseNow()
	}
}

// closeSocket sends the close frame c was asked for and waits for the
// client's answer.
func (h *Hub) closeSocket(c *Conn) {
	code, reason := c.closeStatus()
	// Leave the hub before the close handshake: presence must not wait for
	// it.
	h.Remove(c)
	_ = c.ws.Close(code, reason)
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

// failWrite ends c after a failed write; entries will never be written.
func (c *Conn) failWrite(entries []entry, err error) {
	for _, e := range entries {
		e.fanout.written()
	}
	c.fail(EndWriteFailed, err)
}

// ping runs from c's timer: a pong within the write timeout keeps the
// connection, anything else ends it.
func (h *Hub) ping(ctx context.Context, c *Conn) {
	pctx, cancel := context.WithTimeout(ctx, c.opts.WriteTimeout)
	err := c.ws.Ping(pctx)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			c.fail(EndPingTimeout, err)
		}
		return
	}
	c.mu.Lock()
	t := c.ping
	c.mu.Unlock()
	t.Reset(c.opts.PingInterval)
}
