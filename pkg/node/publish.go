package node

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/herald-push/herald/pkg/fanout"
	"github.com/herald-push/herald/pkg/inbox"
	"github.com/herald-push/herald/pkg/ordering"
	"github.com/herald-push/herald/pkg/protocol"
	"github.com/herald-push/herald/pkg/redisconn"
)

// PublishRequest is a message for every subscriber of Topic or, for a
// broadcast, every connection.
type PublishRequest struct {
	Topic string // "" in a broadcast
	Data  []byte // JSON
	// MaxBytes, when positive, is a tighter limit on Data than the node's
	// (a public topic's); Limit names it in the error.
	MaxBytes int
	Limit    string
	// IdempotencyKey and Caller are as in SendRequest. A post to a history
	// topic keeps the key with its entry, so a retry whose first answer
	// was lost keeps the post once.
	IdempotencyKey string
	Caller         string
}

// PublishResult says where a publish went.
type PublishResult struct {
	ID    string
	Topic string // "" for a broadcast
	// Nodes is how many nodes received it live. 0 for a history post that
	// was kept but could not be published: subscribers read it from the
	// history when they next resume or see the gap it leaves.
	Nodes    int
	Replayed bool
}

// Publish delivers req.Data to the subscribers of req.Topic in the cluster,
// keeping it in the topic's history first when the topic has one.
func (n *Node) Publish(ctx context.Context, req PublishRequest) (PublishResult, error) {
	if !protocol.ValidName(req.Topic) {
		return PublishResult{}, InvalidName("invalid_topic", "topic", req.Topic)
	}
	return n.publish(ctx, fanout.KindTopic, req)
}

// Broadcast delivers req.Data to every connection in the cluster.
func (n *Node) Broadcast(ctx context.Context, req PublishRequest) (PublishResult, error) {
	req.Topic = ""
	return n.publish(ctx, fanout.KindBroadcast, req)
}

func (n *Node) publish(ctx context.Context, kind fanout.Kind, req PublishRequest) (PublishResult, error) {
	max, limit := n.cfg.MaxMessageBytes, "the limit"
	if req.MaxBytes > 0 && req.MaxBytes < max {
		max, limit = req.MaxBytes, req.Limit
	}
	if err := n.checkData(req.Data, max, limit); err != nil {
		return PublishResult{}, err
	}
	scoped := ""
	if req.IdempotencyKey != "" {
		// Sends, posts to each topic and broadcasts have keys of their own.
		scoped = req.Caller + " #" + req.Topic + " " + req.IdempotencyKey // a space: in no Idempotency-Key
	}
	res, replayed, err := idempotent(ctx, n, req.IdempotencyKey, scoped, func() (PublishResult, error) {
		return n.publishMessage(ctx, &fanout.Message{Kind: kind, Topic: req.Topic}, req.Data, scoped)
	})
	res.Replayed = replayed
	return res, err
}

// publishMessage keeps m in its topic's history when the topic has one,
// then publishes it to the cluster.
func (n *Node) publishMessage(ctx context.Context, m *fanout.Message, data []byte, dedupe string) (PublishResult, error) {
	m.Origin, m.ID, m.TS, m.Data = n.cfg.NodeID, n.ids.next(), time.Now().UnixMilli(), data
	ctx, cancel := context.WithTimeout(ctx, redisTimeout)
	defer cancel()
	kept := false
	if m.Kind == fanout.KindTopic && slices.Contains(n.cfg.HistoryTopics, m.Topic) {
		// Kept in the topic's stream first: its id is what subscribers see
		// and resume after.
		cost := inbox.StoredCost(1, len(data))
		if err := n.roomInRedis(cost); err != nil {
			return PublishResult{}, err
		}
		stream := ordering.TopicStream(m.Topic).StoreKey("")
		ids, prevs, err := n.inbox.Append(ctx, []string{stream}, inbox.Entry{Data: data, Origin: n.cfg.NodeID, Dedupe: dedupe})
		n.mem.Settled(cost)
		if errors.Is(err, redisconn.ErrNotReplicated) {
			err = nil // --redis-min-replicas is for sends to keys; history is kept as it is
		}
		if errors.Is(err, inbox.ErrFull) {
			return PublishResult{}, n.storageFull(ErrStorageFull)
		}
		if err != nil {
			n.metrics.redisErrors.WithLabelValues("inbox_write").Inc()
			return PublishResult{}, redisFailed(err, "could not keep the message in the topic's history")
		}
		m.Stored, m.Prevs = ids, prevs
		m.ID, m.TS = ids[0].String(), int64(ids[0].MS)
		kept = true
	}
	nodes, err := n.router.Publish(ctx, m)
	if err != nil {
		n.metrics.redisErrors.WithLabelValues("publish").Inc()
		if !kept {
			return PublishResult{}, redisFailed(err, "cluster bus unreachable")
		}
		n.log.Warn("a history post was kept but could not be published live", "topic", m.Topic, "err", err)
		nodes = 0
	}
	label := "topic"
	if m.Kind == fanout.KindBroadcast {
		label = "broadcast"
	}
	n.metrics.accepted.WithLabelValues(label).Inc()
	n.metrics.sent.Add(1)
	return PublishResult{ID: m.ID, Topic: m.Topic, Nodes: nodes}, nil
}
