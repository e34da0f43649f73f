package hub

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/herald-push/herald/pkg/ordering"
	"github.com/herald-push/herald/pkg/protocol"
)

func mustAdd(t testing.TB, h *Hub, key string, topics []string, raw bool) *Conn {
	t.Helper()
	c, err := h.Add(key, topics, nil, raw)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestAddRefusesConnectionsOverTheLimits(t *testing.T) {
	h := New(Options{QueueMessages: 1, QueueBytes: 1, MaxConns: 3, MaxConnsPerKey: 2})
	mustAdd(t, h, "u1", nil, false)
	mustAdd(t, h, "u1", nil, false)
	if _, err := h.Add("u1", nil, nil, false); !errors.Is(err, ErrKeyFull) {
		t.Fatalf("third connection of u1: %v, want ErrKeyFull", err)
	}
	mustAdd(t, h, "u2", nil, false)
	if _, err := h.Add("u3", nil, nil, false); !errors.Is(err, ErrFull) {
		t.Fatalf("fourth connection: %v, want ErrFull", err)
	}
	if h.Len() != 3 {
		t.Fatalf("hub holds %d connections, want 3", h.Len())
	}
}

func TestSendsQueueOneSharedFramePerKeyAndSkipOtherKeys(t *testing.T) {
	h := New(Options{QueueMessages: 8, QueueBytes: 1 << 20})
	a, b := mustAdd(t, h, "u1", nil, false), mustAdd(t, h, "u1", []string{"board"}, false)
	other := mustAdd(t, h, "u2", nil, false)

	if n := h.SendKey("u1", Delivery{ID: "m1", TS: 5, Data: []byte(`1`)}); n != 2 {
		t.Fatalf("SendKey reached %d connections, want 2", n)
	}
	fa, _ := a.take()
	fb, _ := b.take()
	fo, _ := other.take()
	if len(fa) != 1 || len(fb) != 1 || len(fo) != 0 {
		t.Fatalf("queued %d, %d, %d frames; want 1, 1, 0", len(fa), len(fb), len(fo))
	}
	if &fa[0].frame[0] != &fb[0].frame[0] {
		t.Error("each connection got its own copy of the frame; want one shared encoding")
	}
	if want := `{"id":"m1","key":"u1","data":1,"ts":5}`; string(fa[0].frame) != want {
		t.Errorf("frame %s, want %s", fa[0].frame, want)
	}
	if n := h.SendTopic("board", Delivery{ID: "m2", TS: 5, Data: []byte(`2`)}); n != 1 {
		t.Errorf("SendTopic reached %d, want 1", n)
	}
	if n := h.SendAll(Delivery{ID: "m3", TS: 5, Data: []byte(`3`)}); n != 3 {
		t.Errorf("SendAll reached %d, want 3", n)
	}
}

func TestAnOverflowingQueueClosesOnlyThatConnectionAndRemovesIt(t *testing.T) {
	tests := []struct {
		name       string
		msgs, size int
		frame      int
		fits       int
	}{
		{"by messages", 4, 1 << 20, 10, 4},
		{"by bytes", 100, 1000, 300, 3},
		{"one oversized frame fits an empty queue", 100, 100, 500, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var removed []*Conn
			h := New(Options{QueueMessages: tc.msgs, QueueBytes: tc.size, Removed: func(c *Conn) { removed = append(removed, c) }})
			slow := mustAdd(t, h, "slow", nil, true)
			data := make([]byte, tc.frame)
			for i := range data {
				data[i] = '1'
			}
			for i := range tc.fits {
				if n := h.SendKey("slow", Delivery{ID: "m" + strconv.Itoa(i), Data: data}); n != 1 {
					t.Fatalf("send %d was not queued", i)
				}
			}
			if n := h.SendKey("slow", Delivery{ID: "over", Data: data}); n != 0 {
				t.Fatal("the overflowing send was queued")
			}
			if h.KeyConns("slow") != 0 || len(removed) != 1 || removed[0] != slow {
				t.Fatal("the slow connection is still in the hub")
			}
			if frames, closing := slow.take(); !closing || frames != nil {
				t.Fatal("the slow connection is not closing, or kept its queue")
			}
			if code, _ := slow.closeStatus(); code != CloseSlowConsumer {
				t.Errorf("close code %d, want %d", code, CloseSlowConsumer)
			}
			if h.Stats().SlowConsumer != 1 {
				t.Errorf("slow consumers counted: %d", h.Stats().SlowConsumer)
			}
		})
	}
}

