package httpapi

import (
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/gin-gonic/gin"

	"github.com/herald-push/herald/pkg/node"
	"github.com/herald-push/herald/pkg/protocol"
)

// handleWebSocket serves GET /v1/ws: it reads the query into a
// node.ConnectRequest, lets the engine admit and register the connection,
// and only then upgrades. Every refusal happens before the upgrade, as a
// plain HTTP error the client can read.
func (s *Server) handleWebSocket(c *gin.Context) {
	req, err := s.connectRequest(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	session, err := s.node.Connect(c.Request.Context(), req)
	if err != nil {
		s.fail(c, err)
		return
	}
	// The HTTP server's read and write timeouts protect plain requests;
	// a WebSocket lives on, bounded by pings and per-write timeouts instead.
	rc := http.NewResponseController(c.Writer)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	lean := &leanHijacker{ResponseWriter: c.Writer}
	ws, err := websocket.Accept(lean, c.Request, &websocket.AcceptOptions{OriginPatterns: s.cfg.AllowedOrigins})
	if err != nil {
		session.Abort() // Accept has answered the client already (400, 403 or 426)
		return
	}
	// From here the connection lives on its own goroutines, not this
	// handler's: returning frees the request's stack and gin's context.
	session.Serve(ws, lean.out)
}

// connectRequest reads who the request connects as and what it joins.
func (s *Server) connectRequest(c *gin.Context) (node.ConnectRequest, error) {
	q := c.Request.URL.Query()
	req := node.ConnectRequest{IP: c.ClientIP()}
	switch q.Get("format") {
	case "", "json":
	case "raw":
		req.Raw = true
	default:
		return req, badRequest("invalid_format", "format must be json or raw")
	}
	if t := q.Get("topics"); t != "" {
		req.Topics = strings.Split(t, ",")
		if len(req.Topics) > s.cfg.MaxTopicsPerConn {
			return req, badRequest("too_many_topics", "%d topics, over the limit of %d per connection", len(req.Topics), s.cfg.MaxTopicsPerConn)
		}
	}
	if q.Has("since") {
		id, ok := protocol.ParseStoredID(q.Get("since"))
		if !ok {
			return req, badRequest("invalid_since", "since must be the id of a stored message (<ms>-<seq>)")
		}
		req.Since = &id
	}
	for name, vals := range q {
		topic, ok := strings.CutPrefix(name, "since.")
		if !ok {
			continue
		}
		id, ok := protocol.ParseStoredID(vals[0])
		if !ok {
			return req, badRequest("invalid_since", "%s must be a stored id of a joined topic that keeps history", name)
		}
		if req.TopicSince == nil {
			req.TopicSince = map[string]protocol.StoredID{}
		}
		req.TopicSince[topic] = id
	}
	if q.Has("key") {
		req.Key = q.Get("key")
		if req.Key == "" {
			return req, node.InvalidName("invalid_key", "key", "")
		}
	}
	req.Token = q.Get("token")
	if req.Token == "" {
		req.Token, _ = strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
	}
	return req, nil
}
