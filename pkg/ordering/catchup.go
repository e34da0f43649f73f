package ordering

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/herald-push/herald/pkg/inbox"
	"github.com/herald-push/herald/pkg/protocol"
)

// Stored is a stored message as a connection receives it.
type Stored struct {
	ID, Prev protocol.StoredID
	TS       int64 // unix milliseconds
	Data     []byte
	Notice   *Notice // nil unless a sender waits for its delivery
}

// Notice is reported once per node, by the connection that first writes a
// stored message whose sender waits for delivery, to the node the sender
// waits on (Origin).
type Notice struct {
	Origin string
	Key    string
	ID     protocol.StoredID
	sent   atomic.Bool
}

// First reports true the first time it is called: only the first write of a
// message reports it.
func (n *Notice) First() bool { return n.sent.CompareAndSwap(false, true) }

// Store is the read side of the stored streams (inbox.Store).
type Store interface {
	After(ctx context.Context, key string, after protocol.StoredID, n int) ([]inbox.Entry, error)
	Pending(ctx context.Context, key string, n int) (protocol.StoredID, []inbox.Entry, error)
	Tail(ctx context.Context, key string, n int) ([]inbox.Entry, error)
}

// Conn is a connection's side of a catch-up (hub.Conn).
type Conn interface {
	Closed() bool
	Close(code websocket.StatusCode, reason string) bool
	// Last is the newest id of s the connection was given.
	Last(s StreamID) protocol.StoredID
	// Replay queues what it can of ms after start and returns how many of
	// ms it used; WaitRoom before replaying the rest.
	Replay(s StreamID, start protocol.StoredID, ms []Stored) int
	// EndCatchUp queues what s held meanwhile and says what is left to do.
	EndCatchUp(s StreamID) State
	// WaitRoom waits until the queue has room; false when the connection
	// closed or ctx ended first.
	WaitRoom(ctx context.Context) bool
}

// From is where a catch-up starts.
type From uint8

const (
	// FromConnect: a client that just connected, without since: a key
	// resumes after its acknowledged position, a topic shows its newest
	// messages.
	FromConnect From = iota + 1
	// FromSince: a client that just connected with a since id.
	FromSince
	// FromLast: a connection that fell behind reads after its Last.
	FromLast
)

// Catcher reads what connections missed from the store and replays it in
// order before their live messages.
type Catcher struct {
	Store Store
	// Page is how many entries one read returns.
	Page int
	// TopicReplay is how many of its newest messages a new subscriber of a
	// history topic is shown; negative: none.
	TopicReplay int
	// Timeout bounds one read.
	Timeout time.Duration
	// Replayed counts messages replayed; ReadFailed counts failed reads.
	Replayed   func(n int)
	ReadFailed func()
	Log        *slog.Logger
}

// CatchUp replays stream s of the connection c of key, then lets s's live
// messages through again. since is used with FromSince. A connection whose
// stream cannot be read for a while is closed with 1013 so that the client
// resumes elsewhere, which loses nothing.
func (k *Catcher) CatchUp(ctx context.Context, c Conn, key string, s StreamID, from From, since protocol.StoredID) {
	storeKey := s.StoreKey(key)
	_, isTopic := s.Topic()
	first := from != FromLast
	failures := 0
	for !c.Closed() {
		var (
			start   protocol.StoredID
			entries []inbox.Entry
			err     error
		)
		rctx, cancel := context.WithTimeout(ctx, k.Timeout)
		switch {
		case first && from == FromSince:
			start = since
			entries, err = k.Store.After(rctx, storeKey, start, k.Page)
		case first && !isTopic:
			start, entries, err = k.Store.Pending(rctx, storeKey, k.Page)
		case first:
			// A new subscriber sees the newest TopicReplay messages; with
			// replay off it starts after the newest, which it is not shown.
			entries, err = k.Store.Tail(rctx, storeKey, max(k.TopicReplay, 1))
			if err == nil && k.TopicReplay < 0 && len(entries) > 0 {
				start, entries = entries[len(entries)-1].ID, nil
			}
		default:
			entries, err = k.Store.After(rctx, storeKey, c.Last(s), k.Page)
		}
		cancel()
		if err != nil {
			k.ReadFailed()
			if failures++; failures > 10 {
				k.Log.Warn("cannot read the stored messages of a connection; closing it so it resumes elsewhere", "stream", s.String(), "err", err)
				c.Close(protocol.CloseTryAgainLater, "try again later: stored messages unreadable")
				return
			}
			time.Sleep(time.Duration(failures) * 200 * time.Millisecond)
			continue
		}
		failures = 0
		tail := first && from == FromConnect && isTopic
		first = false
		ms := make([]Stored, len(entries))
		for i, e := range entries {
			ms[i] = StoredMessage(key, s, e)
		}
		c.Replay(s, start, nil) // the start point, even when nothing follows it
		for len(ms) > 0 {
			used := c.Replay(s, start, ms)
			k.Replayed(used)
			ms = ms[used:]
			if len(ms) > 0 && !c.WaitRoom(ctx) {
				return
			}
		}
		if len(entries) == k.Page && !tail {
			continue // there may be more
		}
		for {
			switch c.EndCatchUp(s) {
			case CaughtUp:
				return
			case NeedRoom:
				if !c.WaitRoom(ctx) {
					return
				}
				continue
			}
			break // NeedRead
		}
	}
}

// StoredMessage is what a connection of key receives for entry e of its
// stream s: a key's entry whose sender waits carries a Notice.
func StoredMessage(key string, s StreamID, e inbox.Entry) Stored {
	m := Stored{ID: e.ID, Prev: e.Prev, TS: int64(e.ID.MS), Data: e.Data}
	if s == KeyStream && e.Wait != inbox.WaitNone {
		m.Notice = &Notice{Origin: e.Origin, Key: key, ID: e.ID}
	}
	return m
}
