package node

import (
	"context"

	"github.com/herald-push/herald/pkg/presence"
	"github.com/herald-push/herald/pkg/protocol"
)

// PresenceResult is where a key is connected.
type PresenceResult struct {
	Key         string
	Online      bool
	Connections int
	Nodes       []string
}

// Presence says where key is connected in the cluster.
func (n *Node) Presence(ctx context.Context, key string) (PresenceResult, error) {
	if !protocol.ValidName(key) {
		return PresenceResult{}, InvalidName("invalid_key", "key", key)
	}
	ctx, cancel := context.WithTimeout(ctx, redisTimeout)
	defer cancel()
	holders, err := n.store.Lookup(ctx, []string{key})
	if err != nil {
		n.metrics.redisErrors.WithLabelValues("presence_lookup").Inc()
		return PresenceResult{}, unavailable("cluster presence unreachable")
	}
	out := PresenceResult{Key: key, Nodes: make([]string, 0, len(holders[0]))}
	for _, h := range holders[0] {
		out.Nodes = append(out.Nodes, h.Node)
		out.Connections += h.Conns
	}
	out.Online = out.Connections > 0
	return out, nil
}

// Cluster lists the live nodes.
func (n *Node) Cluster(ctx context.Context) ([]presence.Node, error) {
	ctx, cancel := context.WithTimeout(ctx, redisTimeout)
	defer cancel()
	nodes, err := n.store.Nodes(ctx)
	if err != nil {
		n.metrics.redisErrors.WithLabelValues("cluster").Inc()
		return nil, unavailable("cluster presence unreachable")
	}
	for i := range nodes {
		if nodes[i].ID == n.cfg.NodeID {
			nodes[i] = n.info() // fresher than the last heartbeat
		}
	}
	return nodes, nil
}

// Disconnect closes every connection of key in the cluster with 4001 and
// returns how many nodes held it.
func (n *Node) Disconnect(ctx context.Context, key string) (int, error) {
	if !protocol.ValidName(key) {
		return 0, InvalidName("invalid_key", "key", key)
	}
	ctx, cancel := context.WithTimeout(ctx, redisTimeout)
	defer cancel()
	nodes, err := n.router.Disconnect(ctx, key, n.ids.next())
	if err != nil {
		n.metrics.redisErrors.WithLabelValues("disconnect").Inc()
		return nodes, unavailable("cluster unreachable; some connections may remain")
	}
	return nodes, nil
}
