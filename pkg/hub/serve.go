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

// Serve writes c's queue to ws until the connection ends, and reads and
// discards whatever the client sends (clients do not message each other).
// It removes c from the hub before returning and returns why it ended.
func (h *Hub) Serve(ctx context.Context, c *Conn, ws *websocket.Conn, o ServeOptions) error {
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
				return fmt.Errorf("closed by server: %d %s", code, reason)
			}
			for _, f := range frames {
				if err := write(ctx, ws, f, o.WriteTimeout); err != nil {
					_ = ws.CloseNow()
					return fmt.Errorf("write: %w", err)
				}
			}
			c.recycle(frames)
		case <-ping.C:
			pctx, cancel := context.WithTimeout(ctx, o.WriteTimeout)
			err := ws.Ping(pctx)
			cancel()
			if err != nil {
				_ = ws.CloseNow()
				return fmt.Errorf("ping unanswered: %w", err)
			}
		case err := <-readErr:
			_ = ws.CloseNow()
			if websocket.CloseStatus(err) == websocket.StatusNormalClosure || websocket.CloseStatus(err) == websocket.StatusGoingAway {
				return nil
			}
			return fmt.Errorf("read: %w", err)
		case <-ctx.Done():
			_ = ws.CloseNow()
			return ctx.Err()
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
