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

	"github.com/herald-push/herald/pkg/hub"
	"github.com/herald-push/herald/pkg/ordering"
	"github.com/herald-push/herald/pkg/presence"
	"github.com/herald-push/herald/pkg/protocol"
	"github.com/herald-push/herald/pkg/reconcile"
	"github.com/herald-push/herald/pkg/redisconn"
)

// Presence tells where keys are connected.
type Presence interface {
	Lookup(ctx context.Context, keys []string) ([][]presence.Holder, error)
}

// Local is this node's own connections.
type Local interface {
	// SendKey queues d for every local connection of key and returns how
	// many there were.
	SendKey(key string, d hub.Delivery) int
	SendTopic(topic string, d hub.Delivery) int
	SendAll(d hub.Delivery) int
	// CloseKey closes every local connection of key and returns how many.
	CloseKey(key string) int
	// KeyConns returns how many local connections key has.
	KeyConns(key string) int
	// TopicConns returns how many local connections subscribe to topic.
	TopicConns(topic string) int
}

// Router routes sends: local connections directly, other nodes through the
// Bus — a send to a few keys once to each key's channel, which the nodes
// holding the key subscribe to, a larger one once to each node holding any
// of its keys. It is the Bus's Handler for messages coming from other
// nodes, and keeps this node's key and topic subscriptions in line with
// its connections.
type Router struct {
	self     string
	bus      Bus
	presence Presence
	local    Local
	log      *slog.Logger
	topics   *reconcile.Loop

	keys       *reconcile.Loop
	subscribed map[string]bool // touched only by the topics loop
	// byChannel: sends to at most this many keys publish to each key's
	// channel; larger ones look up presence and publish once per node.
	byChannel int

	// keySubs holds every key whose channel Redis may count this node on:
	// from before its SUBSCRIBE is written until keyLeaveGrace after its
	// UNSUBSCRIBE was. Written by the keys loop (and the grace timers),
	// read by every send.
	keySubsMu  sync.RWMutex
	keySubs    map[string]keySub
	unroutable func(n int) // messages that reached no node that should have had them
	delivered  func(key string, id protocol.StoredID)
	invalid    func()      // messages from the bus whose data is not valid text
	loggedBad  atomic.Bool // the first such message was logged
}

// RouterConfig is what a Router is built from.
type RouterConfig struct {
	Self     string // this node's id
	Bus      Bus
	Presence Presence
	Local    Local
	Logger   *slog.Logger
	// Unroutable is told how many keys' messages went to a node that
	// presence named but that no longer listened. Optional.
	Unroutable func(n int)
	// Delivered is told, on the node whose sender waits, that key's stored
	// message id was written to a connection somewhere. Optional.
	Delivered func(key string, id protocol.StoredID)
	// InvalidText is told of each message from the bus dropped because its
	// id is not a name or its data not valid (protocol.ValidData): both are
	// pasted into frames verbatim. Optional.
	InvalidText func()
	// ByChannelUpTo is the most keys a send may have to be published to
	// its keys' channels, one publish per key; a send to more keys looks
	// its keys up in presence and publishes once to each node holding
	// any. Zero takes DefaultByChannelUpTo; negative sends every send by
	// lookup.
	ByChannelUpTo int
}

// DefaultByChannelUpTo is where publishing per key stops costing Redis
// less than a lookup and one publish per node (docs/benchmarks.md).
const DefaultByChannelUpTo = 3

// keySub is this node's subscription to a key's channel.
type keySub struct {
	// leaving: the keys loop unsubscribed it (or is doing so) and no
	// connection of the key needed it since; an entry that is not
	// leaving is subscribed or being subscribed.
	leaving bool
	// gen tells a grace timer whether the entry is still the one it was
	// set for.
	gen uint64
}

// keyLeaveGrace is how long after an UNSUBSCRIBE was written this node
// still counts itself among a key's subscribers: Redis reads the command
// soon after, but nothing says when.
const keyLeaveGrace = 2 * time.Second

