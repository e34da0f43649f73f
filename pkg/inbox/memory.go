package inbox

import (
	"context"
	"sync"
	"time"

	"github.com/herald-push/herald/pkg/protocol"
)

// Memory is an in-process Store: the single-node mode's inbox. It lives as
// long as the process.
type Memory struct {
	opts Options

	mu   sync.Mutex
	keys map[string]*memoryInbox
}

type memoryInbox struct {
	entries []Entry
	dedupe  map[string]protocol.StoredID
	last    protocol.StoredID
	acked   protocol.StoredID
	touched time.Time
}

// NewMemory returns an empty in-process Store.
func NewMemory(opts Options) *Memory {
	return &Memory{opts: opts, keys: make(map[string]*memoryInbox)}
}

func (m *Memory) inbox(key string, now time.Time) *memoryInbox {
	in := m.keys[key]
	if in == nil || now.Sub(in.touched) > m.opts.MaxAge {
		in = &memoryInbox{}
		m.keys[key] = in
	}
	return in
}

func (m *Memory) Append(_ context.Context, keys []string, e Entry) ([]protocol.StoredID, []protocol.StoredID, error) {
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	ids := make([]protocol.StoredID, len(keys))
	prevs := make([]protocol.StoredID, len(keys))
	for i, k := range keys {
		in := m.inbox(k, now)
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
		in.last, in.touched = id, now
		entry := e
		entry.ID, entry.Prev = id, prevs[i]
		in.entries = append(in.entries, entry)
		cutoff := uint64(now.Add(-m.opts.MaxAge).UnixMilli())
		drop := 0
		for drop < len(in.entries) && (int64(len(in.entries)-drop) > m.opts.MaxLen || in.entries[drop].ID.MS < cutoff) {
			drop++
		}
		in.entries = append(in.entries[:0:0], in.entries[drop:]...)
		ids[i] = id
		if e.Dedupe != "" {
			if in.dedupe == nil {
				in.dedupe = make(map[string]protocol.StoredID)
			}
			in.dedupe[e.Dedupe] = id
			if int64(len(in.dedupe)) > 2*m.opts.MaxLen { // forget what was trimmed
				oldest := in.entries[0].ID
				for d, id := range in.dedupe {
					if oldest.After(id) {
						delete(in.dedupe, d)
					}
				}
			}
		}
	}
	return ids, prevs, nil
}

// find returns the entry with id, if the inbox still holds it.
func (in *memoryInbox) find(id protocol.StoredID) (Entry, bool) {
	if id.IsZero() {
		return Entry{}, false
	}
	for _, e := range in.entries {
		if e.ID == id {
			return e, true
		}
	}
	return Entry{}, false
}

func (m *Memory) After(_ context.Context, key string, after protocol.StoredID, limit int) ([]Entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.afterLocked(key, after, limit), nil
}

func (m *Memory) afterLocked(key string, after protocol.StoredID, limit int) []Entry {
	in := m.keys[key]
	if in == nil {
		return nil
	}
	var out []Entry
	for _, e := range in.entries {
		if e.ID.After(after) {
			out = append(out, e)
			if len(out) == limit {
				break
			}
		}
	}
	return out
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
	in := m.inbox(key, time.Now())
	if id.After(in.acked) {
		in.acked = id
	}
	in.touched = time.Now()
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