func TestRawConnectionsGetTheBareData(t *testing.T) {
	h := New(Options{QueueMessages: 8, QueueBytes: 1 << 20})
	raw := mustAdd(t, h, "u1", nil, true)
	h.SendKey("u1", Delivery{ID: "m1", Data: []byte(`"hello"`)})
	f, _ := raw.take()
	if string(f[0].frame) != "hello" {
		t.Fatalf("raw frame %q", f[0].frame)
	}
}

// BenchmarkSendKeyFanOut is the local hot path: one send to a key with many
// connections. The frame is encoded once; per connection the cost is a
// queue append.
func BenchmarkSendKeyFanOut(b *testing.B) {
	for _, conns := range []int{1, 10, 1000} {
		b.Run(strconv.Itoa(conns)+"conns", func(b *testing.B) {
			h := New(Options{QueueMessages: 1 << 30, QueueBytes: 1 << 62})
			cs := make([]*Conn, conns)
			for i := range cs {
				cs[i] = mustAdd(b, h, "u1", nil, false)
			}
			d := Delivery{ID: "m1", TS: 1, Data: []byte(`{"item":"sword","qty":1}`)}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				h.SendKey("u1", d)
				if i++; i%256 == 0 { // keep queues from growing without bound
					for _, c := range cs {
						f, _ := c.take()
						c.recycle(f)
					}
				}
			}
		})
	}
}

func sid(ms uint64) protocol.StoredID { return protocol.StoredID{MS: ms} }

func stored(ms, prev uint64) Delivery {
	return Delivery{ID: sid(ms).String(), Stored: sid(ms), Prev: sid(prev), Data: []byte(strconv.FormatUint(ms, 10))}
}

// replayed is ds as read back from the store.
func replayed(ds ...Delivery) []ordering.Stored {
	out := make([]ordering.Stored, len(ds))
	for i, d := range ds {
		out[i] = ordering.Stored{ID: d.Stored, Prev: d.Prev, TS: d.TS, Data: d.Data}
	}
	return out
}

// queuedIDs takes c's queue and returns its stored ids' milliseconds.
func queuedIDs(c *Conn) []uint64 {
	es, _ := c.take()
	var out []uint64
	for _, e := range es {
		out = append(out, e.id.MS)
	}
	return out
}

