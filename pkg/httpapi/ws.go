package httpapi

import (
	"encoding/base64"
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/gin-gonic/gin"

	"github.com/herald-push/herald/pkg/node"
	"github.com/herald-push/herald/pkg/protocol"
)

// handleWebSocket serves GET /v1/ws. Everything that can refuse the
// client comes before anything is counted or registered for it: the Host
// (checkHost) and the browser origin (checkOrigin) before this handler, the query, the token and the node's
// readiness (node.Authorize), and the handshake itself. Only then does the
// engine admit and register the connection (node.Admit), and only then is
// the socket upgraded, so a client that sees its socket open is reachable
// from every node. Every refusal is a plain HTTP error the client can read.
func (s *Server) handleWebSocket(c *gin.Context) {
	req, err := s.connectRequest(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	grant, err := s.node.Authorize(req)
	if err != nil {
		s.fail(c, err)
		return
	}
	if code, msg := checkUpgrade(c.Request); code != "" {
		s.refuseHandshake(c, code, msg)
		return
	}
	session, err := s.node.Admit(c.Request.Context(), grant)
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
	// The origin was checked above, with herald's error answer; checking
	// it again here would only cost the parse twice.
	ws, err := websocket.Accept(lean, c.Request, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		session.Abort() // the handshake was checked: only a failed hijack gets here
		return
	}
	// From here the connection lives on its own goroutines, not this
	// handler's: returning frees the request's stack and gin's context.
	serveWebSocket(session, lean.sock, ws)
}

// checkUpgrade reports what makes r not a WebSocket handshake herald can
// accept (RFC 6455 §4.2.1), as an error code and message, or "" when
// websocket.Accept will take it.
func checkUpgrade(r *http.Request) (code, msg string) {
	if !r.ProtoAtLeast(1, 1) || !headerHasToken(r.Header, "Connection", "upgrade") || !headerHasToken(r.Header, "Upgrade", "websocket") {
		return "not_websocket", "this endpoint takes a WebSocket handshake (Connection: Upgrade, Upgrade: websocket)"
	}
	if r.Header.Get("Sec-WebSocket-Version") != "13" {
		return "invalid_handshake", "Sec-WebSocket-Version must be 13"
	}
	keys := r.Header.Values("Sec-WebSocket-Key")
	if len(keys) != 1 {
		return "invalid_handshake", "the handshake needs exactly one Sec-WebSocket-Key"
	}
	if k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(keys[0])); err != nil || len(k) != 16 {
		return "invalid_handshake", "Sec-WebSocket-Key must be 16 bytes in base64"
	}
	return "", ""
}

// headerHasToken reports whether the comma-separated header name lists
// token, case-insensitively.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// refuseHandshake answers a request that is no WebSocket handshake: 426
// with the headers RFC 7230 §6.7 asks for, or 400 for a broken one.
func (s *Server) refuseHandshake(c *gin.Context, code, msg string) {
	status := http.StatusBadRequest
	if code == "not_websocket" {
		status = http.StatusUpgradeRequired
		c.Header("Connection", "Upgrade")
		c.Header("Upgrade", "websocket")
	} else {
		c.Header("Sec-WebSocket-Version", "13")
	}
	s.metrics.rejected.WithLabelValues(code).Inc()
	c.AbortWithStatusJSON(status, apiError{Error: errorDetail{Code: code, Message: msg}})
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
