package ordering

import (
	"slices"
	"testing"

	"github.com/herald-push/herald/pkg/protocol"
)

func id(ms uint64) protocol.StoredID { return protocol.StoredID{MS: ms} }

// msg is stored message n, which follows n-1.
func msg(n uint64) Msg[uint64] { return Msg[uint64]{ID: id(n), Prev: id(n - 1), V: n} }

func values(ms []Msg[uint64]) []uint64 {
	out := []uint64{}
	for _, m := range ms {
		out = append(out, m.V)
	}
	return out
}

func TestMergeWritesTheRunThatFollowsLastAndKeepsWhatWaitsBehindAGap(t *testing.T) {
	tests := []struct {
		name                 string
		last                 uint64
		held                 []uint64
		write, dropped, rest []uint64
		newLast              uint64
	}{
		{"nothing held", 3, nil, nil, nil, nil, 3},
		{"the next ones in order", 3, []uint64{4, 5, 6}, []uint64{4, 5, 6}, nil, nil, 6},
		{"replayed already", 6, []uint64{4, 5, 6}, nil, []uint64{4, 5, 6}, nil, 6},
		{"some replayed, the rest follow", 5, []uint64{4, 5, 6, 7}, []uint64{6, 7}, []uint64{4, 5}, nil, 7},
		{"a gap first", 3, []uint64{5, 6}, nil, nil, []uint64{5, 6}, 3},
		{"a gap in the middle", 3, []uint64{4, 6, 7}, []uint64{4}, nil, []uint64{6, 7}, 4},
		{"a late duplicate after the run", 3, []uint64{4, 5, 4}, []uint64{4, 5}, []uint64{4}, nil, 5},
		{"held out of order", 3, []uint64{5, 4}, nil, nil, []uint64{5, 4}, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var held []Msg[uint64]
			for _, n := range tc.held {
				held = append(held, msg(n))
			}
			write, dropped, rest, last := Merge(id(tc.last), held)
			if !slices.Equal(values(write), nonNil(tc.write)) || !slices.Equal(values(dropped), nonNil(tc.dropped)) ||
				!slices.Equal(values(rest), nonNil(tc.rest)) || last != id(tc.newLast) {
				t.Fatalf("Merge(%d, %v) = write %v dropped %v rest %v last %v; want %v %v %v %d",
					tc.last, tc.held, values(write), values(dropped), values(rest), last.MS, tc.write, tc.dropped, tc.rest, tc.newLast)
			}
		})
	}
}

func nonNil(v []uint64) []uint64 {
	if v == nil {
		return []uint64{}
	}
	return v
}

// client is one connection's stream as the hub drives it: live messages
// arrive in some order, each stored (so readable) before it is routed, and a
// gap is caught up at once from the store.
type client struct {
	cur     *Cursor[uint64]
	stored  uint64 // the store holds 1..stored
	written []uint64
}

func (c *client) catchUp() {
	for {
		for n := c.cur.Last().MS + 1; n <= c.stored; n++ { // After(Last)
			if c.cur.Replayed(id(n)) {
				c.written = append(c.written, n)
			}
		}
		write, _, state := c.cur.EndCatchUp(func(uint64) bool { return true })
		c.written = append(c.written, values(write)...)
		if state == CaughtUp {
			return
		}
	}
}

func (c *client) arrive(n uint64) {
	c.stored = max(c.stored, n)
	switch c.cur.Offer(msg(n), 100) {
	case Write:
		c.written = append(c.written, n)
	case Behind:
		c.catchUp()
	}
}

