// Package ordering keeps each connection's stored streams in order: a key's
// inbox and every history topic it joined reach the client oldest first,
// without gaps or duplicates, however live messages and replays from the
// store interleave.
//
// A connection has one Cursor per stream. A live stored message is written
// only when it follows the last one written (its Prev is the cursor's
// last); otherwise the cursor holds it and the stream is behind until a
// catch-up has read the gap from the store. The rules live in Merge, a pure
// function; Cursor's methods are the few operations around it, and CatchUp
// drives a catch-up against the store.
package ordering

import (
	"github.com/herald-push/herald/pkg/protocol"
)

// StreamID names one of a connection's stored streams: its key's inbox (the
// zero StreamID) or a history topic's.
type StreamID struct {
	topic string
}

// KeyStream is the stream of a connection's own key.
var KeyStream = StreamID{}

// TopicStream is the history of topic.
func TopicStream(topic string) StreamID { return StreamID{topic: topic} }

// Topic returns the stream's topic, or false for the key's stream.
func (s StreamID) Topic() (string, bool) { return s.topic, s.topic != "" }

// StoreKey is the name the stream is stored under in an inbox.Store: the
// key itself, or the topic behind a '#', which no key may contain.
func (s StreamID) StoreKey(key string) string {
	if s.topic == "" {
		return key
	}
	return "#" + s.topic
}

// String names the stream in logs.
func (s StreamID) String() string {
	if s.topic == "" {
		return "key"
	}
	return "topic " + s.topic
}

// Msg is a stored message waiting in a cursor, with what the caller needs
// to write it (V).
type Msg[T any] struct {
	ID, Prev protocol.StoredID
	V        T
}

// Merge is the ordering rule. Given the last id written and held messages in
// arrival order, it returns the ones to write now, in order (each follows
// the one before, the first follows last), those that were written already
// (dropped), and those that must wait because a message before them is
// missing (rest, nonempty exactly when there is a gap).
func Merge[T any](last protocol.StoredID, held []Msg[T]) (write, dropped, rest []Msg[T], newLast protocol.StoredID) {
	for i, m := range held {
		switch {
		case !m.ID.After(last):
			dropped = append(dropped, m)
		case m.Prev == last:
			write = append(write, m)
			last = m.ID
		default:
			return write, dropped, held[i:], last
		}
	}
	return write, dropped, nil, last
}

// Decision is what to do with a live stored message.
type Decision uint8

const (
	// Write: it follows the last one written; write it now.
	Write Decision = iota + 1
	// Duplicate: written already (replayed before it came live); drop it.
	Duplicate
	// Hold: the stream is catching up; the cursor keeps it.
	Hold
	// Behind: it shows a gap; the cursor keeps it and the stream must be
	// caught up from the store (CatchUp).
	Behind
	// Overflow: the stream is catching up and holds as many as it may; the
	// connection cannot keep up.
	Overflow
)

// State is where a catch-up stands after EndCatchUp.
type State uint8

const (
	// CaughtUp: the stream is live again.
	CaughtUp State = iota + 1
	// NeedRoom: the connection's queue is full; wait for room, then call
	// EndCatchUp again.
	NeedRoom
	// NeedRead: a held message shows another gap; read the store after Last
	// again.
	NeedRead
)

func (s State) String() string {
	switch s {
	case CaughtUp:
		return "caught up"
	case NeedRoom:
		return "needs room"
	case NeedRead:
		return "needs a read"
	}
	return "unknown"
}

// Cursor is a connection's place in one stream. It is not safe for
// concurrent use: the connection's lock guards it.
//
// A cursor starts out catching up, so that what the client missed, or where
// it starts, is settled before anything live is written.
type Cursor[T any] struct {
	last     protocol.StoredID
	catching bool
	// again: MarkBehind was called while catching up. The read under way
	// may have begun before what made the caller call it (a gap it cannot
	// see), so the catch-up reads once more before it ends.
	again bool
	held  []Msg[T]
}

// NewCursor returns a cursor that is catching up.
func NewCursor[T any]() *Cursor[T] { return &Cursor[T]{catching: true} }

// Last is the newest id written: where a catch-up reads from.
func (c *Cursor[T]) Last() protocol.StoredID { return c.last }

// Offer decides about a live message; maxHeld bounds what a catching-up
// stream keeps. Write moves the cursor to m.
func (c *Cursor[T]) Offer(m Msg[T], maxHeld int) Decision {
	switch {
	case !m.ID.After(c.last):
		return Duplicate
	case c.catching:
		if len(c.held) >= maxHeld {
			return Overflow
		}
		c.held = append(c.held, m)
		return Hold
	case m.Prev != c.last:
		c.catching = true
		c.held = append(c.held, m)
		return Behind
	}
	c.last = m.ID
	return Write
}

// StartAt moves the cursor to start (a since id, the acknowledged position,
// or the newest id of a topic) unless it is past it already.
func (c *Cursor[T]) StartAt(start protocol.StoredID) {
	if start.After(c.last) {
		c.last = start
	}
}

// Replayed reports whether a message read from the store is new to the
// connection, and moves the cursor to it when it is.
func (c *Cursor[T]) Replayed(id protocol.StoredID) bool {
	if !id.After(c.last) {
		return false
	}
	c.last = id
	return true
}

// EndCatchUp releases the held messages that follow the cursor, as many as
// fits accepts in order, and says what is left to do. Held messages that
// were written already come back as dropped, for the caller to release.
func (c *Cursor[T]) EndCatchUp(fits func(T) bool) (write, dropped []Msg[T], s State) {
	all, dropped, rest, last := Merge(c.last, c.held)
	for i, m := range all {
		if !fits(m.V) {
			c.held = append(all[i:len(all):len(all)], rest...)
			if i > 0 {
				c.last = all[i-1].ID
			}
			return all[:i], dropped, NeedRoom
		}
	}
	c.last = last
	if len(rest) > 0 || c.again {
		c.held, c.again = rest, false
		return all, dropped, NeedRead
	}
	c.held, c.catching = nil, false
	return all, dropped, CaughtUp
}

// MarkBehind makes the stream hold its live messages until it is caught up
// again; it reports false when it was catching up already, in which case
// that catch-up reads the store once more before it ends.
func (c *Cursor[T]) MarkBehind() bool {
	if c.catching {
		c.again = true
		return false
	}
	c.catching = true
	return true
}

// Drop empties the cursor's held messages (the connection is closing) and
// returns them, for the caller to release.
func (c *Cursor[T]) Drop() []Msg[T] {
	held := c.held
	c.held = nil
	return held
}