func TestStoredMessagesReachAConnectionInInboxOrderWithoutGapsOrDuplicates(t *testing.T) {
	var behind []*Conn
	h := New(Options{QueueMessages: 100, QueueBytes: 1 << 20, Behind: func(c *Conn, _ ordering.StreamID) { behind = append(behind, c) }})
	c := mustAdd(t, h, "u1", nil, false)

	// While the connection resumes, a live message (8, after 7) arrives and
	// is held; the replay brings 6 and 7 (the client had up to 5).
	h.SendKey("u1", stored(8, 7))
	if got := queuedIDs(c); len(got) != 0 {
		t.Fatalf("queued %v before the replay", got)
	}
	c.Replay(ordering.KeyStream, sid(5), replayed(stored(4, 3), stored(5, 4), stored(6, 5), stored(7, 6)))
	if state := c.EndCatchUp(ordering.KeyStream); state != ordering.CaughtUp {
		t.Fatalf("EndCatchUp = %d, want CaughtUp", state)
	}
	if got := queuedIDs(c); !slices.Equal(got, []uint64{6, 7, 8}) {
		t.Fatalf("queued %v, want 6 7 8", got)
	}

	// 10 arrives before 9: the connection is behind and holds 10.
	h.SendKey("u1", stored(10, 9))
	if len(behind) != 1 || behind[0] != c || len(queuedIDs(c)) != 0 {
		t.Fatal("a gap did not put the connection behind")
	}
	h.SendKey("u1", stored(9, 8)) // the late one, held too
	c.Replay(ordering.KeyStream, protocol.StoredID{}, replayed(stored(9, 8), stored(10, 9)))
	if state := c.EndCatchUp(ordering.KeyStream); state != ordering.CaughtUp {
		t.Fatalf("EndCatchUp = %d", state)
	}
	if got := queuedIDs(c); !slices.Equal(got, []uint64{9, 10}) {
		t.Fatalf("queued %v, want 9 10", got)
	}
	h.SendKey("u1", stored(10, 9)) // a duplicate
	h.SendKey("u1", stored(11, 10))
	if got := queuedIDs(c); !slices.Equal(got, []uint64{11}) {
		t.Fatalf("queued %v, want 11", got)
	}
}

func TestHeldMessagesPastTheReplayAskForAnotherRead(t *testing.T) {
	h := New(Options{QueueMessages: 100, QueueBytes: 1 << 20})
	c := mustAdd(t, h, "u1", nil, false)
	h.SendKey("u1", stored(9, 8)) // stored after the replay was read
	c.Replay(ordering.KeyStream, protocol.StoredID{}, replayed(stored(7, 0)))
	if state := c.EndCatchUp(ordering.KeyStream); state != ordering.NeedRead || c.Last(ordering.KeyStream) != sid(7) {
		t.Fatalf("EndCatchUp = %d at %v, want NeedRead at 7", state, c.Last(ordering.KeyStream))
	}
	c.Replay(ordering.KeyStream, protocol.StoredID{}, replayed(stored(8, 7), stored(9, 8)))
	if state := c.EndCatchUp(ordering.KeyStream); state != ordering.CaughtUp {
		t.Fatalf("second EndCatchUp = %d", state)
	}
	if got := queuedIDs(c); !slices.Equal(got, []uint64{7, 8, 9}) {
		t.Fatalf("queued %v", got)
	}
}

func TestAReplayStopsAtAFullQueueAndContinuesOnceDrained(t *testing.T) {
	h := New(Options{QueueMessages: 4, QueueBytes: 1 << 20})
	c := mustAdd(t, h, "u1", nil, false)
	var ds []Delivery
	for i := uint64(1); i <= 10; i++ {
		ds = append(ds, stored(i, i-1))
	}
	used := c.Replay(ordering.KeyStream, protocol.StoredID{}, replayed(ds...))
	if used != 4 {
		t.Fatalf("replayed %d into a queue of 4", used)
	}
	got := queuedIDs(c) // the writer drains
	if !c.WaitRoom(context.Background()) {
		t.Fatal("no room after draining")
	}
	used += c.Replay(ordering.KeyStream, protocol.StoredID{}, replayed(ds[used:]...))
	got = append(got, queuedIDs(c)...)
	c.Replay(ordering.KeyStream, protocol.StoredID{}, replayed(ds[used:]...))
	got = append(got, queuedIDs(c)...)
	if !slices.Equal(got, []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}) {
		t.Fatalf("replayed %v", got)
	}
}

