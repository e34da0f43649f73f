package node

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/herald-push/herald/pkg/auth"
	"github.com/herald-push/herald/pkg/hub"
	"github.com/herald-push/herald/pkg/ordering"
	"github.com/herald-push/herald/pkg/protocol"
)

// ConnectRequest is a client asking to connect.
type ConnectRequest struct {
	// Key the client connects as: trusted in open mode; with tokens it
	// must match the token's key, or be "".
	Key    string
	Token  string
	Topics []string
	// Raw clients receive only the data of each message.
	Raw bool
	// Since resumes the key's stream after this stored id; nil resumes
	// after the key's acknowledged position.
	Since *protocol.StoredID
	// TopicSince resumes history topics after these ids.
	TopicSince map[string]protocol.StoredID
	// IP is the client's address, for the per-address limits.
	IP string
}

// Session is an admitted connection: registered in the cluster, so
// anything sent to its key or topics from now on reaches it, and waiting
// for its socket. Serve hands it the socket; Abort gives it up.
//
// A transport's adapter uses it in this order: Admit; its own handshake
// (Abort if that fails); Serve with the transport's hub.Socket; then, from
// its own goroutine, reading the client (Conn().Acked, Conn().Pong) and
// keeping it alive (Settings; Conn().Fail on a lost client) until its
// transport ends, whoever ended it (a close the hub sent, a Kill, the
// client); then Ended, once.
type Session struct {
	n       *Node
	conn    *hub.Conn
	req     ConnectRequest
	key     string
	history []ordering.StreamID
	expires time.Time   // zero without tokens
	expiry  *time.Timer // closes the connection when its token expires
	release func()
	ended   atomic.Bool
}

// Key is the key the session is connected as.
func (s *Session) Key() string { return s.key }

// Conn is the session's connection in the hub, for its adapter: Acked,
// Pong and Fail.
func (s *Session) Conn() *hub.Conn { return s.conn }

// ConnSettings are how a transport keeps a connection alive and bounds it,
// from the node's Config.
type ConnSettings struct {
	// PingInterval is how often the client is pinged (a WebSocket ping;
	// an event stream's heartbeat comment).
	PingInterval time.Duration
	// WriteTimeout bounds the rest of a burst the hub could not write
	// without waiting, and a ping's pong.
	WriteTimeout time.Duration
	// ReadLimit bounds one frame from the client; larger ones end the
	// connection with 1009.
	ReadLimit int64
}

// Settings returns the node's settings for its transports
// (Config.PingInterval, WriteTimeout, ReadLimit).
func (s *Session) Settings() ConnSettings {
	return ConnSettings{PingInterval: s.n.cfg.PingInterval, WriteTimeout: s.n.cfg.WriteTimeout, ReadLimit: s.n.cfg.ReadLimit}
}

// Connect checks who the client is and what it may join, applies the
// connection limits, and registers the connection (hub, presence, topic
// subscriptions) before returning, so that by the time the client sees its
// socket open any node can reach it and nothing sent afterwards is missed.
// It is Authorize then Admit, for a transport with nothing to check between.
func (n *Node) Connect(ctx context.Context, req ConnectRequest) (*Session, error) {
	g, err := n.Authorize(req)
	if err != nil {
		return nil, err
	}
	return n.Admit(ctx, g)
}

// Grant is a connect request that passed every check that costs nothing:
// its names, its credentials and the node's readiness. Nothing is counted
// or registered for it yet.
type Grant struct {
	req     ConnectRequest
	key     string
	expires time.Time
}

// Key is the key the connection is granted.
func (g Grant) Key() string { return g.key }

// Authorize checks who the client is and what it may join, and that the
// node takes connections, without counting or registering anything: a
// transport calls it, then finishes its own checks (the WebSocket
// handshake), and only then Admit, so a refused handshake never shows in
// presence or uses up a limit.
func (n *Node) Authorize(req ConnectRequest) (Grant, error) {
	if err := n.checkConnect(&req); err != nil {
		return Grant{}, err
	}
	key, expires, err := n.authenticate(req)
	if err != nil {
		return Grant{}, err
	}
	if err := n.Ready(); err != nil {
		return Grant{}, retryLater(unavailable("%s", AsError(err).Message), time.Second)
	}
	return Grant{req: req, key: key, expires: expires}, nil
}

