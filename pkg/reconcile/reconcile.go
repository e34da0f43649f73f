// Package reconcile batches "this name changed" notices into periodic flushes
// that bring an external system (Redis presence, Redis subscriptions) in line
// with local state.
//
// A flush never receives the change itself, only the names that changed: it
// reads the current local state at flush time. That makes reordering harmless
// (a connect and a disconnect of the same key racing each other end in whatever
// is true when the flush runs) and lets a storm of changes to one name cost one
// write.
package reconcile

import (
	"context"
	"sync"
	"time"
)

// FlushFunc brings the external system in line for the given names. It must be
// idempotent: after an error the same names are flushed again.
type FlushFunc func(ctx context.Context, names []string) error

// Loop collects marked names and flushes them from a single goroutine, so
// flushes never run concurrently and a name's writes are never reordered.
type Loop struct {
	flush      FlushFunc
	retryDelay time.Duration

	mu    sync.Mutex
	dirty map[string]struct{}
	next  *Pending
	kick  chan struct{}
}

// shrinkAbove is the most names a flush may carry for the loop to keep its
// map; a larger one is let go.
const shrinkAbove = 1024

// Pending is the outcome of the flush that will carry a mark.
type Pending struct {
	done chan struct{}
	err  error
}

// Wait blocks until the flush carrying the mark has run, or ctx ends.
func (p *Pending) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// New returns a Loop that calls flush; after a failed flush it waits retryDelay
// before trying the same names again.
func New(flush FlushFunc, retryDelay time.Duration) *Loop {
	return &Loop{
		flush:      flush,
		retryDelay: retryDelay,
		dirty:      make(map[string]struct{}),
		next:       newPending(),
		kick:       make(chan struct{}, 1),
	}
}

func newPending() *Pending { return &Pending{done: make(chan struct{})} }

// Mark records that names changed and returns the flush that will carry them.
func (l *Loop) Mark(names ...string) *Pending {
	l.mu.Lock()
	for _, n := range names {
		l.dirty[n] = struct{}{}
	}
	p := l.next
	l.mu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
	return p
}

// Run flushes until ctx ends. Marks made while a flush runs are carried by the
// next one, which starts as soon as the current one returns: under load the
// batch size grows by itself.
func (l *Loop) Run(ctx context.Context) {
	var names []string
	for {
		select {
		case <-ctx.Done():
		case <-l.kick:
		}
		// A stopped loop starts no flush, even when a mark was also ready.
		if ctx.Err() != nil {
			l.mu.Lock()
			p := l.next
			l.next = newPending()
			l.mu.Unlock()
			p.err = ctx.Err()
			close(p.done)
			return
		}
		l.mu.Lock()
		names = names[:0]
		for n := range l.dirty {
			names = append(names, n)
		}
		if len(l.dirty) > shrinkAbove {
			// A Go map keeps the room of its largest size: after a storm
			// of 15,000 reconnects a cleared one would hold it for good.
			l.dirty = make(map[string]struct{})
		} else {
			clear(l.dirty)
		}
		p := l.next
		l.next = newPending()
		l.mu.Unlock()

		err := l.flush(ctx, names)
		p.err = err
		close(p.done)
		if err != nil && ctx.Err() == nil {
			l.Mark(names...)
			select {
			case <-time.After(l.retryDelay):
			case <-ctx.Done():
			}
		}
	}
}
