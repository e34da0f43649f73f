// Package idempotency remembers the answers to requests sent with an
// Idempotency-Key, so that a retried request gets the first answer instead
// of being carried out twice.
package idempotency

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herald-push/herald/pkg/redisconn"
)

// ErrInProgress: a request with the same key is being carried out now.
var ErrInProgress = errors.New("a request with this idempotency key is in progress")

// Store claims idempotency keys and keeps their answers for a TTL.
//
// Begin either claims the key (the caller carries the request out, then calls
// Finish with the answer, or Abort if it failed so a retry may run) or returns
// the answer recorded earlier, or ErrInProgress while the first request runs.
// A claim lasts lease: if neither Finish nor Abort reaches the store (the
// process died, or Redis failed over meanwhile), a retry may claim the key
// again once the lease ran out, instead of finding it in progress for the
// whole TTL. All methods may be called concurrently.
type Store interface {
	Begin(ctx context.Context, key string, lease time.Duration) (answer []byte, claimed bool, err error)
	Finish(ctx context.Context, key string, answer []byte) error
	Abort(ctx context.Context, key string) error
}

// Redis keeps claims under herald:{idem:<key>}: empty while in progress, the
// answer once finished.
type Redis struct {
	rdb  redis.UniversalClient
	ttl  time.Duration
	repl redisconn.Replication
}

// NewRedis returns a Store on rdb whose answers are kept for ttl. Finish
// returns only once repl's replicas have the answer, or an error wrapping
// redisconn.ErrNotReplicated (the answer is then kept on the master).
func NewRedis(rdb redis.UniversalClient, ttl time.Duration, repl redisconn.Replication) *Redis {
	return &Redis{rdb: rdb, ttl: ttl, repl: repl}
}

func redisKey(key string) string { return "herald:{idem:" + key + "}" }

func (r *Redis) Begin(ctx context.Context, key string, lease time.Duration) ([]byte, bool, error) {
	ok, err := r.rdb.SetNX(ctx, redisKey(key), "", lease).Result()
	if redisconn.OutOfMemory(err) {
		return nil, false, fmt.Errorf("%w: claim idempotency key: %w", ErrFull, err)
	}
	if err != nil {
		return nil, false, fmt.Errorf("claim idempotency key: %w", err)
	}
	if ok {
		return nil, true, nil
	}
	answer, err := r.rdb.Get(ctx, redisKey(key)).Bytes()
	if errors.Is(err, redis.Nil) { // expired or aborted in between: try again
		return r.Begin(ctx, key, lease)
	}
	if err != nil {
		return nil, false, fmt.Errorf("read idempotent answer: %w", err)
	}
	if len(answer) == 0 {
		return nil, false, ErrInProgress
	}
	return answer, false, nil
}

func (r *Redis) Finish(ctx context.Context, key string, answer []byte) error {
	err := r.repl.Write(ctx, r.rdb, redisKey(key), func(p redis.Pipeliner) {
		p.Set(ctx, redisKey(key), answer, r.ttl)
	})
	if err != nil {
		return fmt.Errorf("record idempotent answer: %w", err)
	}
	return nil
}

func (r *Redis) Abort(ctx context.Context, key string) error {
	if err := r.rdb.Del(ctx, redisKey(key)).Err(); err != nil {
		return fmt.Errorf("release idempotency key: %w", err)
	}
	return nil
}

// ErrFull: the in-process store remembers as much as it may, or Redis is
// out of memory; the key was not claimed and nothing was done.
var ErrFull = errors.New("the idempotency store is full")

// Memory is an in-process Store for the single-node mode. Lookups are one
// map access; what expires is found on a heap ordered by expiry, so a
// request pays only for what expired since the one before, and Run frees
// it while no request comes.
type Memory struct {
	ttl      time.Duration
	maxBytes int64

	mu      sync.Mutex
	answers map[string]*memoryAnswer
	expiry  expiryHeap // may hold stale items: gen tells
	gen     uint64
	bytes   int64
}