// Admit applies the connection limits to g and registers the connection
// (hub, presence, topic subscriptions).
func (n *Node) Admit(ctx context.Context, g Grant) (*Session, error) {
	req, key := g.req, g.key
	release, err := n.admit(req.IP)
	if err != nil {
		return nil, err
	}
	var history []ordering.StreamID
	for _, t := range req.Topics {
		if slices.Contains(n.cfg.HistoryTopics, t) {
			history = append(history, ordering.TopicStream(t))
		}
	}
	conn, err := n.hub.Add(key, req.Topics, history, req.Raw)
	if err != nil {
		release()
		if errors.Is(err, hub.ErrKeyFull) {
			// A slot frees only when one of the key's connections ends:
			// retrying at once would only be refused again.
			return nil, retryLater(Errorf(KindTooMany, "too_many_connections", "key already has %d connections on this node", n.cfg.MaxConnsPerKey), connSlotWait)
		}
		return nil, retryLater(Errorf(KindUnavailable, "node_full", "this node holds all the connections it may; retry"), time.Second)
	}
	if err := n.register(ctx, conn); err != nil {
		n.hub.Remove(conn)
		release()
		n.log.Warn("connection registration failed", "err", err)
		return nil, retryLater(unavailable("could not register the connection in the cluster; retry"), time.Second)
	}
	return &Session{n: n, conn: conn, req: req, key: key, history: history, expires: g.expires, release: release}, nil
}

// connSlotWait is the Retry-After of a refusal for too many connections of
// one key or address: long enough for a stale connection of the same
// client to be noticed and closed (pings, a reconnecting client's old
// socket), short enough for a player not to give up.
const connSlotWait = 5 * time.Second

// checkConnect validates the request's names and resume points.
func (n *Node) checkConnect(req *ConnectRequest) error {
	if req.Key != "" && !protocol.ValidName(req.Key) {
		return InvalidName("invalid_key", "key", req.Key)
	}
	if len(req.Topics) > n.cfg.MaxTopicsPerConn {
		return invalid("too_many_topics", "%d topics, over the limit of %d per connection", len(req.Topics), n.cfg.MaxTopicsPerConn)
	}
	topics := make([]string, 0, len(req.Topics))
	for _, t := range req.Topics {
		if !protocol.ValidName(t) {
			return InvalidName("invalid_topic", "topic", t)
		}
		if !slices.Contains(topics, t) {
			topics = append(topics, t)
		}
	}
	req.Topics = topics
	for topic := range req.TopicSince {
		if !slices.Contains(topics, topic) || !slices.Contains(n.cfg.HistoryTopics, topic) {
			return invalid("invalid_since", "since.%s must be a stored id of a joined topic that keeps history", clip(topic))
		}
	}
	return nil
}

// authenticate returns the key the client connects as. With tokens on, the
// token alone decides the key and the topics allowed: a key naming another
// key is refused, never obeyed.
func (n *Node) authenticate(req ConnectRequest) (string, time.Time, error) {
	if n.cfg.Tokens == nil {
		if req.Key == "" {
			return "", time.Time{}, invalid("missing_key", "connect with ?key=<key>")
		}
		return req.Key, time.Time{}, nil
	}
	if req.Token == "" {
		return "", time.Time{}, Errorf(KindUnauthenticated, "missing_token",
			"connect with ?token=<token> or an Authorization: Bearer header; ?key= alone is not accepted")
	}
	claims, err := n.cfg.Tokens.Verify(req.Token)
	if err != nil {
		return "", time.Time{}, Errorf(KindUnauthenticated, "invalid_token", "%s", strings.TrimPrefix(err.Error(), auth.ErrInvalidToken.Error()+": "))
	}
	if req.Key != "" && req.Key != claims.Key {
		return "", time.Time{}, Errorf(KindForbidden, "forbidden", "the token is for another key")
	}
	for _, t := range req.Topics {
		if !slices.Contains(claims.Topics, t) {
			return "", time.Time{}, Errorf(KindForbidden, "forbidden", "the token does not allow topic %q", t)
		}
	}
	return claims.Key, claims.Expires, nil
}

