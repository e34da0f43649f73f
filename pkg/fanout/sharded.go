package fanout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herald-push/herald/pkg/redisconn"
)

// RedisSharded is a Bus over Redis Cluster's sharded pub/sub: SPUBLISH and
// SSUBSCRIBE, so that a message travels only to the shard that owns its
// channel and adding shards adds capacity (classic PUBLISH in a cluster is
// copied to every cluster node).
//
// It owns its subscriptions rather than leaving them to go-redis, whose
// cluster SSubscribe opens one connection on the shard of the first channel
// only and resubscribes every channel in one command, which Redis refuses
// across slots. Here each wanted channel is placed on the master that owns
// its slot, one subscribing connection per master, one channel per
// SSUBSCRIBE. A placement pass looks at the channels subscribed or
// unsubscribed since the last one only: a node with 15,000 keys whose
// connections come and go does not look up 15,000 masters a second. Every
// channel is placed again when a subscription connection fails (the master
// died), when Redis unsubscribes a channel itself (its slot migrated), when
// probes stop coming back, and every few seconds against the client's view
// of the slots (a resharding or a failover nothing else told of). Messages published to a channel while it was
// being moved are lost, as with any pub/sub gap: Resubscribed is called
// once every channel is back so that stored messages are read again.
type RedisSharded struct {
	cc   *redis.ClusterClient
	id   string
	opts RedisOptions

	*publisher // Send and Publish
	recv       receiver

	ready atomic.Bool
	// renewing: Renew was called and the node channel is not confirmed
	// again yet (see Redis.Renew).
	renewing atomic.Bool
	probes   *prober // set by Run before any receiving starts

	handle  sync.Mutex // hands messages to the Handler one at a time
	kick    chan struct{}
	moved   atomic.Bool // the slot layout changed: let the client reload it before placing
	failing atomic.Bool // subscriptions are failing; logged once until they are back

	mu      sync.Mutex
	want    map[string]bool            // channels this node listens to
	shards  map[string]*shard          // master address -> its subscription
	placed  map[string]placement       // channel -> where it is subscribed
	waiters map[string][]chan struct{} // channel -> Subscribe calls awaiting confirmation; nil when none
	// changed holds the channels subscribed or unsubscribed since the last
	// placement pass, which places them alone unless everything is to be
	// placed again (all).
	changed map[string]struct{}
	all     bool
	gap     bool // a channel was lost since everything was last confirmed
	started bool // the node channel was confirmed once
}

// placement is where a channel is subscribed: one map entry per channel,
// not one per fact about it, for a node holds one per key.
type placement struct {
	sh        *shard
	confirmed bool // Redis confirmed the subscription
}

// shard is one subscribing connection, to one master.
type shard struct {
	addr   string
	ps     *redis.PubSub
	stop   context.CancelFunc
	broken bool // guarded by RedisSharded.mu
	n      int  // channels placed on it; guarded by RedisSharded.mu
}

// NewRedisSharded returns the Bus of node id on the cluster cc.
func NewRedisSharded(cc *redis.ClusterClient, id string, opts RedisOptions) *RedisSharded {
	opts = opts.withDefaults()
	r := &RedisSharded{
		cc:      cc,
		id:      id,
		opts:    opts,
		kick:    make(chan struct{}, 1),
		want:    map[string]bool{nodeChannel(id): true, BroadcastChannel: true},
		shards:  make(map[string]*shard),
		placed:  make(map[string]placement),
		changed: make(map[string]struct{}),
		all:     true,
	}
	r.publisher = newPublisher(cc, true, opts.WireVersion)
	r.recv = newReceiver(opts)
	return r
}

func (r *RedisSharded) Subscribe(ctx context.Context, topics ...string) error {
	return r.subscribe(ctx, channelsOf(topics, topicChannel))
}

func (r *RedisSharded) SubscribeKeys(ctx context.Context, keys ...string) error {
	return r.subscribe(ctx, channelsOf(keys, keyChannel))
}

func (r *RedisSharded) subscribe(ctx context.Context, channels []string) error {
	if len(channels) == 0 {
		return nil
	}
	waits := make([]chan struct{}, len(channels))
	r.mu.Lock()
	for i, ch := range channels {
		r.want[ch] = true
		r.changed[ch] = struct{}{}
		waits[i] = make(chan struct{})
		if r.placed[ch].confirmed {
			close(waits[i])
		} else {
			if r.waiters == nil {
				r.waiters = make(map[string][]chan struct{})
			}
			r.waiters[ch] = append(r.waiters[ch], waits[i])
		}
	}
	r.mu.Unlock()
	r.poke()
	err := awaitSubscribed(ctx, channels, waits)
	if err != nil {
		r.dropWaiters(channels, waits)
	}
	return err
}

