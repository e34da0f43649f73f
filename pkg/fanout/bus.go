// Package fanout routes messages between nodes: the Bus carries them, the
// Router decides where each send goes.
package fanout

import (
	"context"
	"fmt"
)

// Bus carries Messages between nodes. Delivery is at most once: a message
// sent while a node is disconnected from the bus is lost, which is why Send
// reports whether anyone received it.
//
// Every node listens on its own channel and on the cluster-wide broadcast
// channel from Run on; topic channels are listened to between Subscribe and
// Unsubscribe, a key's channel between SubscribeKeys and UnsubscribeKeys.
// Subscriptions of the same topic or key are never changed concurrently:
// callers serialize them. All other methods may be called concurrently.
type Bus interface {
	// Send delivers m to the named node and reports whether a node was
	// listening on its channel.
	Send(ctx context.Context, node string, m *Message) (bool, error)
	// Publish delivers m to every node subscribed to m.Topic (KindTopic) or
	// to every node (KindBroadcast), the publisher included, and returns how
	// many received it.
	Publish(ctx context.Context, m *Message) (int, error)
	// Subscribe returns once messages published to the topics from now on
	// will reach this node.
	Subscribe(ctx context.Context, topics ...string) error
	// Unsubscribe stops topic messages from reaching this node.
	Unsubscribe(ctx context.Context, topics ...string) error
	// SendKey delivers m to every node subscribed to key's channel, the
	// sender included, and returns how many received it: a send to a key
	// is one publish, and its answer says on how many nodes the key is
	// connected.
	SendKey(ctx context.Context, key string, m *Message) (int, error)
	// SubscribeKeys returns once messages sent to the keys' channels from
	// now on will reach this node.
	SubscribeKeys(ctx context.Context, keys ...string) error
	// UnsubscribeKeys stops messages sent to the keys from reaching this
	// node. Redis may count this node for a publish shortly after it
	// returned: the unsubscribe may still be on its way.
	UnsubscribeKeys(ctx context.Context, keys ...string) error
	// Ready reports whether the node currently receives what is sent to it.
	Ready() bool
	// Run hands every received message to h, one at a time, until ctx ends.
	// h must not block: it holds up every later message.
	Run(ctx context.Context, h Handler) error
}

// Handler receives the messages a Bus carries to this node. It must not
// modify m; it may keep it.
type Handler interface {
	HandleMessage(m *Message)
}

// awaitSubscribed waits until each channel's subscription is confirmed
// (waits[i] closed), or ctx ends.
func awaitSubscribed(ctx context.Context, channels []string, waits []chan struct{}) error {
	for i, w := range waits {
		select {
		case <-w:
		case <-ctx.Done():
			return fmt.Errorf("subscribe to %s: %w", channels[i], ctx.Err())
		}
	}
	return nil
}
