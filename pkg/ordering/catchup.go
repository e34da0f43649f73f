package ordering

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/herald-push/herald/pkg/inbox"
	"github.com/herald-push/herald/pkg/protocol"
)

// Stored is a stored message as a connection receives it.
type Stored struct {
	ID, Prev protocol.StoredID
	TS       int64 // unix milliseconds
	Data     []byte
	Notice   *Notice // nil unless a sender waits for its delivery
	// Skip: the entry cannot be written to a client (see Unwritable); the
	// connection moves past it without a frame.
	Skip bool
}

// Skip reasons.
const (
	SkipMissingData = "missing_data" // the entry has no data (its payload vanished)
	SkipInvalidText = "invalid_text" // its data is not text a client can decode
	SkipInvalidJSON = "invalid_json" // its data is not one JSON value: pasted into a frame, it would break or forge it
)

// Unwritable says why entry e cannot be written to a client, or "" when it
// can. Such entries are in the store already (an older build, a hand-made
// XADD, a payload gone): refusing them at the door is too late, closing the
// connection on them would close it on every reconnect.
func Unwritable(e inbox.Entry) string {
	switch {
	case len(e.Data) == 0:
		return SkipMissingData
	case !protocol.ValidText(e.Data):
		return SkipInvalidText
	case !json.Valid(e.Data):
		return SkipInvalidJSON
	}
	return ""
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
	Close(code protocol.CloseCode, reason string) bool
	// Last is the newest id of s the connection was given.
	Last(s StreamID) protocol.StoredID
	// Replay queues what it can of ms after start and returns how many of
	// ms it used; WaitRoom before replaying the rest. A Skip message moves
	// the stream past it without queuing anything.
	Replay(s StreamID, start protocol.StoredID, ms []Stored) int
	// Room returns how many messages and bytes the queue can take now.
	Room() (msgs, bytes int)
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
	// Page is how many entries one read returns at most.
	Page int
	// MaxEntry is the largest frame a stored entry can make: a read asks
	// for no more entries than the connection's queue has room for at
	// that size, so a client that does not read costs its queue, not a
	// page of the largest entries.
	MaxEntry int
	// TopicReplay is how many of its newest messages a new subscriber of a
	// history topic is shown; negative: none.
	TopicReplay int
	// Timeout bounds one read.
	Timeout time.Duration
	// Replayed counts messages replayed; ReadFailed counts failed reads;
	// Skipped is told of each entry skipped, and why (SkipMissingData,
	// SkipInvalidText).
	Replayed   func(n int)
	ReadFailed func()
	Skipped    func(reason, storeKey string, id protocol.StoredID)
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
		page, ok := k.page(ctx, c)
		if !ok {
			return
		}
		rctx, cancel := context.WithTimeout(ctx, k.Timeout)
		switch {
		case first && from == FromSince:
			start = since
			entries, err = k.Store.After(rctx, storeKey, start, page)
		case first && !isTopic:
			start, entries, err = k.Store.Pending(rctx, storeKey, page)
		case first:
			// A new subscriber sees the newest TopicReplay messages; with
			// replay off it starts after the newest, which it is not shown.
			entries, err = k.Store.Tail(rctx, storeKey, max(k.TopicReplay, 1))
			if err == nil && k.TopicReplay < 0 && len(entries) > 0 {
				start, entries = entries[len(entries)-1].ID, nil
			}
		default:
			entries, err = k.Store.After(rctx, storeKey, c.Last(s), page)
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
			if why := Unwritable(e); why != "" {
				// Moving past it, rather than leaving it unread, keeps the
				// stream's order: the next entry's Prev is this one, and
				// a read after Last does not find it again.
				ms[i] = Stored{ID: e.ID, Prev: e.Prev, Skip: true}
				k.Skipped(why, storeKey, e.ID)
				continue
			}
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
		if len(entries) == page && !tail {
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

// page returns how many entries the next read of c's stream asks for: as
// many as c's queue has room for at MaxEntry each, at least one, at most
// Page. When the queue has no room for one, it waits for room first. False:
// c closed or ctx ended meanwhile.
func (k *Catcher) page(ctx context.Context, c Conn) (int, bool) {
	msgs, bytes := c.Room()
	if msgs < 1 || (k.MaxEntry > 0 && bytes < k.MaxEntry) {
		if !c.WaitRoom(ctx) {
			return 0, false
		}
		msgs, bytes = c.Room()
	}
	n := min(k.Page, msgs)
	if k.MaxEntry > 0 {
		n = min(n, bytes/k.MaxEntry)
	}
	return max(n, 1), true
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