// dropWaiters forgets the waits of a Subscribe that gave up.
func (r *RedisSharded) dropWaiters(channels []string, waits []chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, ch := range channels {
		ws := slices.DeleteFunc(r.waiters[ch], func(w chan struct{}) bool { return w == waits[i] })
		if len(ws) == 0 {
			delete(r.waiters, ch)
		} else {
			r.waiters[ch] = ws
		}
	}
	if len(r.waiters) == 0 {
		r.waiters = nil // a map keeps the room of its largest size: let the GC have it
	}
}

func (r *RedisSharded) Unsubscribe(ctx context.Context, topics ...string) error {
	return r.unsubscribe(channelsOf(topics, topicChannel))
}

func (r *RedisSharded) UnsubscribeKeys(ctx context.Context, keys ...string) error {
	return r.unsubscribe(channelsOf(keys, keyChannel))
}

func (r *RedisSharded) unsubscribe(channels []string) error {
	r.mu.Lock()
	for _, ch := range channels {
		delete(r.want, ch)
		r.changed[ch] = struct{}{}
	}
	r.mu.Unlock()
	r.poke()
	return nil
}

// placeAll makes the next placement pass look at every channel.
func (r *RedisSharded) placeAll() {
	r.mu.Lock()
	r.all = true
	r.mu.Unlock()
}

func (r *RedisSharded) Ready() bool { return r.ready.Load() && !r.renewing.Load() }

// Renew drops every subscribing connection, on every master, and places
// every channel again (see Redis.Renew).
func (r *RedisSharded) Renew(reason string) {
	r.renewing.Store(true)
	r.ready.Store(false)
	r.mu.Lock()
	shards := make([]*shard, 0, len(r.shards))
	for _, sh := range r.shards {
		shards = append(shards, sh)
	}
	r.mu.Unlock()
	for _, sh := range shards {
		r.breakShard(sh, errors.New("renewed: "+reason))
	}
	r.poke()
}

func (r *RedisSharded) poke() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Run places subscriptions, receives, and probes until ctx ends.
func (r *RedisSharded) Run(ctx context.Context, h Handler) error {
	var loops sync.WaitGroup
	defer loops.Wait()
	loops.Go(func() { r.run(ctx) })
	r.probes = newProber(r.id, r.opts.ProbeInterval, r.opts.Logger, &r.ready,
		func(ctx context.Context, m *Message) (int, error) { return r.publish(ctx, nodeChannel(r.id), m) },
		func() { r.replace(nodeChannel(r.id)) })
	loops.Go(func() { r.probes.run(ctx) })
	defer r.closeAll()

	t := time.NewTicker(r.opts.ProbeInterval)
	defer t.Stop()
	reload := 0
	for {
		if err := r.place(ctx, h, &loops); err != nil && ctx.Err() == nil {
			r.logFailure("placing sharded subscriptions failed; retrying", "err", err)
			r.cc.ReloadState(ctx)
			r.moved.Store(true)
		}
		if r.moved.Swap(false) {
			r.placeAll()
			// The client reloads the slot layout in the background, at
			// most every 200ms: placing again sooner would ask the old
			// owner again.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(placeInterval):
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-r.kick:
		case <-t.C:
			// The client learns of a failover or a resharding from
			// redirects; ask it to look now and then as well, and check
			// every channel against what it learned on the next tick.
			switch reload++; reload % 5 {
			case 0:
				r.cc.ReloadState(ctx)
			case 1:
				r.placeAll()
			}
		}
	}
}

