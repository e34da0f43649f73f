package inbox

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/herald-push/herald/pkg/protocol"
)

// Memory is an in-process Store: the single-node mode's inbox. It lives as
// long as the process, and holds at most Options.MemoryBytes.
//
// Nothing is found by scanning: a key's entries are sorted by id (binary
// search), every entry is also queued in append order (ids grow with time,
// so the oldest are at the front of that queue), and keys are listed by
// their last write or ack (the idlest at the front). Expiry trims those
// fronts, as writes come and from Run while no write comes, so an idle key
// is freed MaxAge after its last use whether or not it is touched again.
type Memory struct {
	opts Options

	mu    sync.Mutex
	keys  map[string]*memoryInbox
	idle  inboxList // keys by last touch, idlest first
	order []stored  // entries in append order, from head on
	head  int
	live  int   // entries held: order's slots beyond it are trimmed already
	bytes int64 // what keys and entries hold, as sizeOf and keySize count it
}

type memoryInbox struct {
	key     string
	entries []Entry // ids increasing
	dedupe  map[string]protocol.StoredID
	last    protocol.StoredID
	acked   protocol.StoredID
	touched time.Time
	bytes   int64
	gone    bool // removed from the store: its queued entries are stale

	prev, next *memoryInbox
}

// stored is one entry's place in the append order.
type stored struct {
	in *memoryInbox
	id protocol.StoredID
}

// Rough costs of the bookkeeping around data, so that many tiny entries or
// keys are bounded as well as few big ones.
const (
	entryOverhead = 192 // Entry, its append-order slot, its dedupe slot
	keyOverhead   = 256 // memoryInbox, its map slot
)

func sizeOf(e Entry) int64 {
	return int64(len(e.Data) + len(e.Dedupe) + len(e.Origin) + entryOverhead)
}

func keySize(key string) int64 { return int64(2*len(key) + keyOverhead) }

// NewMemory returns an empty in-process Store.
func NewMemory(opts Options) *Memory {
	return &Memory{opts: opts, keys: make(map[string]*memoryInbox)}
}

// Sweep frees what is expired at now: keys untouched for MaxAge, entries
// older than MaxAge. Its cost is what it frees. The node calls it every
// second, so that memory comes back while no write comes in.
func (m *Memory) Sweep(now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expireLocked(now)
}

// Usage returns how many keys the store holds and how many bytes it counts
// for them.
func (m *Memory) Usage() (keys int, bytes int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.keys), m.bytes
}

func (m *Memory) expireLocked(now time.Time) {
	for in := m.idle.front; in != nil && now.Sub(in.touched) > m.opts.MaxAge; in = m.idle.front {
		m.removeLocked(in)
	}
	cutoff := uint64(now.Add(-m.opts.MaxAge).UnixMilli())
	for ; m.head < len(m.order); m.head++ {
		s := m.order[m.head]
		if s.id.MS >= cutoff {
			break
		}
		if !s.in.gone {
			m.dropLocked(s.in, sort.Search(len(s.in.entries), func(i int) bool { return s.in.entries[i].ID.After(s.id) }))
		}
		m.order[m.head] = stored{}
	}
	if m.head > 1024 && m.head > len(m.order)/2 { // amortized: each slot moves once per halving
		n := copy(m.order, m.order[m.head:])
		clear(m.order[n:])
		m.order, m.head = m.order[:n], 0
	}
	// Slots of entries trimmed by MaxLen or with their key wait for their
	// age; a key written without pause would let them pile up for MaxAge,
	// so they go once they outnumber the live ones.
	if pending := len(m.order) - m.head; pending > 1024 && pending > 2*m.live {
		kept := m.order[:0]
		for _, s := range m.order[m.head:] {
			if !s.in.gone && len(s.in.entries) > 0 && !s.in.entries[0].ID.After(s.id) {
				kept = append(kept, s)
			}
		}
		clear(m.order[len(kept):])
		m.order, m.head = kept, 0
	}
}

// dropLocked removes in's n oldest entries.
func (m *Memory) dropLocked(in *memoryInbox, n int) {
	if n <= 0 {
		return
	}
	for _, e := range in.entries[:n] {
		size := sizeOf(e)
		in.bytes -= size
		m.bytes -= size
		if e.Dedupe != "" && in.dedupe[e.Dedupe] == e.ID {
			delete(in.dedupe, e.Dedupe)
		}
	}
	clear(in.entries[:n]) // the backing array's front is freed on the next growth
	in.entries = in.entries[n:]
	m.live -= n
}

func (m *Memory) removeLocked(in *memoryInbox) {
	m.bytes -= in.bytes
	m.live -= len(in.entries)
	delete(m.keys, in.key)
	m.idle.remove(in)
	in.gone, in.entries, in.dedupe = true, nil, nil
}

// inboxLocked returns key's inbox, a new one when it has none or its
// inbox expired, and marks it used at now.
func (m *Memory) inboxLocked(key string, now time.Time) *memoryInbox {
	in := m.keys[key]
	if in != nil && now.Sub(in.touched) > m.opts.MaxAge {
		m.removeLocked(in)
		in = nil
	}
	if in == nil {
		in = &memoryInbox{key: key, bytes: keySize(key)}
		m.bytes += in.bytes
		m.keys[key] = in
	} else {
		m.idle.remove(in)
	}
	in.touched = now
	m.idle.pushBack(in)
	return in
}