// Every order in which five messages (and a repeat of each) can arrive live
// writes each exactly once, in stream order.
func TestEveryArrivalOrderWritesEachMessageOnceInOrder(t *testing.T) {
	arrivals := []uint64{1, 2, 3, 4, 5}
	count := 0
	permute(arrivals, func(order []uint64) {
		count++
		c := &client{cur: NewCursor[uint64]()}
		c.catchUp() // connecting: nothing stored yet
		for _, n := range order {
			c.arrive(n)
			c.arrive(n) // a duplicate delivery changes nothing
			if !slices.Equal(c.written, seq(len(c.written))) {
				t.Fatalf("arrivals %v wrote %v: not 1..n in order", order, c.written)
			}
		}
		if !slices.Equal(c.written, seq(5)) {
			t.Fatalf("arrivals %v wrote %v, want 1..5", order, c.written)
		}
	})
	if count != 120 {
		t.Fatalf("tried %d orders, want 120", count)
	}
}

// A client that connects while messages arrive: what is held during its
// first catch-up follows what the catch-up read, for every point at which
// the read happens.
func TestAConnectingClientGetsWhatWasStoredThenWhatWasHeldInOrder(t *testing.T) {
	for readAt := 0; readAt <= 5; readAt++ {
		c := &client{cur: NewCursor[uint64]()}
		for n := uint64(1); n <= 5; n++ {
			if int(n) == readAt+1 {
				c.catchUp()
			}
			c.arrive(n) // held while catching up; live after
		}
		if readAt == 5 {
			c.catchUp()
		}
		if !slices.Equal(c.written, seq(5)) {
			t.Fatalf("read after %d arrivals: wrote %v, want 1..5", readAt, c.written)
		}
	}
}

func TestEndCatchUpStopsAtAFullQueueAndResumesWhereItStopped(t *testing.T) {
	c := NewCursor[uint64]()
	c.StartAt(id(2))
	for _, n := range []uint64{3, 4, 5} {
		if d := c.Offer(msg(n), 10); d != Hold {
			t.Fatalf("offer %d while catching up: %v, want Hold", n, d)
		}
	}
	room := 2
	write, _, state := c.EndCatchUp(func(uint64) bool { room--; return room >= 0 })
	if state != NeedRoom || !slices.Equal(values(write), []uint64{3, 4}) || c.Last() != id(4) {
		t.Fatalf("with room for 2: wrote %v, %v, last %v", values(write), state, c.Last())
	}
	write, _, state = c.EndCatchUp(func(uint64) bool { return true })
	if state != CaughtUp || !slices.Equal(values(write), []uint64{5}) {
		t.Fatalf("after room: wrote %v, %v", values(write), state)
	}
	if d := c.Offer(msg(6), 10); d != Write {
		t.Fatalf("a live message after catching up: %v, want Write", d)
	}
}

func TestACatchingUpStreamHoldsOnlyAsManyAsItMay(t *testing.T) {
	c := NewCursor[uint64]()
	c.Offer(msg(1), 1)
	if d := c.Offer(msg(2), 1); d != Overflow {
		t.Fatalf("offer past the hold limit: %v, want Overflow", d)
	}
	if got := values(c.Drop()); !slices.Equal(got, []uint64{1}) {
		t.Fatalf("Drop returned %v", got)
	}
}

func TestStreamIDsNameWhereAStreamIsStored(t *testing.T) {
	if KeyStream.StoreKey("u1") != "u1" || TopicStream("board").StoreKey("u1") != "#board" {
		t.Fatal("store keys")
	}
	if _, ok := KeyStream.Topic(); ok {
		t.Fatal("the key stream has a topic")
	}
	if topic, ok := TopicStream("board").Topic(); !ok || topic != "board" {
		t.Fatal("topic stream")
	}
}

func seq(n int) []uint64 {
	out := []uint64{}
	for i := 1; i <= n; i++ {
		out = append(out, uint64(i))
	}
	return out
}

func permute(a []uint64, f func([]uint64)) {
	var rec func(k int)
	rec = func(k int) {
		if k == len(a) {
			f(a)
			return
		}
		for i := k; i < len(a); i++ {
			a[k], a[i] = a[i], a[k]
			rec(k + 1)
			a[k], a[i] = a[i], a[k]
		}
	}
	rec(0)
}