// admit applies the per-IP limits and counts the session unless the node is
// draining. The returned func undoes it when the session ends.
func (n *Node) admit(ip string) (func(), error) {
	if n.cfg.ConnRatePerIP > 0 {
		if ok, wait := n.connRate.Allow(ip, time.Now()); !ok {
			return nil, retryLater(Errorf(KindTooMany, "too_many_connection_attempts",
				"over %g new connections per second from one address", n.cfg.ConnRatePerIP), ceilSecond(wait))
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.draining {
		return nil, ErrDraining
	}
	if n.cfg.MaxConnsPerIP > 0 && n.perIP[ip] >= n.cfg.MaxConnsPerIP {
		return nil, retryLater(Errorf(KindTooMany, "too_many_connections", "address already has %d connections on this node", n.cfg.MaxConnsPerIP), connSlotWait)
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

// ceilSecond rounds a wait up to whole seconds, as Retry-After counts.
func ceilSecond(d time.Duration) time.Duration {
	return time.Duration(math.Ceil(d.Seconds())) * time.Second
}

func (n *Node) register(ctx context.Context, conn *hub.Conn) error {
	ctx, cancel := context.WithTimeout(ctx, redisTimeout)
	defer cancel()
	pending := n.presence.Mark(conn.Key)
	// Sends to the key reach this node through its channel: subscribed
	// before the client sees its socket open.
	if err := n.router.KeysChanged(conn.Key).Wait(ctx); err != nil {
		return fmt.Errorf("subscribe key: %w", err)
	}
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

// Abort gives the session up when its socket could not be opened.
func (s *Session) Abort() {
	s.n.hub.Remove(s.conn)
	s.n.metrics.connEnds.WithLabelValues("upgrade_failed").Inc()
	s.release()
}

// Serve hands the session its socket and returns at once: from now on the
// hub's shared writers write the connection's queue to sock, until it ends
// or the node stops. What the client missed is replayed before anything
// live.
func (s *Session) Serve(sock hub.Socket) {
	n := s.n
	if !s.expires.IsZero() {
		s.expiry = time.AfterFunc(time.Until(s.expires), func() {
			s.conn.Close(protocol.CloseTokenExpired, "token expired: reconnect with a fresh token")
		})
	}
	n.hub.Attach(s.conn, sock, n.cfg.WriteTimeout)
	from, since := ordering.FromConnect, protocol.StoredID{}
	if s.req.Since != nil {
		from, since = ordering.FromSince, *s.req.Since
	}
	go n.catcher.CatchUp(n.connCtx, s.conn, s.key, ordering.KeyStream, from, since)
	for _, stream := range s.history {
		from, since := ordering.FromConnect, protocol.StoredID{}
		topic, _ := stream.Topic()
		if id, ok := s.req.TopicSince[topic]; ok {
			from, since = ordering.FromSince, id
		}
		go n.catcher.CatchUp(n.connCtx, s.conn, s.key, stream, from, since)
	}
}

// Ended is the adapter saying that the session's transport has ended, with
// its own account of why (the hub's wins when the server ended it: see
// hub.Conn.Ended): the connection leaves the hub and presence, the end is
// counted and logged, and the session's place under the limits is freed.
// It returns why the connection ended. Calls after the first do nothing
// and return the zero End.
func (s *Session) Ended(reason hub.EndReason, err error) hub.End {
	if !s.ended.CompareAndSwap(false, true) {
		return hub.End{}
	}
	n := s.n
	end := s.conn.Ended(reason, err)
	if s.expiry != nil {
		s.expiry.Stop()
	}
	n.metrics.connEnds.WithLabelValues(endLabel(end)).Inc()
	n.log.Debug("connection ended", "topics", len(s.req.Topics), "why", end.String())
	s.release()
	return end
}

// endLabel names why a connection ended, for metrics.
func endLabel(e hub.End) string {
	if e.Reason != hub.EndServerClosed {
		return e.Reason.String()
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
	return e.Reason.String()
}
