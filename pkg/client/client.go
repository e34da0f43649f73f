// Package client is herald's Go client: it connects to a node, reconnects
// with jittered exponential backoff, resumes after the last stored message
// it saw, drops duplicates and acknowledges what it handled.
//
//	c, _ := client.New(client.Config{URLs: []string{"ws://localhost:8080"}, Key: "u1", AutoAck: true})
//	err := c.Run(ctx, func(m client.Message) { fmt.Println(m.ID, string(m.Data)) })
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/herald-push/herald/pkg/protocol"
)

// Config says where and as whom to connect.
type Config struct {
	// URLs of nodes (ws://, wss://, http:// or https://; the /v1/ws path is
	// added when missing). Each reconnect tries the next one, as a load
	// balancer would.
	URLs []string
	// Key to connect as in development mode, or Token / TokenFunc for a
	// node that checks connection tokens. TokenFunc is called before every
	// connection attempt, so an expired token is replaced.
	Key       string
	Token     string
	TokenFunc func(ctx context.Context) (string, error)
	Topics    []string
	// AutoAck acknowledges every stored message once the handler returned.
	AutoAck bool
	// MinBackoff and MaxBackoff bound the wait between attempts (defaults
	// 200ms and 30s); each wait is drawn at random from half to all of the
	// current bound, which doubles after each failure.
	MinBackoff, MaxBackoff time.Duration
	HTTPClient             *http.Client
	Logger                 *slog.Logger
	// OnState, if set, is told whenever the connection opens or closes.
	OnState func(connected bool, err error)
}

// Message is one message the client received.
type Message struct {
	ID    string          `json:"id"`
	Key   string          `json:"key,omitempty"`
	Topic string          `json:"topic,omitempty"`
	Data  json.RawMessage `json:"data"`
	TS    int64           `json:"ts"`
}

// Stored reports whether the message was stored, and so can be resumed after
// and acknowledged.
func (m Message) Stored() bool {
	_, ok := protocol.ParseStoredID(m.ID)
	return ok
}

// Error is a refusal the client will not retry: fix the configuration (or
// get a new token) and run again.
type Error struct {
	Status    int                  // HTTP status of a refused connection, or 0
	Code      string               // the node's error code, e.g. invalid_token
	CloseCode websocket.StatusCode // close code of an ended connection, or -1
	Message   string
}

func (e *Error) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("herald refused the connection: %d %s: %s", e.Status, e.Code, e.Message)
	}
	return fmt.Sprintf("herald closed the connection: %d %s", e.CloseCode, e.Message)
}

// Client is one logical subscription that survives reconnects.
type Client struct {
	cfg  Config
	urls []string

	mu sync.Mutex
	// last is the newest stored id handled per stream: "" for the key's
	// messages, the topic's name for a topic that keeps history.
	last       map[string]protocol.StoredID
	ws         *websocket.Conn
	next       int // index of the URL to try next
	duplicates int
}

// Duplicates is how many stored messages arrived again and were dropped
// (after a reconnect, the node may resend what was in flight).
func (c *Client) Duplicates() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.duplicates
}

// New checks cfg and returns a Client; Run connects it.
func New(cfg Config) (*Client, error) {
	if len(cfg.URLs) == 0 {
		return nil, errors.New("client: no URLs")
	}
	if cfg.Key == "" && cfg.Token == "" && cfg.TokenFunc == nil {
		return nil, errors.New("client: set Key, Token or TokenFunc")
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 200 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Client{cfg: cfg, last: map[string]protocol.StoredID{}}
	for _, raw := range cfg.URLs {
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("client: url %q: %w", raw, err)
		}
		switch u.Scheme {
		case "http":
			u.Scheme = "ws"
		case "https":
			u.Scheme = "wss"
		case "ws", "wss":
		default:
			return nil, fmt.Errorf("client: url %q: scheme must be ws, wss, http or https", raw)
		}
		if u.Path == "" || u.Path == "/" {
			u.Path = "/v1/ws"
		}
		c.urls = append(c.urls, u.String())
	}
	return c, nil
}

// LastID is the newest stored id of the key's messages handled: where a
// reconnect resumes.
func (c *Client) LastID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last[""].IsZero() {
		return ""
	}
	return c.last[""].String()
}

// Ack acknowledges every stored message up to id on the current connection.
// Without a connection it returns an error; the next connection resumes
// after the last id handled anyway.
func (c *Client) Ack(ctx context.Context, id string) error {
	c.mu.Lock()
	ws := c.ws
	c.mu.Unlock()
	if ws == nil {
		return errors.New("client: not connected")
	}
	b, _ := json.Marshal(map[string]string{"type": "ack", "id": id})
	return ws.Write(ctx, websocket.MessageText, b)
}

