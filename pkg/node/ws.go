package node

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/gin-gonic/gin"

	"github.com/herald-push/herald/pkg/auth"
	"github.com/herald-push/herald/pkg/hub"
	"github.com/herald-push/herald/pkg/protocol"
)

// registerTimeout bounds how long a connecting client waits for its presence
// and topic subscriptions to be written.
const registerTimeout = 5 * time.Second

// subscriber is who a WebSocket request says it is, once checked.
type subscriber struct {
	key    string
	topics []string
	raw    bool
	since  *protocol.StoredID // resume after this stored id; nil: after the ack position
	// topicSince holds since.<topic> for history topics: where each resumes.
	topicSince map[string]protocol.StoredID
	expires    time.Time // zero without tokens
}

// handleWebSocket serves GET /v1/ws.
//
// The connection is registered (hub, presence, topic subscriptions) before
// the handshake completes, so by the time the client sees the socket open
// any node can reach it and nothing sent afterwards is missed. Every refusal
// happens before the upgrade, as a plain HTTP error the client can read.
func (n *Node) handleWebSocket(c *gin.Context) {
	sub, err := n.identify(c)
	if err != nil {
		n.failWith(c, err)
		return
	}
	if why := n.notReady(); why != "" {
		c.Header("Retry-After", "1")
		n.fail(c, http.StatusServiceUnavailable, "unavailable", why)
		return
	}
	ip := c.ClientIP()
	release, err := n.admit(ip)
	if err != nil {
		n.failWith(c, err)
		return
	}
	served := false
	defer func() {
		if !served {
			release()
		}
	}()

	var history []string
	for _, t := range sub.topics {
		if slices.Contains(n.cfg.HistoryTopics, t) {
			history = append(history, "#"+t)
		}
	}
	conn, err := n.hub.Add(sub.key, sub.topics, history, sub.raw)
	if err != nil {
		if errors.Is(err, hub.ErrKeyFull) {
			n.fail(c, http.StatusTooManyRequests, "too_many_connections",
				fmt.Sprintf("key already has %d connections on this node", n.cfg.MaxConnsPerKey))
			return
		}
		c.Header("Retry-After", "1")
		n.fail(c, http.StatusServiceUnavailable, "node_full", "this node holds all the connections it may; retry")
		return
	}
	if err := n.register(c.Request.Context(), conn); err != nil {
		n.hub.Remove(conn)
		c.Header("Retry-After", "1")
		n.fail(c, http.StatusServiceUnavailable, "unavailable", "could not register the connection in the cluster; retry")
		n.log.Warn("connection registration failed", "err", err)
		return
	}
	// The HTTP server's read and write timeouts protect plain requests;
	// a WebSocket lives on, bounded by pings and per-write timeouts instead.
	rc := http.NewResponseController(c.Writer)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	ws, err := websocket.Accept(c.Writer, c.Request, &websocket.AcceptOptions{OriginPatterns: n.cfg.AllowedOrigins})
	if err != nil {
		// Accept has answered the client already (400, 403 or 426).
		n.hub.Remove(conn)
		n.metrics.connEnds.WithLabelValues("upgrade_failed").Inc()
		return
	}
	var expiry *time.Timer
	if !sub.expires.IsZero() {
		expiry = time.AfterFunc(time.Until(sub.expires), func() {
			conn.Close(protocol.CloseTokenExpired, "token expired: reconnect with a fresh token")
		})
	}
	// From here the connection lives on its own goroutines, not this
	// handler's: returning frees the request's stack and gin's context.
	served = true
	topics := len(sub.topics)
	n.hub.Serve(n.connCtx, conn, ws, hub.ServeOptions{
		PingInterval: n.cfg.PingInterval,
		WriteTimeout: n.cfg.WriteTimeout,
		ReadLimit:    n.cfg.ReadLimit,
	}, func(end hub.End) {
		if expiry != nil {
			expiry.Stop()
		}
		n.metrics.connEnds.WithLabelValues(endLabel(end)).Inc()
		n.log.Debug("connection ended", "topics", topics, "why", end.String())
		release()
	})
	// Replay what the client missed; live messages wait behind it.
	go n.catchUp(n.connCtx, conn, "", sub.since, true)
	for _, stream := range history {
		var since *protocol.StoredID
		if id, ok := sub.topicSince[stream[1:]]; ok {
			since = &id
		}
		go n.catchUp(n.connCtx, conn, stream, since, true)
	}
}

// endLabel names why a connection ended, for metrics.
func endLabel(e hub.End) string {
	if e.Reason != hub.EndServerClosed {
		return e.Reason
	}
	switch e.Code {
	case protocol.CloseSlowConsumer:
		return "slow_consumer"
	case protocol.CloseServiceRestart:
		return "shutdown"
	case protocol.CloseDisconnected:
		return "disconnected"
	case protocol.CloseTokenExpired:
		return "token_expired"
	}
	return e.Reason
}

