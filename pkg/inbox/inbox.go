// Package inbox stores messages per key so that nothing accepted is lost: a
// client that was away, or whose node died, or that read too slowly, gets
// what it missed when it comes back, and acknowledges what it has.
package inbox

import (
	"context"
	"errors"
	"time"

	"github.com/herald-push/herald/pkg/protocol"
	"github.com/herald-push/herald/pkg/redisconn"
)

// Wait is what the sender of a stored message waits for.
type Wait uint8

const (
	WaitNone      Wait = iota
	WaitDelivered      // written to a connection of the key
	WaitAcked          // acknowledged by a client of the key
)

// Entry is one stored message.
type Entry struct {
	ID protocol.StoredID // assigned by Append
	// Prev is the key's newest id before this one (zero for the first):
	// a receiver that last saw Prev knows nothing came in between.
	Prev protocol.StoredID
	// Data is the message's JSON. A read returns an entry with nil Data
	// when its data can no longer be read (a shared payload that expired
	// before the entry did): the entry is unreadable and replay skips it.
	Data   []byte
	Origin string // the node that accepted the send: where delivery is reported
	Wait   Wait
	// Dedupe, when set, makes Append idempotent per key: appending an entry
	// with the same Dedupe to a key whose inbox still holds the first one
	// returns the first one's ids and stores nothing. herald sets it to the
	// send's Idempotency-Key.
	Dedupe string
}

// Options bound each key's inbox; the oldest messages go first.
type Options struct {
	MaxLen int64         // messages kept per key (approximately: trimming is lazy)
	MaxAge time.Duration // how long a message is kept; also an idle inbox's lifetime
	// Replication is how many replicas must confirm an Append before it
	// counts as done (Redis only).
	Replication redisconn.Replication
	// DedupeTTL is how long an entry's Dedupe is remembered (at least
	// MaxAge: longer than the entry itself would be of no use).
	DedupeTTL time.Duration
	// MemoryBytes bounds what the in-process store holds, all keys
	// together (Memory only; 0 or less: no bound). At the bound Append
	// refuses with ErrFull instead of evicting what it accepted.
	MemoryBytes int64
}

// ErrPartiallyStored: Append stored the entry for some of its keys only.
var ErrPartiallyStored = errors.New("stored for some keys only")

// ErrFull: the store holds as much as it may (the in-process bound, or
// Redis refusing every key's write as out of memory); nothing was stored.
// Room comes back as messages age out or are trimmed.
var ErrFull = errors.New("the inbox store is full")

// Store keeps each key's inbox and acknowledged position.
//
// Ids of one key strictly increase. Append is durable when it returns as far
// as the backing store is (Redis: its persistence settings). Ack never moves
// a key's position backwards. All methods may be called concurrently.
type Store interface {
	// Append stores e for every key and returns, in order, each key's new
	// id and the id that preceded it. When every key's entry was stored but
	// too few replicas confirmed it, Append returns the ids with an error
	// wrapping redisconn.ErrNotReplicated. When only some keys' entries
	// were stored (Redis ran out of memory midway, say), Append returns the
	// ids with zero ids for the keys not stored, and an error wrapping
	// ErrPartiallyStored; appending again with the same Dedupe stores only
	// those. When none was stored it returns no ids.
	Append(ctx context.Context, keys []string, e Entry) (ids, prevs []protocol.StoredID, err error)
	// After returns up to limit entries of key that come after id, oldest
	// first.
	After(ctx context.Context, key string, after protocol.StoredID, limit int) ([]Entry, error)
	// Pending returns the key's acknowledged position (zero when nothing was
	// acknowledged) and up to limit entries after it, oldest first, read at
	// one instant.
	Pending(ctx context.Context, key string, limit int) (protocol.StoredID, []Entry, error)
	// Ack records that the key's clients have everything up to id.
	Ack(ctx context.Context, key string, id protocol.StoredID) error
	// Acked returns the key's acknowledged position.
	Acked(ctx context.Context, key string) (protocol.StoredID, error)
	// Tail returns the key's newest n entries, oldest first; none when n
	// is 0 or less.
	Tail(ctx context.Context, key string, n int) ([]Entry, error)
}