// find returns the entry with id, if the inbox still holds it.
func (in *memoryInbox) find(id protocol.StoredID) (Entry, bool) {
	if id.IsZero() {
		return Entry{}, false
	}
	i := sort.Search(len(in.entries), func(i int) bool { return !id.After(in.entries[i].ID) })
	if i < len(in.entries) && in.entries[i].ID == id {
		return in.entries[i], true
	}
	return Entry{}, false
}

// deduped returns the entry of key an Append with dedupe would return.
func (m *Memory) dedupedLocked(key, dedupe string) (Entry, bool) {
	in := m.keys[key]
	if in == nil || dedupe == "" {
		return Entry{}, false
	}
	return in.find(in.dedupe[dedupe])
}

// fitsLocked reports whether appending e to keys stays within MemoryBytes,
// counting what MaxLen trims on the way and nothing for keys that dedupe.
func (m *Memory) fitsLocked(keys []string, e Entry) bool {
	if m.opts.MemoryBytes <= 0 {
		return true
	}
	need := int64(0)
	for _, k := range keys {
		if _, ok := m.dedupedLocked(k, e.Dedupe); ok {
			continue
		}
		need += sizeOf(e)
		in := m.keys[k]
		switch {
		case in == nil:
			need += keySize(k)
		case m.opts.MaxLen > 0 && int64(len(in.entries)) >= m.opts.MaxLen:
			need -= sizeOf(in.entries[0])
		}
	}
	return m.bytes+need <= m.opts.MemoryBytes
}

func (m *Memory) Append(_ context.Context, keys []string, e Entry) ([]protocol.StoredID, []protocol.StoredID, error) {
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expireLocked(now)
	if !m.fitsLocked(keys, e) {
		return nil, nil, ErrFull
	}
	ids := make([]protocol.StoredID, len(keys))
	prevs := make([]protocol.StoredID, len(keys))
	for i, k := range keys {
		in := m.inboxLocked(k, now)
		if e.Dedupe != "" {
			if first, ok := in.find(in.dedupe[e.Dedupe]); ok {
				ids[i], prevs[i] = first.ID, first.Prev
				continue
			}
		}
		id := protocol.StoredID{MS: uint64(now.UnixMilli())}
		if !id.After(in.last) {
			id = protocol.StoredID{MS: in.last.MS, Seq: in.last.Seq + 1}
		}
		if len(in.entries) > 0 {
			prevs[i] = in.entries[len(in.entries)-1].ID
		}
		in.last = id
		entry := e
		entry.ID, entry.Prev = id, prevs[i]
		in.entries = append(in.entries, entry)
		size := sizeOf(entry)
		in.bytes += size
		m.bytes += size
		m.order = append(m.order, stored{in: in, id: id})
		m.live++
		if over := int64(len(in.entries)) - m.opts.MaxLen; over > 0 {
			m.dropLocked(in, int(over))
		}
		ids[i] = id
		if e.Dedupe != "" {
			if in.dedupe == nil {
				in.dedupe = make(map[string]protocol.StoredID)
			}
			in.dedupe[e.Dedupe] = id
		}
	}
	return ids, prevs, nil
}

func (m *Memory) After(_ context.Context, key string, after protocol.StoredID, limit int) ([]Entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.afterLocked(key, after, limit), nil
}

func (m *Memory) afterLocked(key string, after protocol.StoredID, limit int) []Entry {
	in := m.keys[key]
	if in == nil || limit <= 0 {
		return nil
	}
	i := sort.Search(len(in.entries), func(i int) bool { return in.entries[i].ID.After(after) })
	if i == len(in.entries) {
		return nil
	}
	return append([]Entry(nil), in.entries[i:min(len(in.entries), i+limit)]...)
}

func (m *Memory) Pending(_ context.Context, key string, limit int) (protocol.StoredID, []Entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var acked protocol.StoredID
	if in := m.keys[key]; in != nil {
		acked = in.acked
	}
	return acked, m.afterLocked(key, acked, limit), nil
}

func (m *Memory) Ack(_ context.Context, key string, id protocol.StoredID) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	in := m.inboxLocked(key, time.Now())
	if id.After(in.acked) {
		in.acked = id
	}
	return nil
}

func (m *Memory) Acked(_ context.Context, key string) (protocol.StoredID, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if in := m.keys[key]; in != nil {
		return in.acked, nil
	}
	return protocol.StoredID{}, nil
}

func (m *Memory) Tail(_ context.Context, key string, n int) ([]Entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	in := m.keys[key]
	if in == nil || n <= 0 {
		return nil, nil
	}
	return append([]Entry(nil), in.entries[max(0, len(in.entries)-n):]...), nil
}

// inboxList is an intrusive doubly linked list of inboxes: moving a key to
// the back on every touch allocates nothing.
type inboxList struct{ front, back *memoryInbox }

func (l *inboxList) pushBack(in *memoryInbox) {
	in.prev, in.next = l.back, nil
	if l.back != nil {
		l.back.next = in
	} else {
		l.front = in
	}
	l.back = in
}

func (l *inboxList) remove(in *memoryInbox) {
	if in.prev != nil {
		in.prev.next = in.next
	} else if l.front == in {
		l.front = in.next
	}
	if in.next != nil {
		in.next.prev = in.prev
	} else if l.back == in {
		l.back = in.prev
	}
	in.prev, in.next = nil, nil
}
