package presence

import (
	"context"
	"sync"
	"time"
)

// liveness is a process's copy of the registry of live incarnations and
// their deadlines. A deadline only moves forward while a node lives, so a
// copy errs only one way: it may call a node that heartbeated since dead,
// or not know a node that joined since. Lookups therefore trust a live
// entry as it is and, before calling an incarnation dead or unknown, make
// sure the copy was read after the entry was: a node registers its
// incarnation before it writes any entry under it. The copy is also read
// again once it is a second old, so that it does not drift.
type liveness struct {
	mu      sync.Mutex
	members map[string]int64 // member -> deadline, unix ms
	started time.Time        // when the read that produced members began
}

// maxAge is how old a copy may be before a lookup reads the registry again.
const maxAge = time.Second

// get returns the copy, reading it with read when it is missing, older
// than maxAge, or began before notBefore. Callers that queue behind a read
// use its result when it began late enough.
func (l *liveness) get(ctx context.Context, read func(context.Context) (map[string]int64, error), notBefore time.Time) (map[string]int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.members != nil && time.Since(l.started) < maxAge && l.started.After(notBefore) {
		return l.members, nil
	}
	started := time.Now()
	m, err := read(ctx)
	if err != nil {
		return nil, err
	}
	l.members, l.started = m, started
	return m, nil
}