func TestATopicMessageReportsWhenItsLastCopyIsOut(t *testing.T) {
	var got []time.Duration
	h := New(Options{QueueMessages: 8, QueueBytes: 1 << 20, FanoutDone: func(_ protocol.Kind, d time.Duration) { got = append(got, d) }})
	a := mustAdd(t, h, "a", []string{"board"}, false)
	b := mustAdd(t, h, "b", []string{"board"}, false)
	h.SendTopic("board", Delivery{ID: "m1", Data: []byte(`1`)})
	ea, _ := a.take()
	ea[0].fanout.written() // a's copy is written
	if len(got) != 0 {
		t.Fatal("reported before the last copy was out")
	}
	b.Close(CloseSlowConsumer, "test") // b's copy is dropped: it counts as done
	if len(got) != 1 {
		t.Fatalf("reports: %v, want one once every copy was written or dropped", got)
	}
	h.SendTopic("nobody", Delivery{ID: "m2", Data: []byte(`2`)})
	if len(got) != 2 {
		t.Fatal("a message with no subscriber here was not reported")
	}
}

// A history topic's live message that finds a connection behind is held,
// not written: the fan-out is not done until the held copy is written or
// dropped, and it is reported exactly once.
func TestAHeldTopicCopyIsTimedWhenDroppedNotWhenHeld(t *testing.T) {
	var done []time.Duration
	h := New(Options{QueueMessages: 8, QueueBytes: 1 << 20,
		FanoutDone: func(_ protocol.Kind, d time.Duration) { done = append(done, d) }})
	board := ordering.TopicStream("board")
	c, err := h.Add("screen", []string{"board"}, []ordering.StreamID{board}, false)
	if err != nil {
		t.Fatal(err)
	}
	c.Replay(board, protocol.StoredID{MS: 1}, nil)
	if c.EndCatchUp(board) != ordering.CaughtUp {
		t.Fatal("an empty catch-up did not end")
	}
	// Message 3 follows 2, which never came: the connection holds 3.
	h.SendTopic("board", Delivery{ID: "3-0", Stored: protocol.StoredID{MS: 3}, Prev: protocol.StoredID{MS: 2},
		Stream: board, Data: []byte(`3`)})
	if len(done) != 0 {
		t.Fatalf("fan-out reported done (%d times) while its only copy is held", len(done))
	}
	c.Close(CloseDisconnected, "bye") // the held copy is dropped
	if len(done) != 1 {
		t.Fatalf("fan-out reported %d times after its held copy was dropped, want once", len(done))
	}
}

// However the transport says its connection ended, the server's own reason
// wins when the server ended it: a failed write, a close it sent, its stop.
func TestAConnectionsEndIsTheServersReasonWhenTheServerEndedIt(t *testing.T) {
	broken := errors.New("connection reset by peer")
	for _, tc := range []struct {
		name   string
		server func(h *Hub, c *Conn)
		want   End
	}{
		{"the client closed", func(*Hub, *Conn) {}, End{Reason: EndClientClosed}},
		{"an operator disconnected the key", func(h *Hub, c *Conn) { h.CloseKey(c.Key) },
			End{Reason: EndServerClosed, Code: CloseDisconnected}},
		{"a write failed first", func(_ *Hub, c *Conn) { c.Fail(EndWriteFailed, broken) },
			End{Reason: EndWriteFailed, Err: broken}},
		{"a write failed, then the client's pong was late", func(_ *Hub, c *Conn) {
			c.Fail(EndWriteFailed, broken)
			c.Fail(EndPingTimeout, errors.New("late"))
		}, End{Reason: EndWriteFailed, Err: broken}},
		{"the node stopped", func(h *Hub, _ *Conn) { h.CloseNow() }, End{Reason: EndStopped, Err: errStopped}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var removed []*Conn
			h := New(Options{QueueMessages: 8, QueueBytes: 1 << 20, Removed: func(c *Conn) { removed = append(removed, c) }})
			c := mustAdd(t, h, "u1", nil, false)
			tc.server(h, c)
			// The transport's own account: the client went away.
			got := c.Ended(EndClientClosed, nil)
			if got != tc.want {
				t.Errorf("ended with %+v, want %+v", got, tc.want)
			}
			if h.Len() != 0 || len(removed) != 1 {
				t.Errorf("after Ended the hub holds %d connections and reported %d removed, want 0 and 1", h.Len(), len(removed))
			}
		})
	}
}
