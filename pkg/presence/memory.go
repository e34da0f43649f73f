package presence

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"
)

// Memory is an in-process presence space: the single-node mode's Store, and a
// way to run several nodes in one process. Stores obtained from the same
// Memory see each other.
type Memory struct {
	ttl time.Duration

	mu       sync.Mutex
	nodes    map[string]*memoryNode
	holders  map[string]map[string]int // key -> node -> conns
	nodeKeys map[string]map[string]struct{}
}

type memoryNode struct {
	info    Node
	expires time.Time
}

// NewMemory returns an empty presence space whose nodes expire ttl after
// their last heartbeat.
func NewMemory(ttl time.Duration) *Memory {
	return &Memory{
		ttl:      ttl,
		nodes:    make(map[string]*memoryNode),
		holders:  make(map[string]map[string]int),
		nodeKeys: make(map[string]map[string]struct{}),
	}
}

// Store returns the Store of node id.
func (m *Memory) Store(id string) Store { return &memoryStore{m: m, id: id} }

type memoryStore struct {
	m    *Memory
	id   string
	left bool // guarded by m.mu
}

func (s *memoryStore) Join(_ context.Context, n Node) error {
	m := s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	m.removeNodeLocked(s.id)
	n.ID = s.id
	m.nodes[s.id] = &memoryNode{info: n, expires: time.Now().Add(m.ttl)}
	s.left = false
	return nil
}

func (s *memoryStore) Heartbeat(_ context.Context, n Node) (Lost, error) {
	m := s.m
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.left {
		return LostNothing, ErrLeft
	}
	for id, mn := range m.nodes {
		if id != s.id && !mn.expires.After(now) {
			m.removeNodeLocked(id)
		}
	}
	n.ID = s.id
	_, known := m.nodes[s.id]
	m.nodes[s.id] = &memoryNode{info: n, expires: now.Add(m.ttl)}
	if !known {
		return LostNode, nil
	}
	return LostNothing, nil
}

func (s *memoryStore) Set(_ context.Context, counts []Count) error {
	m := s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.left {
		return ErrLeft
	}
	keys := m.nodeKeys[s.id]
	if keys == nil {
		keys = make(map[string]struct{})
		m.nodeKeys[s.id] = keys
	}
	for _, c := range counts {
		h := m.holders[c.Key]
		if c.Conns <= 0 {
			delete(h, s.id)
			if len(h) == 0 {
				delete(m.holders, c.Key)
			}
			delete(keys, c.Key)
			continue
		}
		if h == nil {
			h = make(map[string]int)
			m.holders[c.Key] = h
		}
		h[s.id] = c.Conns
		keys[c.Key] = struct{}{}
	}
	return nil
}

func (s *memoryStore) Lookup(_ context.Context, keys []string) ([][]Holder, error) {
	m := s.m
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([][]Holder, len(keys))
	for i, k := range keys {
		for id, n := range m.holders[k] {
			if mn := m.nodes[id]; mn != nil && mn.expires.After(now) {
				out[i] = append(out[i], Holder{Node: id, Conns: n})
			}
		}
		slices.SortFunc(out[i], func(a, b Holder) int { return strings.Compare(a.Node, b.Node) })
	}
	return out, nil
}

func (s *memoryStore) Nodes(_ context.Context) ([]Node, error) {
	m := s.m
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Node
	for _, mn := range m.nodes {
		if mn.expires.After(now) {
			out = append(out, mn.info)
		}
	}
	slices.SortFunc(out, func(a, b Node) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

func (s *memoryStore) Leave(_ context.Context) error {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	s.m.removeNodeLocked(s.id)
	s.left = true
	return nil
}

func (m *Memory) removeNodeLocked(id string) {
	for k := range m.nodeKeys[id] {
		h := m.holders[k]
		delete(h, id)
		if len(h) == 0 {
			delete(m.holders, k)
		}
	}
	delete(m.nodeKeys, id)
	delete(m.nodes, id)
}