// identify reads and checks who the request connects as. With tokens on,
// the token alone decides the key and the topics allowed: a ?key= naming
// another key is refused, never obeyed.
func (n *Node) identify(c *gin.Context) (subscriber, error) {
	q := c.Request.URL.Query()
	var sub subscriber
	switch q.Get("format") {
	case "", "json":
	case "raw":
		sub.raw = true
	default:
		return sub, badRequest("invalid_format", "format must be json or raw")
	}
	topics, err := n.parseTopics(q.Get("topics"))
	if err != nil {
		return sub, err
	}
	sub.topics = topics
	if q.Has("since") {
		id, ok := protocol.ParseStoredID(q.Get("since"))
		if !ok {
			return sub, badRequest("invalid_since", "since must be the id of a stored message (<ms>-<seq>)")
		}
		sub.since = &id
	}
	for name, vals := range q {
		topic, ok := strings.CutPrefix(name, "since.")
		if !ok {
			continue
		}
		id, okID := protocol.ParseStoredID(vals[0])
		if !okID || !slices.Contains(topics, topic) || !slices.Contains(n.cfg.HistoryTopics, topic) {
			return sub, badRequest("invalid_since", "%s must be a stored id of a joined topic that keeps history", name)
		}
		if sub.topicSince == nil {
			sub.topicSince = map[string]protocol.StoredID{}
		}
		sub.topicSince[topic] = id
	}
	key, hasKey := q.Get("key"), q.Has("key")
	if hasKey && !protocol.ValidName(key) {
		return sub, invalidName("invalid_key", "key", key)
	}

	if n.cfg.Tokens == nil {
		if !hasKey {
			return sub, badRequest("missing_key", "connect with ?key=<key>")
		}
		sub.key = key
		return sub, nil
	}

	token := q.Get("token")
	if token == "" {
		token, _ = strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
	}
	if token == "" {
		c.Header("WWW-Authenticate", "Bearer")
		return sub, apiErr(http.StatusUnauthorized, "missing_token",
			"connect with ?token=<token> or an Authorization: Bearer header; ?key= alone is not accepted")
	}
	claims, err := n.cfg.Tokens.Verify(token)
	if err != nil {
		c.Header("WWW-Authenticate", `Bearer error="invalid_token"`)
		return sub, apiErr(http.StatusUnauthorized, "invalid_token", strings.TrimPrefix(err.Error(), auth.ErrInvalidToken.Error()+": "))
	}
	if hasKey && key != claims.Key {
		return sub, apiErr(http.StatusForbidden, "forbidden", "the token is for another key")
	}
	for _, t := range topics {
		if !slices.Contains(claims.Topics, t) {
			return sub, apiErr(http.StatusForbidden, "forbidden", fmt.Sprintf("the token does not allow topic %q", t))
		}
	}
	sub.key, sub.expires = claims.Key, claims.Expires
	return sub, nil
}

// admit applies the per-IP limits and counts the handler unless the node is
// draining. The returned func undoes it when the connection ends.
func (n *Node) admit(ip string) (func(), error) {
	if n.cfg.ConnRatePerIP > 0 {
		if ok, wait := n.connRate.Allow(ip, time.Now()); !ok {
			return nil, tooFast("too_many_connection_attempts",
				fmt.Sprintf("over %g new connections per second from one address", n.cfg.ConnRatePerIP), wait)
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.draining {
		return nil, apiErr(http.StatusServiceUnavailable, "unavailable", "node is draining")
	}
	if n.cfg.MaxConnsPerIP > 0 && n.perIP[ip] >= n.cfg.MaxConnsPerIP {
		return nil, apiErr(http.StatusTooManyRequests, "too_many_connections",
			fmt.Sprintf("address already has %d connections on this node", n.cfg.MaxConnsPerIP))
	}
	n.perIP[ip]++
	n.active.Add(1)
	return func() {
		n.mu.Lock()
		if n.perIP[ip]--; n.perIP[ip] <= 0 {
			delete(n.perIP, ip)
		}
		n.mu.Unlock()
		n.active.Done()
	}, nil
}

// tooFast is a 429 telling the client when to come back.
func tooFast(code, msg string, wait time.Duration) *requestError {
	return &requestError{status: http.StatusTooManyRequests, code: code, message: msg,
		retryAfter: strconv.Itoa(int(math.Ceil(wait.Seconds())))}
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
		if !slices.Contains(topics, t) {
			topics = append(topics, t)
		}
	}
	return topics, nil
}
