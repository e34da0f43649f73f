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
}

// Why a connection ended.
const (
	EndClientClosed = "client_closed" // the client closed or went away
	EndServerClosed = "server_closed" // Conn.Close: see End.Code
	EndReadLimit    = "read_limit"    // the client sent a frame over the limit: 1009
	EndReadFailed   = "read_failed"   // the connection broke or the client broke the protocol
	EndWriteFailed  = "write_failed"  // a write failed or timed out
	EndPingTimeout  = "ping_timeout"  // a ping went unanswered
	EndStopped      = "stopped"       // the serving context ended
)

// End says why Serve returned.
type End struct {
	Reason string
	Code   websocket.StatusCode // the close code sent, for EndServerClosed
	Err    error
}

func (e End) String() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %v", e.Reason, e.Err)
	}
	return e.Reason
}

// Serve writes c's queue to ws until the connection ends, and reads what the
// client sends: acknowledgements, nothing else (clients do not message each
// other).
// It removes c from the hub before returning.
func (h *Hub) Serve(ctx context.Context, c *Conn, ws *websocket.Conn, o ServeOptions) End {
	defer h.Remove(c)
	ws.SetReadLimit(o.ReadLimit)
	readErr := make(chan error, 1)
	go func() { readErr <- h.readClient(ctx, c, ws) }()

	ping := time.NewTicker(o.PingInterval)
	defer ping.Stop()
	for {
		select {
		case <-c.wake:
			entries, closing := c.take()
			if closing {
				code, reason := c.closeStatus()
				// Leave the hub before the close handshake, which may
				// take seconds: presence must not wait for it.
				h.Remove(c)
				_ = ws.Close(code, reason)
				return End{Reason: EndServerClosed, Code: code}
			}
			for _, e := range entries {
				if err := write(ctx, ws, e.frame, o.WriteTimeout); err != nil {
					_ = ws.CloseNow()
					return End{Reason: EndWriteFailed, Err: err}
				}
				if e.notice != nil && e.notice.sent.CompareAndSwap(false, true) {
					h.opts.Delivered(e.notice)
				}
			}
			c.recycle(entries)
		case <-ping.C:
			pctx, cancel := context.WithTimeout(ctx, o.WriteTimeout)
			err := ws.Ping(pctx)
			cancel()
			if err != nil {
				_ = ws.CloseNow()
				return End{Reason: EndPingTimeout, Err: err}
			}
		case err := <-readErr:
			_ = ws.CloseNow()
			switch websocket.CloseStatus(err) {
			case websocket.StatusNormalClosure, websocket.StatusGoingAway, websocket.StatusNoStatusRcvd:
				return End{Reason: EndClientClosed}
			case websocket.StatusMessageTooBig:
				return End{Reason: EndReadLimit, Err: err}
			}
			return End{Reason: EndReadFailed, Err: err}
		case <-ctx.Done():
			_ = ws.CloseNow()
			return End{Reason: EndStopped, Err: ctx.Err()}
		}
	}
}

func write(ctx context.Context, ws *websocket.Conn, frame []byte, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return ws.Write(ctx, websocket.MessageText, frame)
}

// readClient reads what the client sends: acknowledgements
// ({"type":"ack","id":"<stored id>"}) go to Options.Acked, anything else is
// read and dropped. The read limit bounds every frame.
func (h *Hub) readClient(ctx context.Context, c *Conn, ws *websocket.Conn) error {
	var msg struct {
		Type string `json:"type"`
		ID   string `json:"id"`
	}
	for {
		_, b, err := ws.Read(ctx)
		if err != nil {
			return err
		}
		msg.Type, msg.ID = "", ""
		if json.Unmarshal(b, &msg) != nil || msg.Type != "ack" {
			continue
		}
		if id, ok := protocol.ParseStoredID(msg.ID); ok {
			h.opts.Acked(c, id)
		}
	}
}
