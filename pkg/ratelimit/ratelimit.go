// Package ratelimit is a token bucket per key (a client IP, say).
package ratelimit

import (
	"math"
	"sync"
	"time"
)

// Keyed holds one token bucket per key. Buckets that have refilled are
// forgotten, so memory follows the number of recently active keys.
type Keyed struct {
	rate  float64 // tokens per second
	burst float64

	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

// New returns a limiter allowing rate events per second per key, with bursts
// of up to burst events.
func New(rate float64, burst int) *Keyed {
	return &Keyed{rate: rate, burst: float64(max(burst, 1)), buckets: make(map[string]*bucket)}
}

// Allow takes a token from key's bucket. When none is left it reports false
// and how long until one is.
func (k *Keyed) Allow(key string, now time.Time) (bool, time.Duration) {
	return k.AllowN(key, 1, now)
}

// AllowN takes n tokens from key's bucket (a weight: bytes, say). When
// fewer are left it takes none, and reports false and how long until n
// are; n over the burst never fits (the wait is then how long until the
// bucket is full).
func (k *Keyed) AllowN(key string, n float64, now time.Time) (bool, time.Duration) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if now.Sub(k.lastSweep) > time.Minute {
		k.sweep(now)
	}
	b := k.buckets[key]
	if b == nil {
		b = &bucket{tokens: k.burst, at: now}
		k.buckets[key] = b
	}
	b.tokens = math.Min(k.burst, b.tokens+now.Sub(b.at).Seconds()*k.rate)
	b.at = now
	if b.tokens >= n {
		b.tokens -= n
		return true, 0
	}
	wait := time.Duration((math.Min(n, k.burst) - b.tokens) / k.rate * float64(time.Second))
	return false, wait
}

func (k *Keyed) sweep(now time.Time) {
	k.lastSweep = now
	for key, b := range k.buckets {
		if b.tokens+now.Sub(b.at).Seconds()*k.rate >= k.burst {
			delete(k.buckets, key)
		}
	}
}