type memoryAnswer struct {
	answer  []byte // nil while in progress
	expires time.Time
	gen     uint64 // the heap item that expires this answer
	size    int64
}

// answerOverhead is a rough cost of an answer's map slot, struct and heap
// item.
const answerOverhead = 160

// NewMemory returns an in-process Store whose answers are kept for ttl, at
// most maxBytes of them (keys, answers and bookkeeping; 0 or less: no bound).
// Beyond it Begin refuses new keys with ErrFull: forgetting an answer
// instead would let a retry run twice.
func NewMemory(ttl time.Duration, maxBytes int64) *Memory {
	return &Memory{ttl: ttl, maxBytes: maxBytes, answers: make(map[string]*memoryAnswer)}
}

// Sweep frees the answers and claims expired at now. The node calls it
// every second, so that memory comes back while no request comes in.
func (m *Memory) Sweep(now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expireLocked(now)
}

// Usage returns how many keys the store remembers and the bytes it counts
// for them.
func (m *Memory) Usage() (keys int, bytes int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.answers), m.bytes
}

func (m *Memory) expireLocked(now time.Time) {
	for len(m.expiry) > 0 && now.After(m.expiry[0].expires) {
		it := heap.Pop(&m.expiry).(expiryItem)
		if a := m.answers[it.key]; a != nil && a.gen == it.gen {
			m.deleteLocked(it.key, a)
		}
	}
	// Stale items (answers finished, aborted or renewed) are dropped from
	// the heap once they outnumber the live ones.
	if len(m.expiry) > 1024 && len(m.expiry) > 2*len(m.answers) {
		live := m.expiry[:0]
		for _, it := range m.expiry {
			if a := m.answers[it.key]; a != nil && a.gen == it.gen {
				live = append(live, it)
			}
		}
		clear(m.expiry[len(live):])
		m.expiry = live
		heap.Init(&m.expiry)
	}
}

func (m *Memory) deleteLocked(key string, a *memoryAnswer) {
	delete(m.answers, key)
	m.bytes -= a.size
}

// setLocked records key's answer (nil: in progress) until expires.
func (m *Memory) setLocked(key string, answer []byte, expires time.Time) {
	if old := m.answers[key]; old != nil {
		m.deleteLocked(key, old)
	}
	m.gen++
	a := &memoryAnswer{answer: answer, expires: expires, gen: m.gen,
		size: int64(2*len(key) + len(answer) + answerOverhead)}
	m.answers[key] = a
	m.bytes += a.size
	heap.Push(&m.expiry, expiryItem{expires: expires, key: key, gen: a.gen})
}

func (m *Memory) Begin(_ context.Context, key string, lease time.Duration) ([]byte, bool, error) {
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expireLocked(now)
	a := m.answers[key]
	switch {
	case a == nil || now.After(a.expires):
		if m.maxBytes > 0 && m.bytes+int64(2*len(key)+answerOverhead) > m.maxBytes {
			return nil, false, ErrFull
		}
		m.setLocked(key, nil, now.Add(lease))
		return nil, true, nil
	case a.answer == nil:
		return nil, false, ErrInProgress
	}
	return a.answer, false, nil
}

// Finish records the answer even beyond the bound: the request was carried
// out, and a retry must find its answer.
func (m *Memory) Finish(_ context.Context, key string, answer []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.setLocked(key, answer, time.Now().Add(m.ttl))
	return nil
}

func (m *Memory) Abort(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if a := m.answers[key]; a != nil {
		m.deleteLocked(key, a)
	}
	return nil
}

type expiryItem struct {
	expires time.Time
	key     string
	gen     uint64
}

// expiryHeap is a min-heap of expiries (container/heap).
type expiryHeap []expiryItem

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].expires.Before(h[j].expires) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiryItem)) }
func (h *expiryHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = expiryItem{}
	*h = old[:len(old)-1]
	return it
}
