// Package idempotency remembers the answers to requests sent with an
// Idempotency-Key, so that a retried request gets the first answer instead
// of being carried out twice.
package idempotency

import (
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

// Memory is an in-process Store for the single-node mode.
type Memory struct {
	ttl time.Duration

	mu      sync.Mutex
	answers map[string]memoryAnswer
}

type memoryAnswer struct {
	answer  []byte // nil while in progress
	expires time.Time
}

// NewMemory returns an in-process Store whose answers are kept for ttl.
func NewMemory(ttl time.Duration) *Memory {
	return &Memory{ttl: ttl, answers: make(map[string]memoryAnswer)}
}

func (m *Memory) Begin(_ context.Context, key string, lease time.Duration) ([]byte, bool, error) {
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, a := range m.answers { // keep the map bounded by the TTL
		if now.After(a.expires) {
			delete(m.answers, k)
		}
	}
	a, ok := m.answers[key]
	switch {
	case !ok:
		m.answers[key] = memoryAnswer{expires: now.Add(lease)}
		return nil, true, nil
	case a.answer == nil:
		return nil, false, ErrInProgress
	}
	return a.answer, false, nil
}

func (m *Memory) Finish(_ context.Context, key string, answer []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.answers[key] = memoryAnswer{answer: answer, expires: time.Now().Add(m.ttl)}
	return nil
}

func (m *Memory) Abort(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.answers, key)
	return nil
}
