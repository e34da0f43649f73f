package node

import (
	"context"
	"time"

	"github.com/herald-push/herald/pkg/protocol"
)

// AckRequest acknowledges a key's stored stream up to ID, for a client whose
// transport cannot carry acks back (Server-Sent Events): the same as an
// {"type":"ack"} frame on a WebSocket, but through any node.
type AckRequest struct {
	// Key acknowledged: trusted in open mode; with tokens it must match
	// the token's key, or be "".
	Key   string
	Token string
	ID    protocol.StoredID
}

// AckResult is an acknowledgement recorded.
type AckResult struct {
	Key string
	ID  protocol.StoredID
}

// errAckAhead: an ack names an id after the newest message stored for the
// key. Recording it would mark messages not yet stored as read, so a
// client that reconnects without since= would skip them.
func errAckAhead(id protocol.StoredID) *Error {
	return invalid("ack_ahead", "id %s is after every message stored for the key; acknowledge only ids you received", id)
}

// Ack records that the key's clients have every stored message up to
// req.ID, with the same credentials as connecting: the token decides the
// key when tokens are on, the request names it otherwise. An id after the
// newest message the key has stored is refused (ack_ahead): a WebSocket
// ack past what its connection was sent is ignored for the same reason,
// and here no connection says what was sent, so the inbox does — one read
// of its newest entry. An id at or before the acknowledged position
// changes nothing (positions never move back) and is answered like any
// other. It is written through at once, not batched like a WebSocket's
// acks: the answer says it is recorded, and senders waiting for "acked"
// see it at their next poll.
func (n *Node) Ack(ctx context.Context, req AckRequest) (AckResult, error) {
	if req.Key != "" && !protocol.ValidName(req.Key) {
		return AckResult{}, InvalidName("invalid_key", "key", req.Key)
	}
	if req.ID.IsZero() {
		return AckResult{}, invalid("invalid_id", "id must be the id of a stored message (<ms>-<seq>)")
	}
	switch {
	case n.cfg.Tokens == nil && req.Key == "":
		return AckResult{}, invalid("missing_key", `name the key acknowledged: {"key":...,"id":...}`)
	case n.cfg.Tokens != nil && req.Token == "":
		return AckResult{}, Errorf(KindUnauthenticated, "missing_token",
			`acknowledge with the connection's token: {"token":...,"id":...} or an Authorization: Bearer header`)
	}
	key, _, err := n.authenticate(ConnectRequest{Key: req.Key, Token: req.Token})
	if err != nil {
		return AckResult{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, redisTimeout)
	defer cancel()
	newest, err := n.inbox.Tail(ctx, key, 1)
	if err != nil {
		n.metrics.redisErrors.WithLabelValues("ack").Inc()
		n.log.Warn("ack not checked: reading the key's newest stored message failed", "err", err)
		return AckResult{}, retryLater(unavailable("could not read the key's stored messages; retry"), time.Second)
	}
	if len(newest) == 0 || req.ID.After(newest[0].ID) {
		return AckResult{}, errAckAhead(req.ID)
	}
	if err := n.inbox.Ack(ctx, key, req.ID); err != nil {
		n.metrics.redisErrors.WithLabelValues("ack").Inc()
		n.log.Warn("ack not recorded", "err", err)
		return AckResult{}, retryLater(unavailable("could not record the ack; retry"), time.Second)
	}
	n.metrics.acks.Add(1)
	return AckResult{Key: key, ID: req.ID}, nil
}
