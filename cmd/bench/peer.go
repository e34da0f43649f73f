package main

// The peer: the best-known Go push server (Centrifugo v6), driven with the
// same users, payloads and measurements as herald so that the two compare
// like for like (issue #20). Each user's connection is subscribed by the
// server to its personal channel "personal:#<user>"; a send is one
// POST /api/publish to that channel. Building and configuring the peer is
// by hand, outside this repository: docs/benchmarks.md says how.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
)

const peerCentrifugo = "centrifugo"

// checkPeer refuses what the peer cannot be asked in this comparison.
func (c *common) checkPeer(mode string, unsupported map[string]bool) error {
	if c.peer == "" {
		return nil
	}
	if c.peer != peerCentrifugo {
		return fmt.Errorf("-peer %q: the only peer known is %q", c.peer, peerCentrifugo)
	}
	if c.peerSecret == "" {
		return errors.New("-peer centrifugo needs -peer-secret (its client.token.hmac_secret_key), to sign its clients' connect tokens")
	}
	if c.peerAPIKey == "" && mode != "idle" {
		return errors.New("-peer centrifugo needs -peer-api-key (its http_api.key), to publish")
	}
	for name, set := range unsupported {
		if set {
			return fmt.Errorf("%s with -peer: %s has no equivalent in this comparison", mode, name)
		}
	}
	return nil
}

// peerChannel is the personal channel the peer subscribes user to.
func peerChannel(user string) string { return "personal:#" + user }

// dialPeer opens one client of the peer for user: the WebSocket, then its
// connect command with an HS256 token whose subject is user, answered
// before the client counts as connected.
func (c *common) dialPeer(ctx context.Context, base, user string, hc *http.Client) (*websocket.Conn, error) {
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": user}).SignedString([]byte(c.peerSecret))
	if err != nil {
		return nil, fmt.Errorf("sign token: %w", err)
	}
	ws, _, err := websocket.Dial(ctx, base+"/connection/websocket", &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		return nil, err
	}
	connect := `{"id":1,"connect":{"token":"` + token + `"}}`
	if err := ws.Write(ctx, websocket.MessageText, []byte(connect)); err != nil {
		ws.CloseNow()
		return nil, fmt.Errorf("connect command: %w", err)
	}
	_, b, err := ws.Read(ctx)
	if err != nil {
		ws.CloseNow()
		return nil, fmt.Errorf("connect reply: %w", err)
	}
	first, _, _ := bytes.Cut(b, []byte("\n"))
	var reply struct {
		ID      int             `json:"id"`
		Connect json.RawMessage `json:"connect"`
		Error   json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(first, &reply); err != nil || reply.ID != 1 || reply.Connect == nil || reply.Error != nil {
		ws.CloseNow()
		return nil, fmt.Errorf("connect refused: %s", first)
	}
	return ws, nil
}

// nextPeer returns the next publication the peer pushed to cn, as its
// "pub" object (whose "data" is what was published, as herald's frame's
// "data" is). The peer puts several replies in one frame, one per line,
// and pings with an empty reply "{}" that must be answered with "{}".
func (cn *conn) nextPeer(ctx context.Context) ([]byte, error) {
	for len(cn.pending) == 0 {
		_, b, err := cn.ws.Read(ctx)
		if err != nil {
			return nil, err
		}
		for line := range bytes.SplitSeq(b, []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			if string(line) == "{}" {
				if err := cn.ws.Write(ctx, websocket.MessageText, []byte("{}")); err != nil {
					return nil, fmt.Errorf("pong: %w", err)
				}
				continue
			}
			var reply struct {
				Push *struct {
					Pub json.RawMessage `json:"pub"`
				} `json:"push"`
			}
			if json.Unmarshal(line, &reply) == nil && reply.Push != nil && reply.Push.Pub != nil {
				cn.pending = append(cn.pending, reply.Push.Pub)
			}
		}
	}
	pub := cn.pending[0]
	cn.pending = cn.pending[1:]
	return pub, nil
}

// publishPeer sends data to user's personal channel through the peer's HTTP
// API. The peer answers a refused publish with 200 and an "error" object,
// so the body is read, not only the status.
func (c *common) publishPeer(client *http.Client, body *bytes.Buffer, user, data string) error {
	err := c.postPeer(client, body, user, data)
	if err != nil {
		c.peerErrOnce.Do(func() { fmt.Fprintln(os.Stderr, "bench: first refused publish:", err) })
	}
	return err
}

func (c *common) postPeer(client *http.Client, body *bytes.Buffer, user, data string) error {
	body.Reset()
	body.WriteString(`{"channel":"`)
	body.WriteString(peerChannel(user))
	body.WriteString(`","data":`)
	body.WriteString(data)
	body.WriteByte('}')
	req, err := http.NewRequest(http.MethodPost, c.send+"/api/publish", body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", c.peerAPIKey)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || strings.Contains(string(answer), `"error"`) {
		return fmt.Errorf("publish: %d %s", resp.StatusCode, answer)
	}
	return nil
}