// NewRouter returns a Router; call Run before routing.
func NewRouter(c RouterConfig) *Router {
	r := &Router{
		self:       c.Self,
		bus:        c.Bus,
		presence:   c.Presence,
		local:      c.Local,
		log:        c.Logger,
		subscribed: make(map[string]bool),
		unroutable: c.Unroutable,
		delivered:  c.Delivered,
		invalid:    c.InvalidText,
		byChannel:  c.ByChannelUpTo,
		keySubs:    make(map[string]keySub),
	}
	if r.byChannel == 0 {
		r.byChannel = DefaultByChannelUpTo
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.unroutable == nil {
		r.unroutable = func(int) {}
	}
	if r.delivered == nil {
		r.delivered = func(string, protocol.StoredID) {}
	}
	if r.invalid == nil {
		r.invalid = func() {}
	}
	r.topics = reconcile.New(r.syncTopics, time.Second)
	r.keys = reconcile.New(r.syncKeys, time.Second)
	return r
}

// Run receives from the bus and keeps topic and key subscriptions in line
// with local connections until ctx ends.
func (r *Router) Run(ctx context.Context) error {
	go r.topics.Run(ctx)
	go r.keys.Run(ctx)
	return r.bus.Run(ctx, r)
}

// Ready reports whether messages sent to this node reach it.
func (r *Router) Ready() bool { return r.bus.Ready() }

// renewer is a bus whose subscription can be dropped and opened again.
type renewer interface{ Renew(reason string) }

// RenewSubscription drops the bus subscription and opens a new one: the
// node may have been cut off, and must not read ready until its
// subscription is surely back. A bus without connections ignores it.
func (r *Router) RenewSubscription(reason string) {
	if b, ok := r.bus.(renewer); ok {
		b.Renew(reason)
	}
}

// TopicsChanged tells the router that local subscriber counts of topics
// changed. Wait on the result to know that the bus subscription is in place.
func (r *Router) TopicsChanged(topics ...string) *reconcile.Pending {
	return r.topics.Mark(topics...)
}

// KeysChanged tells the router that local connection counts of keys
// changed. Wait on the result to know that the keys' channel subscriptions
// are in place: a send published from then on reaches this node.
func (r *Router) KeysChanged(keys ...string) *reconcile.Pending {
	return r.keys.Mark(keys...)
}

// syncKeys subscribes the channels of keys that have local connections and
// unsubscribes those of keys that have none, each in as few commands as
// the bus allows: a node restarting with 15,000 clients subscribes their
// keys in a few SUBSCRIBEs.
func (r *Router) syncKeys(ctx context.Context, keys []string) error {
	var sub, unsub []string
	r.keySubsMu.Lock()
	for _, k := range keys {
		want := r.local.KeyConns(k) > 0
		e, have := r.keySubs[k]
		have = have && !e.leaving
		switch {
		case want && !have:
			e.leaving, e.gen = false, e.gen+1
			r.keySubs[k] = e // before the SUBSCRIBE: Redis may count it at once
			sub = append(sub, k)
		case !want && have:
			unsub = append(unsub, k)
		}
	}
	r.keySubsMu.Unlock()
	if len(unsub) > 0 {
		err := r.bus.UnsubscribeKeys(ctx, unsub...)
		r.keySubsMu.Lock()
		gens := make([]uint64, len(unsub))
		for i, k := range unsub {
			e := r.keySubs[k]
			e.leaving, e.gen = true, e.gen+1
			r.keySubs[k], gens[i] = e, e.gen
		}
		r.keySubsMu.Unlock()
		time.AfterFunc(keyLeaveGrace, func() { r.forgetLeft(unsub, gens) })
		if err != nil {
			return err
		}
	}
	if len(sub) > 0 {
		sctx, cancel := context.WithTimeout(ctx, redisconn.Timeout)
		defer cancel()
		if err := r.bus.SubscribeKeys(sctx, sub...); err != nil {
			return err
		}
	}
	return nil
}

// forgetLeft drops the entries of keys unsubscribed a grace ago, unless a
// connection of the key came back since.
func (r *Router) forgetLeft(keys []string, gens []uint64) {
	r.keySubsMu.Lock()
	defer r.keySubsMu.Unlock()
	for i, k := range keys {
		if e, ok := r.keySubs[k]; ok && e.leaving && e.gen == gens[i] {
			delete(r.keySubs, k)
		}
	}
}

// mayCountSelf reports whether Redis may count this node among the
// subscribers of key's channel.
func (r *Router) mayCountSelf(key string) bool {
	r.keySubsMu.RLock()
	_, ok := r.keySubs[key]
	r.keySubsMu.RUnlock()
	return ok
}

func (r *Router) syncTopics(ctx context.Context, topics []string) error {
	var sub, unsub []string
	for _, t := range topics {
		want := r.local.TopicConns(t) > 0
		if want == r.subscribed[t] {
			continue
		}
		if want {
			sub = append(sub, t)
		} else {
			unsub = append(unsub, t)
		}
	}
	if len(unsub) > 0 {
		if err := r.bus.Unsubscribe(ctx, unsub...); err != nil {
			return err
		}
		for _, t := range unsub {
			delete(r.subscribed, t)
		}
	}
	if len(sub) > 0 {
		sctx, cancel := context.WithTimeout(ctx, redisconn.Timeout)
		defer cancel()
		if err := r.bus.Subscribe(sctx, sub...); err != nil {
			return err
		}
		for _, t := range sub {
			r.subscribed[t] = true
		}
	}
	return nil
}

// KeysResult says where a send to keys went.
type KeysResult struct {
	// Online[i] is true when keys[i] had a connection that was handed the
	// message: locally, or on a node whose channel received it.
	Online []bool
	// Unreached[i] is true when keys[i] is held on a node the message could
	// not be published to; RouteErr says why. Such a key is not online for
	// this send, and it is not offline either: Redis failed.
	Unreached []bool
	RouteErr  error
}

// SendKeys routes m (KindKeys) to every connection of m.Keys in the cluster.
// Nothing is delivered when presence cannot be read; the error says so.
func (r *Router) SendKeys(ctx context.Context, m *Message) (KeysResult, error) {
	if len(m.Keys) <= r.byChannel {
		return r.sendByChannel(ctx, m), nil
	}
	holders, err := r.presence.Lookup(ctx, m.Keys)
	if err != nil {
		return KeysResult{}, err
	}
	return r.deliverKeys(ctx, m, holders), nil
}

// SendKeysMany routes several messages (KindKeys) as SendKeys would each.
// Those sent by key channel are published concurrently, so that they share
// the bus's pipelines; the others' keys are looked up in one presence call:
// a batch of sends costs one lookup, not one per send. Results and errors
// are in the order of ms; errs[i] is what SendKeys would have returned for
// ms[i].
func (r *Router) SendKeysMany(ctx context.Context, ms []*Message) (out []KeysResult, errs []error) {
	out, errs = make([]KeysResult, len(ms)), make([]error, len(ms))
	var lookedUp []int // of ms
	var keys []string
	var wg sync.WaitGroup
	defer wg.Wait()
	for i, m := range ms {
		if len(m.Keys) <= r.byChannel {
			wg.Go(func() { out[i] = r.sendByChannel(ctx, m) })
			continue
		}
		lookedUp = append(lookedUp, i)
		keys = append(keys, m.Keys...)
	}
	if len(lookedUp) == 0 {
		return out, errs
	}
	holders, err := r.presence.Lookup(ctx, keys)
	if err != nil {
		for _, i := range lookedUp {
			errs[i] = err
		}
		return out, errs
	}
	for _, i := range lookedUp {
		m := ms[i]
		hs := holders[:len(m.Keys)]
		holders = holders[len(m.Keys):]
		if onlyLocal(hs, r.self) {
			out[i] = r.deliverKeys(ctx, m, hs) // no publish to wait for
			continue
		}
		wg.Go(func() { out[i] = r.deliverKeys(ctx, m, hs) })
	}
	return out, errs
}

// onlyLocal reports whether no holder is on another node.
func onlyLocal(holders [][]presence.Holder, self string) bool {
	for _, hs := range holders {
		for _, h := range hs {
			if h.Node != self {
				return false
			}
		}
	}
	return true
}

// deliverKeys hands m to the local connections of its keys and publishes
// it once to each other node holding any of them.
func (r *Router) deliverKeys(ctx context.Context, m *Message, holders [][]presence.Holder) KeysResult {
	res := KeysResult{Online: make([]bool, len(m.Keys))}
	// Group remote keys by node so each node gets one message.
	var remote map[string][]int
	for i, key := range m.Keys {
		if r.local.SendKey(key, keyDelivery(m, i)) > 0 {
			res.Online[i] = true
		}
		for _, h := range holders[i] {
			if h.Node == r.self {
				continue
			}
			if remote == nil {
				remote = make(map[string][]int)
			}
			remote[h.Node] = append(remote[h.Node], i)
		}
	}
	for node, idx := range remote {
		out := *m
		out.Keys = make([]string, len(idx))
		if m.Stored != nil {
			out.Stored = make([]protocol.StoredID, len(idx))
			out.Prevs = make([]protocol.StoredID, len(idx))
		}
		for j, i := range idx {
			out.Keys[j] = m.Keys[i]
			if m.Stored != nil {
				out.Stored[j], out.Prevs[j] = m.Stored[i], m.Prevs[i]
			}
		}
		ok, err := r.bus.Send(ctx, node, &out)
		if err != nil {
			// Sends already handed to other nodes stand; the caller learns
			// which keys this one failed for.
			res.RouteErr = errors.Join(res.RouteErr, fmt.Errorf("route to node %s: %w", node, err))
			if res.Unreached == nil {
				res.Unreached = make([]bool, len(m.Keys))
			}
			for _, i := range idx {
				res.Unreached[i] = !res.Online[i]
			}
			continue
		}
		if !ok {
			r.unroutable(len(out.Keys))
			continue
		}
		for _, i := range idx {
			res.Online[i] = true
			if res.Unreached != nil {
				res.Unreached[i] = false
			}
		}
	}
	return res
}

// sendByChannel hands m to the local connections of its keys and
// publishes it once to each key's channel, whose subscribers are the other
// nodes holding the key: one PUBLISH per key, concurrent publishes sharing
// the bus's pipeline, and each answer says whether the key is online
// elsewhere. Each key's channel gets the message with that key alone.
func (r *Router) sendByChannel(ctx context.Context, m *Message) KeysResult {
	res := KeysResult{Online: make([]bool, len(m.Keys))}
	if len(m.Keys) == 1 {
		r.sendKeyByChannel(ctx, m, 0, m, &res)
		return res
	}
	var (
		wg sync.WaitGroup
		mu sync.Mutex
	)
	parts := make([]Message, len(m.Keys))
	for i := range m.Keys {
		one := &parts[i]
		*one = *m
		one.Keys = m.Keys[i : i+1]
		if m.Stored != nil {
			one.Stored, one.Prevs = m.Stored[i:i+1], m.Prevs[i:i+1]
		}
		wg.Go(func() {
			var part KeysResult
			part.Online = res.Online[i : i+1] // each goroutine writes its own
			r.sendKeyByChannel(ctx, one, i, m, &part)
			if part.RouteErr == nil {
				return
			}
			mu.Lock()
			res.RouteErr = errors.Join(res.RouteErr, part.RouteErr)
			if res.Unreached == nil {
				res.Unreached = make([]bool, len(m.Keys))
			}
			res.Unreached[i] = !res.Online[i]
			mu.Unlock()
		})
	}
	wg.Wait()
	return res
}

// sendKeyByChannel delivers one, the message of whole's key i alone, to the
// key's local connections and publishes it to the key's channel, writing
// where it went into res (whose Online has one).
func (r *Router) sendKeyByChannel(ctx context.Context, one *Message, i int, whole *Message, res *KeysResult) {
	key := one.Keys[0]
	here := r.local.SendKey(key, keyDelivery(whole, i)) > 0
	heard, err := r.bus.SendKey(ctx, key, one)
	res.Online[0] = here
	if err != nil {
		res.RouteErr = fmt.Errorf("publish to key %s: %w", key, err)
		if !here {
			res.Unreached = []bool{true}
		}
		return
	}
	if here || heard == 0 {
		return
	}
	if heard == 1 && r.mayCountSelf(key) {
		// The one subscriber may be this node, whose last connection of
		// the key just left and whose UNSUBSCRIBE Redis may not have read
		// yet: only presence can tell, and only this rare case asks it.
		res.Online[0] = r.heldElsewhere(ctx, key)
		return
	}
	res.Online[0] = true
}

// heldElsewhere reports whether presence names another node holding key.
func (r *Router) heldElsewhere(ctx context.Context, key string) bool {
	holders, err := r.presence.Lookup(ctx, []string{key})
	if err != nil {
		return false
	}
	for _, h := range holders[0] {
		if h.Node != r.self && h.Conns > 0 {
			return true
		}
	}
	return false
}

// Publish routes m (KindTopic or KindBroadcast) to every subscriber, or every
// connection, in the cluster and returns how many nodes it reached. The bus
// publish comes first so that a failure delivers nothing anywhere.
func (r *Router) Publish(ctx context.Context, m *Message) (int, error) {
	nodes, err := r.bus.Publish(ctx, m)
	if err != nil {
		return 0, fmt.Errorf("publish: %w", err)
	}
	local := r.deliverLocal(m)
	if local > 0 && nodes == 0 {
		// The bus reached nobody (this node's own topic subscription is
		// still being set up) but local subscribers got it.
		nodes = 1
	}
	return nodes, nil
}

// Disconnect closes every connection of key in the cluster and returns how
// many nodes held it.
func (r *Router) Disconnect(ctx context.Context, key, id string) (int, error) {
	holders, err := r.presence.Lookup(ctx, []string{key})
	if err != nil {
		return 0, err
	}
	nodes := 0
	if r.local.CloseKey(key) > 0 {
		nodes++
	}
	m := &Message{Kind: KindDisconnect, Origin: r.self, ID: id, Keys: []string{key}}
	for _, h := range holders[0] {
		if h.Node == r.self {
			continue
		}
		ok, err := r.bus.Send(ctx, h.Node, m)
		if err != nil {
			return nodes, err
		}
		if ok {
			nodes++
		}
	}
	return nodes, nil
}

// ReportDeliveredMany tells each notice's origin, the node whose sender
// waits, that the notice's stored message was written here: one message
// per origin node, carrying all of that node's reports, and those
// messages published concurrently so that they share one pipeline (per
// master in a cluster). Reports waiting in a queue thus cost one round trip
// together: one each would cap how fast senders learn of delivery at one
// report per round trip, far below the rate sends arrive on a slow link.
func (r *Router) ReportDeliveredMany(ctx context.Context, notices []*ordering.Notice) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs error
	)
	for first := 0; first < len(notices); first++ {
		origin := notices[first].Origin
		if slices.ContainsFunc(notices[:first], func(n *ordering.Notice) bool { return n.Origin == origin }) {
			continue // reported with its origin's first notice
		}
		if origin == r.self {
			for _, n := range notices[first:] {
				if n.Origin == origin {
					r.delivered(n.Key, n.ID)
				}
			}
			continue
		}
		m := &Message{Kind: KindDelivered, Origin: r.self}
		for _, n := range notices[first:] {
			if n.Origin == origin {
				m.Keys = append(m.Keys, n.Key)
				m.Stored = append(m.Stored, n.ID)
			}
		}
		m.Prevs = make([]protocol.StoredID, len(m.Keys))
		wg.Go(func() {
			if _, err := r.bus.Send(ctx, origin, m); err != nil {
				mu.Lock()
				errs = errors.Join(errs, fmt.Errorf("report %d deliveries to node %s: %w", len(m.Keys), origin, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errs
}

// keyDelivery is what the connections of m.Keys[i] receive. A stored
// message's id is its stored id, and its time the time it was stored.
func keyDelivery(m *Message, i int) hub.Delivery {
	if m.Kind != KindKeys || i >= len(m.Stored) {
		return hub.Delivery{ID: m.ID, TS: m.TS, Data: m.Data}
	}
	d := hub.Delivery{ID: m.ID, TS: m.TS, Data: m.Data}
	if m.Stored != nil {
		d.Stored, d.Prev = m.Stored[i], m.Prevs[i]
		d.ID, d.TS = d.Stored.String(), int64(d.Stored.MS)
		if m.Wait != 0 { // a sender waits for delivery or for an ack
			d.Notice = &ordering.Notice{Origin: m.Origin, Key: m.Keys[i], ID: d.Stored}
		}
	}
	return d
}

// HandleMessage delivers a message from another node to local connections.
// The accepting node checked the data already; a message whose data is not
// valid text all the same (an older node, a foreign publisher on the
// channel) is dropped rather than written: every browser it reached would
// close with 1007.
func (r *Router) HandleMessage(m *Message) {
	switch m.Kind {
	case KindKeys:
		if m.Origin == r.self {
			return // its key's channel echoing a send delivered locally when accepted
		}
		if !writable(m) {
			r.dropInvalid(m)
			return
		}
		for i, k := range m.Keys {
			r.local.SendKey(k, keyDelivery(m, i))
		}
	case KindDelivered:
		for i, k := range m.Keys {
			if i < len(m.Stored) {
				r.delivered(k, m.Stored[i])
			}
		}
	case KindTopic, KindBroadcast:
		if m.Origin == r.self {
			return // delivered locally when it was accepted
		}
		if !writable(m) {
			r.dropInvalid(m)
			return
		}
		r.deliverLocal(m)
	case KindDisconnect:
		for _, k := range m.Keys {
			r.local.CloseKey(k)
		}
	}
}

// writable reports whether m's id and data can be written into a frame as
// they are (protocol.AppendFrame). Nodes send only such messages; anything
// else on the bus was put there by hand, or by a broken or hostile client of
// Redis. Its keys and topic need no check: only names with local
// connections are looked up, and those were checked when they connected.
func writable(m *Message) bool {
	return protocol.ValidName(m.ID) && protocol.ValidData(m.Data)
}

// dropInvalid counts a message dropped for data that is not valid text and
// logs the first one only: a misbehaving publisher must not flood the log.
func (r *Router) dropInvalid(m *Message) {
	r.invalid()
	if r.loggedBad.CompareAndSwap(false, true) {
		r.log.Warn("dropping bus messages whose id or data cannot be written to a client (not a name; not one JSON value of valid UTF-8 text); logged once, counted in herald_drops_total{reason=\"invalid_text\"}",
			"origin", m.Origin, "id", m.ID, "kind", m.Kind)
	}
}

func (r *Router) deliverLocal(m *Message) int {
	d := hub.Delivery{ID: m.ID, TS: m.TS, Data: m.Data}
	if m.Kind == KindTopic {
		if len(m.Stored) == 1 { // a topic with history: ordered like a key's inbox
			d.Stored, d.Prev, d.Stream = m.Stored[0], m.Prevs[0], ordering.TopicStream(m.Topic)
		}
		return r.local.SendTopic(m.Topic, d)
	}
	return r.local.SendAll(d)
}