// Run connects and hands every message to handle, in order, until ctx ends
// (it then returns nil) or the node refuses the client for good (*Error).
// Stored messages seen before are dropped, so handle sees each once.
func (c *Client) Run(ctx context.Context, handle func(Message)) error {
	backoff := c.cfg.MinBackoff
	for {
		gotMessages, err := c.connectOnce(ctx, handle)
		if ctx.Err() != nil {
			return nil
		}
		var permanent *Error
		if errors.As(err, &permanent) {
			return err
		}
		if gotMessages {
			backoff = c.cfg.MinBackoff
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		c.cfg.Logger.Debug("herald connection lost; reconnecting", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		backoff = min(backoff*2, c.cfg.MaxBackoff)
	}
}

// connectOnce runs one connection; it reports whether it received anything.
func (c *Client) connectOnce(ctx context.Context, handle func(Message)) (bool, error) {
	target, err := c.target(ctx)
	if err != nil {
		return false, err
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	ws, resp, err := websocket.Dial(dctx, target, &websocket.DialOptions{HTTPClient: c.cfg.HTTPClient})
	cancel()
	if err != nil {
		return false, refusal(resp, err)
	}
	ws.SetReadLimit(1 << 20)
	c.mu.Lock()
	c.ws = ws
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.ws = nil
		c.mu.Unlock()
		ws.CloseNow()
	}()
	c.state(true, nil)

	got := false
	for {
		_, b, err := ws.Read(ctx)
		if err != nil {
			err = closeError(err)
			c.state(false, err)
			return got, err
		}
		got = true
		var m Message
		if err := json.Unmarshal(b, &m); err != nil {
			c.cfg.Logger.Warn("herald sent a frame that is not a message", "err", err)
			continue
		}
		id, stored := protocol.ParseStoredID(m.ID)
		if stored {
			stream := m.Topic // "" for the key's own messages
			c.mu.Lock()
			dup := !id.After(c.last[stream])
			if dup {
				c.duplicates++
			} else {
				c.last[stream] = id
			}
			c.mu.Unlock()
			if dup {
				continue
			}
		}
		handle(m)
		if stored && m.Topic == "" && c.cfg.AutoAck { // acks cover a key's messages
			if err := c.Ack(ctx, m.ID); err != nil {
				c.cfg.Logger.Debug("ack failed; the node will send it again on resume", "err", err)
			}
		}
	}
}

func (c *Client) state(connected bool, err error) {
	if c.cfg.OnState != nil {
		c.cfg.OnState(connected, err)
	}
}

// target is the next URL with this client's identity and resume point.
func (c *Client) target(ctx context.Context) (string, error) {
	c.mu.Lock()
	base := c.urls[c.next%len(c.urls)]
	c.next++
	since := maps.Clone(c.last)
	c.mu.Unlock()
	q := url.Values{}
	switch {
	case c.cfg.TokenFunc != nil:
		tok, err := c.cfg.TokenFunc(ctx)
		if err != nil {
			return "", fmt.Errorf("client: token: %w", err)
		}
		q.Set("token", tok)
	case c.cfg.Token != "":
		q.Set("token", c.cfg.Token)
	}
	if c.cfg.Key != "" {
		q.Set("key", c.cfg.Key)
	}
	if len(c.cfg.Topics) > 0 {
		q.Set("topics", strings.Join(c.cfg.Topics, ","))
	}
	for stream, id := range since {
		if id.IsZero() {
			continue
		}
		if stream == "" {
			q.Set("since", id.String())
		} else {
			q.Set("since."+stream, id.String())
		}
	}
	return base + "?" + q.Encode(), nil
}

// refusal turns a failed dial into a permanent *Error for refusals that a
// retry cannot fix (bad request, auth), or returns err for the rest.
func refusal(resp *http.Response, err error) error {
	if resp == nil {
		return err
	}
	switch resp.StatusCode {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound:
	default:
		return fmt.Errorf("dial: status %d: %w", resp.StatusCode, err)
	}
	var body struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if resp.Body != nil {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		_ = json.Unmarshal(b, &body)
	}
	return &Error{Status: resp.StatusCode, Code: body.Error.Code, CloseCode: -1, Message: body.Error.Message}
}

// closeError makes the closes a reconnect cannot fix permanent.
func closeError(err error) error {
	var ce websocket.CloseError
	if !errors.As(err, &ce) {
		return err
	}
	switch protocol.CloseCode(ce.Code) {
	case protocol.CloseDisconnected, protocol.CloseTooBig:
		return &Error{CloseCode: ce.Code, Message: ce.Reason}
	}
	// 1008 (slow consumer), 1012 (restart), 1013, 4002 (token expired) and
	// broken connections are retried: the resume brings what was missed.
	return err
}