// place subscribes the wanted channels on the masters that own their slots
// and unsubscribes what is no longer wanted or no longer there: the
// channels changed since the last pass, or every channel when something
// may have moved them all.
func (r *RedisSharded) place(ctx context.Context, h Handler, loops *sync.WaitGroup) error {
	r.mu.Lock()
	all := r.all
	r.all = false
	changed := r.changed
	r.changed = make(map[string]struct{}) // not clear: a map keeps the room of its largest size
	var todo []string
	if all {
		todo = make([]string, 0, len(r.want)+len(changed))
		for ch := range r.want {
			todo = append(todo, ch)
		}
		for ch := range changed {
			if !r.want[ch] {
				todo = append(todo, ch)
			}
		}
		for ch := range r.placed {
			if _, seen := changed[ch]; !seen && !r.want[ch] {
				todo = append(todo, ch)
			}
		}
	} else {
		todo = make([]string, 0, len(changed))
		for ch := range changed {
			todo = append(todo, ch)
		}
	}
	r.mu.Unlock()

	var errs []error
	leave := map[*shard][]string{}
	for _, ch := range todo {
		r.mu.Lock()
		if !r.want[ch] {
			if sh := r.placed[ch].sh; sh != nil {
				r.unplaceLocked(ch, sh)
				if !sh.broken {
					leave[sh] = append(leave[sh], ch)
				}
			}
			r.mu.Unlock()
			continue
		}
		r.mu.Unlock()
		master, err := r.cc.MasterForKey(ctx, ch)
		if err != nil {
			r.retry(ch)
			errs = append(errs, fmt.Errorf("find the master of %s: %w", ch, err))
			continue
		}
		addr := master.Options().Addr
		r.mu.Lock()
		if !r.want[ch] {
			r.mu.Unlock()
			continue // unsubscribed meanwhile: changed again, the next pass leaves it
		}
		cur := r.placed[ch].sh
		if cur != nil && cur.addr == addr && !cur.broken {
			r.mu.Unlock()
			continue
		}
		var old *shard
		if cur != nil {
			r.unplaceLocked(ch, cur)
			if !cur.broken {
				// The slot moved: leave the old master, lose nothing that
				// Resubscribed will not read back.
				old = cur
				r.gap = true
			}
		}
		sh := r.shards[addr]
		if sh == nil || sh.broken {
			sh = r.openShard(ctx, master, addr, h, loops)
		}
		r.placed[ch] = placement{sh: sh}
		sh.n++
		r.mu.Unlock()
		if old != nil {
			_ = old.ps.SUnsubscribe(ctx, ch)
		}
		// One channel per command: SSUBSCRIBE refuses channels of several
		// slots in one call.
		if err := sh.ps.SSubscribe(ctx, ch); err != nil {
			r.breakShard(sh, err)
			errs = append(errs, fmt.Errorf("ssubscribe to %s: %w", ch, err))
		}
	}

	r.mu.Lock()
	var drop []*shard
	for addr, sh := range r.shards {
		if sh.n == 0 {
			delete(r.shards, addr)
			drop = append(drop, sh)
		}
	}
	r.mu.Unlock()
	for sh, channels := range leave {
		for _, ch := range channels {
			_ = sh.ps.SUnsubscribe(ctx, ch)
		}
	}
	for _, sh := range drop {
		sh.stop()
		_ = sh.ps.Close()
	}
	return errors.Join(errs...)
}

// unplaceLocked forgets that ch is subscribed on sh. r.mu is held.
func (r *RedisSharded) unplaceLocked(ch string, sh *shard) {
	delete(r.placed, ch)
	sh.n--
}

// retry makes the next placement pass look at ch again.
func (r *RedisSharded) retry(ch string) {
	r.mu.Lock()
	r.changed[ch] = struct{}{}
	r.mu.Unlock()
}

// openShard starts a subscribing connection to master. r.mu is held.
func (r *RedisSharded) openShard(ctx context.Context, master *redis.Client, addr string, h Handler, loops *sync.WaitGroup) *shard {
	sctx, stop := context.WithCancel(ctx)
	sh := &shard{addr: addr, ps: master.SSubscribe(sctx), stop: stop}
	r.shards[addr] = sh
	loops.Go(func() { r.receive(sctx, sh, h) })
	return sh
}

// receive reads one shard's connection until it fails or ctx ends.
func (r *RedisSharded) receive(ctx context.Context, sh *shard, h Handler) {
	quiet := 0
	for {
		v, err := sh.ps.ReceiveTimeout(ctx, r.opts.ProbeInterval*5)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			var refused redis.Error
			if errors.As(err, &refused) {
				// A command refused (MOVED: the slot is served elsewhere
				// now); the connection itself is fine. Placing again after
				// the client learned the new layout moves the channel.
				r.opts.Logger.Debug("sharded subscription refused; placing again", "master", sh.addr, "err", err)
				r.cc.ReloadState(ctx)
				r.moved.Store(true)
				r.poke()
				continue
			}
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() && quiet == 0 {
				// Silence: make the connection prove it is alive.
				quiet++
				_ = sh.ps.Ping(ctx)
				continue
			}
			r.breakShard(sh, err)
			return
		}
		quiet = 0
		switch v := v.(type) {
		case *redis.Subscription:
			r.subscriptionChanged(sh, v)
		case *redis.Message:
			var m Message
			if !r.recv.decode(&m, v.Channel, v.Payload) {
				continue
			}
			if m.Kind == kindProbe {
				r.probes.received(&m)
				continue
			}
			r.handle.Lock()
			h.HandleMessage(&m)
			r.handle.Unlock()
		}
	}
}

