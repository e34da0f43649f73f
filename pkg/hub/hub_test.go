package hub

import (
	"errors"
	"strconv"
	"testing"
)

func mustAdd(t testing.TB, h *Hub, key string, topics []string, raw bool) *Conn {
	t.Helper()
	c, err := h.Add(key, topics, raw)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestAddRefusesConnectionsOverTheLimits(t *testing.T) {
	h := New(Options{QueueMessages: 1, QueueBytes: 1, MaxConns: 3, MaxConnsPerKey: 2})
	mustAdd(t, h, "u1", nil, false)
	mustAdd(t, h, "u1", nil, false)
	if _, err := h.Add("u1", nil, false); !errors.Is(err, ErrKeyFull) {
		t.Fatalf("third connection of u1: %v, want ErrKeyFull", err)
	}
	mustAdd(t, h, "u2", nil, false)
	if _, err := h.Add("u3", nil, false); !errors.Is(err, ErrFull) {
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

	if n := h.SendKey("u1", "m1", 5, []byte(`1`)); n != 2 {
		t.Fatalf("SendKey reached %d connections, want 2", n)
	}
	fa, _ := a.take()
	fb, _ := b.take()
	fo, _ := other.take()
	if len(fa) != 1 || len(fb) != 1 || len(fo) != 0 {
		t.Fatalf("queued %d, %d, %d frames; want 1, 1, 0", len(fa), len(fb), len(fo))
	}
	if &fa[0][0] != &fb[0][0] {
		t.Error("each connection got its own copy of the frame; want one shared encoding")
	}
	if want := `{"id":"m1","key":"u1","data":1,"ts":5}`; string(fa[0]) != want {
		t.Errorf("frame %s, want %s", fa[0], want)
	}
	if n := h.SendTopic("board", "m2", 5, []byte(`2`)); n != 1 {
		t.Errorf("SendTopic reached %d, want 1", n)
	}
	if n := h.SendAll("m3", 5, []byte(`3`)); n != 3 {
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
				if n := h.SendKey("slow", "m"+strconv.Itoa(i), 0, data); n != 1 {
					t.Fatalf("send %d was not queued", i)
				}
			}
			if n := h.SendKey("slow", "over", 0, data); n != 0 {
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
	h.SendKey("u1", "m1", 0, []byte(`"hello"`))
	f, _ := raw.take()
	if string(f[0]) != "hello" {
		t.Fatalf("raw frame %q", f[0])
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
			data := []byte(`{"item":"sword","qty":1}`)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				h.SendKey("u1", "m1", 1, data)
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
