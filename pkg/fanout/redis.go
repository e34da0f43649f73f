package fanout

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Channel names. A node's channel carries the sends routed to it, so a send
// to a key held on two other nodes costs exactly two publishes.
// BroadcastChannel is where broadcasts and topic messages go: every node of
// the classic bus listens on it.
const BroadcastChannel = "herald:broadcast"

// nodeChannelPrefix + a node's id is the channel the node listens on.
const nodeChannelPrefix = "herald:node:"

func nodeChannel(id string) string     { return nodeChannelPrefix + id }
func topicChannel(topic string) string { return "herald:topic:" + topic }

// keyChannel is where sends to key go. Its hash tag is the key's, as for
// the key's inbox, so that in Redis Cluster a stored send's append and its
// publish go to one master.
func keyChannel(key string) string { return "herald:key:{" + key + "}" }

// channelsOf names the channels of topics or keys.
func channelsOf(names []string, channel func(string) string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = channel(n)
	}
	return out
}

// subscribeBatch bounds the channels of one SUBSCRIBE: a node that comes
// back with 15,000 keys subscribes them in a few commands, none so long
// that Redis stalls its other clients while it reads one.
const subscribeBatch = 1024

// RedisOptions tune a Redis bus. Zero values take the defaults.
type RedisOptions struct {
	// ProbeInterval is how often the node publishes a probe to its own
	// channel to learn whether its subscription is in place (default 1s).
	ProbeInterval time.Duration
	// ReceiveBuffer is how many received messages may wait for the handler
	// (default 10000); past it go-redis drops them after its send timeout.
	ReceiveBuffer int
	Logger        *slog.Logger
	// Resubscribed is called when the node's subscription comes back after
	// a Redis disconnection: messages published meanwhile were lost, and
	// whatever was stored must now be read back. Optional; must not block.
	Resubscribed func()
	// WireVersion is the frame version the bus writes (default
	// DefaultWireVersion). It reads every version it knows, whatever it
	// writes.
	WireVersion WireVersion
	// UnknownVersion is told of each received frame dropped because its
	// wire version is newer than this node reads. Optional; must not
	// block.
	UnknownVersion func()
}

// Redis is a Bus over Redis pub/sub: one PUBLISH per Send or Publish and one
// subscribing connection per node. go-redis reconnects that connection and
// subscribes again to every channel by itself after Redis comes back;
// messages published meanwhile are lost (at most once), and Ready is false
// from the first failed probe until the node's own channel answers again.
//
// Behind Sentinel, go-redis moves pooled connections to a new master after
// a failover but not the subscribing one. Sentinel cuts the clients of the
// old master when it demotes it, which makes the subscription dial again;
// but when it cannot reach the old master (a partition), the subscription
// stays there, hears nothing published on the new master, and every send to
// this node reads as unroutable. The probe catches it: two probes in a row
// that Redis accepts but that do not come back make the bus open a new
// subscribing connection, which dials the current master.
type Redis struct {
	rdb  redis.UniversalClient
	id   string
	opts RedisOptions
	ps   *redis.PubSub // guarded by mu once Run started
	// renew asks Run for a new subscribing connection, saying why.
	renew chan string

	ready atomic.Bool
	// renewing: Renew was called and the new subscription is not
	// confirmed yet; the bus is not ready meanwhile, whatever a probe in
	// flight on the old connection says.
	renewing atomic.Bool

	*publisher // Send and Publish
	recv       receiver

	mu       sync.Mutex
	waiters  map[string][]chan struct{} // channel -> Subscribe calls awaiting confirmation; nil when none
	channels map[string]struct{}        // topic and key channels subscribed, for a renewed connection
}

// NewRedis returns the Bus of node id on rdb.
func NewRedis(rdb redis.UniversalClient, id string, opts RedisOptions) *Redis {
	opts = opts.withDefaults()
	r := &Redis{
		rdb:      rdb,
		id:       id,
		opts:     opts,
		ps:       rdb.Subscribe(context.Background()),
		renew:    make(chan string, 1),
		channels: make(map[string]struct{}),
	}
	r.publisher = newPublisher(rdb, false, opts.WireVersion)
	r.recv = newReceiver(opts)
	return r
}

func (r *Redis) Subscribe(ctx context.Context, topics ...string) error {
	return r.subscribe(ctx, channelsOf(topics, topicChannel))
}

func (r *Redis) SubscribeKeys(ctx context.Context, keys ...string) error {
	return r.subscribe(ctx, channelsOf(keys, keyChannel))
}

func (r *Redis) subscribe(ctx context.Context, channels []string) error {
	if len(channels) == 0 {
		return nil
	}
	waits := make([]chan struct{}, len(channels))
	r.mu.Lock()
	for i, ch := range channels {
		waits[i] = make(chan struct{})
		if r.waiters == nil {
			r.waiters = make(map[string][]chan struct{})
		}
		r.waiters[ch] = append(r.waiters[ch], waits[i])
		r.channels[ch] = struct{}{}
	}
	ps := r.ps
	r.mu.Unlock()
	defer r.dropWaiters(channels, waits)

	// go-redis remembers the channels even when this write fails and
	// subscribes to them again on reconnect.
	for chunk := range slices.Chunk(channels, subscribeBatch) {
		if err := ps.Subscribe(ctx, chunk...); err != nil {
			return fmt.Errorf("subscribe to %d channels: %w", len(channels), err)
		}
	}
	return awaitSubscribed(ctx, channels, waits)
}

