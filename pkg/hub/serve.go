package hub

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/coder/websocket"
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

// Serve writes c's queue to ws until the connection ends, and reads and
// discards whatever the client sends (clients do not message each other).
// It removes c from the hub before returning.
func (h *Hub) Serve(ctx context.Context, c *Conn, ws *websocket.Conn, o ServeOptions) End {
	defer h.Remove(c)
	ws.SetReadLimit(o.ReadLimit)
	readErr := make(chan error, 1)
	go func() { readErr <- discardReads(ctx, ws) }()

	ping := time.NewTicker(o.PingInterval)
	defer ping.Stop()
	for {
		select {
		case <-c.wake:
			frames, closing := c.take()
			if closing {
				code, reason := c.closeStatus()
				// Leave the hub before the close handshake, which may
				// take seconds: presence must not wait for it.
				h.Remove(c)
				_ = ws.Close(code, reason)
				return End{Reason: EndServerClosed, Code: code}
			}
			for _, f := range frames {
				if err := write(ctx, ws, f, o.WriteTimeout); err != nil {
					_ = ws.CloseNow()
					return End{Reason: EndWriteFailed, Err: err}
				}
			}
			c.recycle(frames)
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

// discardReads reads client frames into nothing. The read limit bounds each
// frame; io.Copy to io.Discard never buffers a whole one.
func discardReads(ctx context.Context, ws *websocket.Conn) error {
	for {
		_, r, err := ws.Reader(ctx)
		if err != nil {
			return err
		}
		if _, err := io.Copy(io.Discard, r); err != nil {
			return err
		}
	}
}