func (r *RedisSharded) subscriptionChanged(sh *shard, s *redis.Subscription) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch s.Kind {
	case "ssubscribe":
		p := r.placed[s.Channel]
		if p.sh != sh {
			return
		}
		p.confirmed = true
		r.placed[s.Channel] = p
		for _, w := range r.waiters[s.Channel] {
			close(w)
		}
		delete(r.waiters, s.Channel)
		if len(r.waiters) == 0 {
			r.waiters = nil // a map keeps the room of its largest size
		}
		if s.Channel == nodeChannel(r.id) {
			r.ready.Store(true)
			r.renewing.Store(false)
			r.started = true
		}
		r.endGapLocked()
	case "sunsubscribe":
		// Either ours, or Redis telling us the slot moved elsewhere.
		if r.placed[s.Channel].sh == sh && r.want[s.Channel] {
			r.unplaceLocked(s.Channel, sh)
			r.gap = true
			r.all = true // the slot's other channels moved too
			r.cc.ReloadState(context.Background())
			r.moved.Store(true)
			r.poke()
		}
	}
}

// endGapLocked calls Resubscribed once every wanted channel is confirmed
// again after some were lost. r.mu is held.
func (r *RedisSharded) endGapLocked() {
	if !r.gap || !r.started {
		return
	}
	for ch := range r.want {
		if !r.placed[ch].confirmed {
			return
		}
	}
	r.gap = false
	if r.failing.Swap(false) {
		r.opts.Logger.Info("sharded subscriptions in place again; reading stored messages back")
	}
	go r.opts.Resubscribed()
}

// logFailure logs the first failure of an outage as a warning and the
// retries that follow at debug level.
func (r *RedisSharded) logFailure(msg string, args ...any) {
	if r.failing.Swap(true) {
		r.opts.Logger.Debug(msg, args...)
	} else {
		r.opts.Logger.Warn(msg, args...)
	}
}

// breakShard forgets a failed connection: its channels are placed anew.
func (r *RedisSharded) breakShard(sh *shard, err error) {
	r.mu.Lock()
	if sh.broken {
		r.mu.Unlock()
		return
	}
	sh.broken = true
	if r.shards[sh.addr] == sh {
		delete(r.shards, sh.addr)
	}
	lost := sh.n
	if lost > 0 {
		for ch, p := range r.placed {
			if p.sh == sh {
				r.unplaceLocked(ch, sh)
			}
		}
		r.gap = true
	}
	r.all = true
	r.mu.Unlock()
	r.logFailure("sharded subscription lost; placing its channels again", "master", sh.addr, "channels", lost, "err", err)
	sh.stop()
	_ = sh.ps.Close()
	r.cc.ReloadState(context.Background())
	r.moved.Store(true)
	r.poke()
}

func (r *RedisSharded) closeAll() {
	r.mu.Lock()
	shards := r.shards
	r.shards = map[string]*shard{}
	r.mu.Unlock()
	for _, sh := range shards {
		sh.stop()
		_ = sh.ps.Close()
	}
}

// replace drops channel's placement so that the next pass subscribes it on
// its owner again.
func (r *RedisSharded) replace(channel string) {
	r.mu.Lock()
	r.all = true // probes stopped coming back: anything may have moved
	if sh := r.placed[channel].sh; sh != nil {
		r.unplaceLocked(channel, sh)
		r.gap = true
		// Under the lock, so that a placement pass cannot subscribe the
		// channel on this connection before this unsubscribes it. Rare: only
		// when probes stopped coming back.
		ctx, cancel := context.WithTimeout(context.Background(), redisconn.Timeout)
		_ = sh.ps.SUnsubscribe(ctx, channel)
		cancel()
	}
	r.mu.Unlock()
	r.cc.ReloadState(context.Background())
	r.moved.Store(true)
	r.poke()
}

var _ Bus = (*RedisSharded)(nil)

// placeInterval spaces placement passes.
const placeInterval = 250 * time.Millisecond

// withDefaults fills the zero options.
func (o RedisOptions) withDefaults() RedisOptions {
	if o.ProbeInterval <= 0 {
		o.ProbeInterval = time.Second
	}
	if o.ReceiveBuffer <= 0 {
		o.ReceiveBuffer = 10000
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Resubscribed == nil {
		o.Resubscribed = func() {}
	}
	if o.WireVersion == 0 {
		o.WireVersion = DefaultWireVersion
	}
	if o.UnknownVersion == nil {
		o.UnknownVersion = func() {}
	}
	return o
}
