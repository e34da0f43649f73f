// Package presence records which nodes hold connections of which keys, so that
// any node can tell where to route a send.
//
// Liveness is per node, not per key: a node refreshes one record every TTL/3
// and every key entry it wrote counts only while that record is fresh. Upkeep
// therefore costs the same few commands per heartbeat whatever the number of
// keys, and a node killed without cleanup stops counting as holding any key
// within the TTL. Entries a dead node left behind are reaped by the first
// live node that notices its record expired.
package presence

import (
	"context"
	"errors"
	"time"
)

// ErrLeft is returned by Heartbeat and Set once the node has left: a
// heartbeat racing with shutdown must not write the node back.
var ErrLeft = errors.New("presence: the node has left")

// Store is one node's view of cluster presence. A Store speaks for the node
// whose id it was created with: Join, Heartbeat, Set and Leave write that
// node's entries, Lookup and Nodes read everyone's.
//
// All methods may be called concurrently, except that Set calls must not run
// concurrently with each other: the caller serializes them (herald does so
// with one reconcile loop per node), which keeps a key's writes in order.
// Entries are eventually removed: a node that died without Leave stops being
// reported by Lookup and Nodes once its last heartbeat is older than the TTL.
// Removing a dead node's entries never removes entries the node wrote after
// it came back: a node that was only stalled, and heartbeats again while a
// peer reaps it, keeps every key it then writes.
type Store interface {
	// Join announces the node and removes whatever a previous process with
	// the same id left behind (its keys are no longer connected anywhere).
	Join(ctx context.Context, n Node) error
	// Heartbeat extends the node's liveness by the TTL, updates its info and
	// reaps the entries of nodes whose liveness ran out. Unless lost is
	// LostNothing the caller must Set every key it holds again.
	Heartbeat(ctx context.Context, n Node) (lost Lost, err error)
	// Set records how many connections of each key this node holds; a count
	// of 0 removes the key's entry.
	Set(ctx context.Context, counts []Count) error
	// Lookup returns, for each key in order, the live nodes holding it.
	Lookup(ctx context.Context, keys []string) ([][]Holder, error)
	// Nodes returns the live nodes, ordered by id.
	Nodes(ctx context.Context) ([]Node, error)
	// Leave removes the node and all its entries at once. Heartbeat and Set
	// then return ErrLeft and write nothing, until the next Join.
	Leave(ctx context.Context) error
}

// Node describes a running node.
type Node struct {
	ID      string    `json:"id"`
	Addr    string    `json:"address"`
	Started time.Time `json:"started"`
	Conns   int       `json:"connections"`
	// Open: the node takes anyone's sends or connections (no API keys or
	// no token key). Nodes of an authenticated cluster refuse to be joined
	// by one; a node that does not say counts as authenticated.
	Open bool `json:"open"`
	// Totals since the node started, as of its last heartbeat, from which
	// a viewer derives rates.
	Sent    uint64 `json:"sent"`
	Dropped uint64 `json:"dropped"`
}

// Count is the number of connections one node holds for a key.
type Count struct {
	Key   string
	Conns int
}

// Holder is a node that holds connections of a key.
type Holder struct {
	Node  string
	Conns int
}

// Lost says what a heartbeat found the store had lost of the node.
type Lost uint8

const (
	LostNothing Lost = iota
	// LostWrites: a master was replaced (a failover, a restart) and may
	// have lost the node's recent writes; its registration stands, and so
	// do its subscriptions.
	LostWrites
	// LostNode: the store had forgotten the node while no master was
	// replaced: it was reaped after missing heartbeats, which drops its
	// subscriptions in Redis too.
	LostNode
)