func (r *Redis) dropWaiters(channels []string, waits []chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, ch := range channels {
		ws := r.waiters[ch]
		for j, w := range ws {
			if w == waits[i] {
				ws = append(ws[:j], ws[j+1:]...)
				break
			}
		}
		if len(ws) == 0 {
			delete(r.waiters, ch)
		} else {
			r.waiters[ch] = ws
		}
	}
	if len(r.waiters) == 0 {
		// A map keeps the room of its largest size: 15,000 keys
		// subscribed at once would hold ~50 bytes each for good.
		r.waiters = nil
	}
}

func (r *Redis) confirm(channel string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, w := range r.waiters[channel] {
		close(w)
	}
	delete(r.waiters, channel)
}

func (r *Redis) Unsubscribe(ctx context.Context, topics ...string) error {
	return r.unsubscribe(ctx, channelsOf(topics, topicChannel))
}

func (r *Redis) UnsubscribeKeys(ctx context.Context, keys ...string) error {
	return r.unsubscribe(ctx, channelsOf(keys, keyChannel))
}

func (r *Redis) unsubscribe(ctx context.Context, channels []string) error {
	if len(channels) == 0 {
		return nil
	}
	r.mu.Lock()
	for _, ch := range channels {
		delete(r.channels, ch)
	}
	ps := r.ps
	r.mu.Unlock()
	for chunk := range slices.Chunk(channels, subscribeBatch) {
		if err := ps.Unsubscribe(ctx, chunk...); err != nil {
			return fmt.Errorf("unsubscribe from %d channels: %w", len(channels), err)
		}
	}
	return nil
}

func (r *Redis) Ready() bool { return r.ready.Load() && !r.renewing.Load() }

// Renew drops the subscribing connection and opens a new one (once Redis
// answers), subscribed to everything the old one was. A node calls it when
// it may have been cut off: the old connection may hang, or Redis may have
// dropped it (a reaper kills a dead node's subscriptions), and the node
// must not count as ready until a subscription is surely back. Resubscribed
// is called once it is.
func (r *Redis) Renew(reason string) {
	r.renewing.Store(true)
	r.ready.Store(false)
	r.requestRenew(reason)
}

func (r *Redis) requestRenew(reason string) {
	select {
	case r.renew <- reason:
	default:
	}
}

func (r *Redis) Run(ctx context.Context, h Handler) error {
	batchDone := make(chan struct{})
	go func() { defer close(batchDone); r.run(ctx) }()
	defer func() { <-batchDone }()
	probes := newProber(r.id, r.opts.ProbeInterval, r.opts.Logger, &r.ready,
		func(ctx context.Context, m *Message) (int, error) { return r.publish(ctx, nodeChannel(r.id), m) },
		func() { r.requestRenew("Redis accepted probes nobody received (a failover moved the master?)") })
	go probes.run(ctx)
	subscribedBefore := false
	for {
		r.mu.Lock()
		ps := r.ps
		r.mu.Unlock()
		if err := ps.Subscribe(ctx, nodeChannel(r.id), BroadcastChannel); err != nil {
			r.opts.Logger.Warn("subscribing to node channel failed; retrying on reconnect", "err", err)
		}
		received := ps.ChannelWithSubscriptions(
			redis.WithChannelSize(r.opts.ReceiveBuffer),
			redis.WithChannelHealthCheckInterval(r.opts.ProbeInterval),
		)
		reason, renew := r.receive(ctx, received, h, probes, &subscribedBefore)
		if !renew {
			ps.Close()
			return nil
		}
		// Renew: a new connection, dialed to wherever the master is now,
		// subscribed to everything the old one was.
		r.mu.Lock()
		r.ps = r.rdb.Subscribe(context.Background())
		channels := make([]string, 0, len(r.channels))
		for ch := range r.channels {
			channels = append(channels, ch)
		}
		next := r.ps
		r.mu.Unlock()
		ps.Close()
		for chunk := range slices.Chunk(channels, subscribeBatch) {
			_ = next.Subscribe(ctx, chunk...)
		}
		r.opts.Logger.Warn("bus subscription renewed", "reason", reason)
	}
}

// receive hands messages over until ctx ends (false) or a renewal of the
// subscribing connection is asked for (true, and why).
func (r *Redis) receive(ctx context.Context, received <-chan any, h Handler, probes *prober, subscribedBefore *bool) (string, bool) {
	for {
		select {
		case <-ctx.Done():
			return "", false
		case reason := <-r.renew:
			return reason, true
		case v, ok := <-received:
			if !ok {
				return "", false
			}
			switch v := v.(type) {
			case *redis.Subscription:
				if v.Kind != "subscribe" {
					continue
				}
				r.confirm(v.Channel)
				if v.Channel == nodeChannel(r.id) {
					// (Re)subscribed: no need to wait for the next probe.
					r.ready.Store(true)
					r.renewing.Store(false)
					if *subscribedBefore {
						r.opts.Resubscribed()
					}
					*subscribedBefore = true
				}
			case *redis.Message:
				var m Message
				if !r.recv.decode(&m, v.Channel, v.Payload) {
					continue
				}
				if m.Kind == kindProbe {
					probes.received(&m)
					continue
				}
				h.HandleMessage(&m)
			}
		}
	}
}
