package fanout

import (
	"context"
	"sync"
)

// Memory is an in-process bus network: the single-node mode's Bus, and a way
// to run several nodes in one process. Buses obtained from the same Memory
// reach each other. Delivery is synchronous: a message is handled before
// Send or Publish returns.
type Memory struct {
	mu       sync.RWMutex
	handlers map[string]Handler             // node -> handler while Run runs
	topics   map[string]map[string]struct{} // topic -> subscribed nodes
	keys     map[string]map[string]struct{} // key -> subscribed nodes
}

// NewMemory returns an empty network.
func NewMemory() *Memory {
	return &Memory{handlers: make(map[string]Handler), topics: make(map[string]map[string]struct{}),
		keys: make(map[string]map[string]struct{})}
}

// Bus returns the Bus of node id.
func (m *Memory) Bus(id string) Bus { return &memoryBus{m: m, id: id} }

type memoryBus struct {
	m  *Memory
	id string
}

func (b *memoryBus) Send(_ context.Context, node string, msg *Message) (bool, error) {
	b.m.mu.RLock()
	h := b.m.handlers[node]
	b.m.mu.RUnlock()
	if h == nil {
		return false, nil
	}
	h.HandleMessage(msg)
	return true, nil
}

func (b *memoryBus) Publish(_ context.Context, msg *Message) (int, error) {
	b.m.mu.RLock()
	var targets []Handler
	for node, h := range b.m.handlers {
		if msg.Kind == KindBroadcast {
			targets = append(targets, h)
		} else if _, ok := b.m.topics[msg.Topic][node]; ok {
			targets = append(targets, h)
		}
	}
	b.m.mu.RUnlock()
	for _, h := range targets {
		h.HandleMessage(msg)
	}
	return len(targets), nil
}

func (b *memoryBus) SendKey(_ context.Context, key string, msg *Message) (int, error) {
	b.m.mu.RLock()
	var few [4]Handler // a key is held on a node or two: no allocation per send
	targets := few[:0]
	for node := range b.m.keys[key] {
		if h := b.m.handlers[node]; h != nil {
			targets = append(targets, h)
		}
	}
	b.m.mu.RUnlock()
	for _, h := range targets {
		h.HandleMessage(msg)
	}
	return len(targets), nil
}

func (b *memoryBus) Subscribe(_ context.Context, topics ...string) error {
	b.subscribe(b.m.topics, topics)
	return nil
}

func (b *memoryBus) Unsubscribe(_ context.Context, topics ...string) error {
	b.unsubscribe(b.m.topics, topics)
	return nil
}

func (b *memoryBus) SubscribeKeys(_ context.Context, keys ...string) error {
	b.subscribe(b.m.keys, keys)
	return nil
}

func (b *memoryBus) UnsubscribeKeys(_ context.Context, keys ...string) error {
	b.unsubscribe(b.m.keys, keys)
	return nil
}

func (b *memoryBus) subscribe(subs map[string]map[string]struct{}, names []string) {
	b.m.mu.Lock()
	defer b.m.mu.Unlock()
	for _, name := range names {
		nodes := subs[name]
		if nodes == nil {
			nodes = make(map[string]struct{})
			subs[name] = nodes
		}
		nodes[b.id] = struct{}{}
	}
}

func (b *memoryBus) unsubscribe(subs map[string]map[string]struct{}, names []string) {
	b.m.mu.Lock()
	defer b.m.mu.Unlock()
	for _, name := range names {
		delete(subs[name], b.id)
		if len(subs[name]) == 0 {
			delete(subs, name)
		}
	}
}

func (b *memoryBus) Ready() bool {
	b.m.mu.RLock()
	defer b.m.mu.RUnlock()
	return b.m.handlers[b.id] != nil
}

func (b *memoryBus) Run(ctx context.Context, h Handler) error {
	b.m.mu.Lock()
	b.m.handlers[b.id] = h
	b.m.mu.Unlock()
	<-ctx.Done()
	b.m.mu.Lock()
	delete(b.m.handlers, b.id)
	for _, subs := range []map[string]map[string]struct{}{b.m.topics, b.m.keys} {
		for name, nodes := range subs {
			delete(nodes, b.id)
			if len(nodes) == 0 {
				delete(subs, name)
			}
		}
	}
	b.m.mu.Unlock()
	return nil
}
