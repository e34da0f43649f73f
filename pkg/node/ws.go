package node

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/gin-gonic/gin"

	"github.com/herald-push/herald/pkg/hub"
	"github.com/herald-push/herald/pkg/protocol"
)

// registerTimeout bounds how long a connecting client waits for its presence
// and topic subscriptions to be written.
const registerTimeout = 5 * time.Second

// handleWebSocket serves GET /v1/ws?key=K[&topics=a,b][&format=raw].
//
// The connection is registered (hub, presence, topic subscriptions) before
// the handshake completes, so by the time the client sees the socket open
// any node can reach it and nothing sent afterwards is missed. Every refusal
// happens before the upgrade, as a plain HTTP error the client can read.
func (n *Node) handleWebSocket(c *gin.Context) {
	q := c.Request.URL.Query()
	key := q.Get("key")
	if key == "" {
		n.fail(c, http.StatusBadRequest, "missing_key", "connect with ?key=<key>")
		return
	}
	if !protocol.ValidName(key) {
		n.failWith(c, invalidName("invalid_key", "key", key))
		return
	}
	topics, err := n.parseTopics(q.Get("topics"))
	if err != nil {
		n.failWith(c, err)
		return
	}
	var raw bool
	switch q.Get("format") {
	case "", "json":
	case "raw":
		raw = true
	default:
		n.fail(c, http.StatusBadRequest, "invalid_format", "format must be json or raw")
		return
	}
	if why := n.notReady(); why != "" {
		c.Header("Retry-After", "1")
		n.fail(c, http.StatusServiceUnavailable, "unavailable", why)
		return
	}
	if !n.admit() {
		c.Header("Retry-After", "1")
		n.fail(c, http.StatusServiceUnavailable, "unavailable", "node is draining")
		return
	}
	defer n.active.Done()

	conn := n.hub.Add(key, topics, raw)
	if err := n.register(c.Request.Context(), conn); err != nil {
		n.hub.Remove(conn)
		c.Header("Retry-After", "1")
		n.fail(c, http.StatusServiceUnavailable, "unavailable", "could not register the connection in the cluster; retry")
		n.log.Warn("connection registration failed", "err", err)
		return
	}
	ws, err := websocket.Accept(c.Writer, c.Request, nil)
	if err != nil {
		// Accept has answered the client already (400, 403 or 426).
		n.hub.Remove(conn)
		return
	}
	// The handler's goroutine serves the connection until it ends, which
	// keeps the request context alive for exactly that long.
	err = n.hub.Serve(c.Request.Context(), conn, ws, hub.ServeOptions{
		PingInterval: n.cfg.PingInterval,
		WriteTimeout: n.cfg.WriteTimeout,
		ReadLimit:    n.cfg.ReadLimit,
	})
	n.log.Debug("connection ended", "topics", len(topics), "why", errString(err))
}

func (n *Node) register(ctx context.Context, conn *hub.Conn) error {
	ctx, cancel := context.WithTimeout(ctx, registerTimeout)
	defer cancel()
	pending := n.presence.Mark(conn.Key)
	if len(conn.Topics) > 0 {
		if err := n.router.TopicsChanged(conn.Topics...).Wait(ctx); err != nil {
			return fmt.Errorf("subscribe topics: %w", err)
		}
	}
	if err := pending.Wait(ctx); err != nil {
		return fmt.Errorf("write presence: %w", err)
	}
	return nil
}

func (n *Node) parseTopics(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	parts := strings.Split(s, ",")
	if len(parts) > n.cfg.MaxTopicsPerConn {
		return nil, badRequest("too_many_topics", "%d topics, over the limit of %d per connection", len(parts), n.cfg.MaxTopicsPerConn)
	}
	topics := parts[:0]
	for _, t := range parts {
		if !protocol.ValidName(t) {
			return nil, invalidName("invalid_topic", "topic", t)
		}
		dup := false
		for _, have := range topics {
			dup = dup || have == t
		}
		if !dup {
			topics = append(topics, t)
		}
	}
	return topics, nil
}

func errString(err error) string {
	if err == nil {
		return "client closed"
	}
	return err.Error()
}
