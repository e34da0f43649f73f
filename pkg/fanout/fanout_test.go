package fanout_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/internal/wait"
	"github.com/herald-push/herald/pkg/fanout"
	"github.com/herald-push/herald/pkg/fanout/fanouttest"
	"github.com/herald-push/herald/pkg/protocol"
)

func TestMemoryBus(t *testing.T) {
	fanouttest.Run(t, func(t *testing.T) func(string) fanout.Bus {
		return fanout.NewMemory().Bus
	})
}

func TestRedisBus(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	fanouttest.Run(t, func(t *testing.T) func(string) fanout.Bus {
		return func(id string) fanout.Bus { return fanout.NewRedis(rdb, id, fanout.RedisOptions{}) }
	})
}

func TestMessageSurvivesTheWireUnchanged(t *testing.T) {
	tests := []fanout.Message{
		{Kind: fanout.KindKeys, Origin: "node-a", ID: "m1", TS: 1700000000000, Keys: []string{"u1", "u2"}, Data: []byte(`{"a":[1,2]}`)},
		{Kind: fanout.KindTopic, Origin: "b", ID: "m2", TS: -1, Topic: "board", Data: []byte(`"text"`)},
		{Kind: fanout.KindBroadcast, Keys: []string{}},
		{Kind: fanout.KindKeys, Origin: "a", ID: "m4", Keys: []string{"only"}, Data: []byte(`{}`)},
		{Kind: fanout.KindKeys, Origin: "a", ID: "m3", Keys: []string{"u1", "u2"}, Wait: 2,
			Stored: []protocol.StoredID{{MS: 1795723200000, Seq: 3}, {MS: 5}}, Prevs: []protocol.StoredID{{MS: 1795723200000, Seq: 2}, {}},
			Data: []byte(`1`)},
	}
	for _, want := range tests {
		b, err := want.AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		// As bytes, and as the string Redis pub/sub hands a node.
		var fromBytes, fromString fanout.Message
		if err := fromBytes.UnmarshalBinary(b); err != nil {
			t.Fatalf("decode %+v: %v", want, err)
		}
		if err := fromString.UnmarshalString(string(b)); err != nil {
			t.Fatalf("decode %+v from a string: %v", want, err)
		}
		for _, got := range []fanout.Message{fromBytes, fromString} {
			if got.Kind != want.Kind || got.Origin != want.Origin || got.ID != want.ID || got.TS != want.TS ||
				!slices.Equal(got.Keys, want.Keys) || got.Topic != want.Topic || string(got.Data) != string(want.Data) ||
				!slices.Equal(got.Stored, want.Stored) || !slices.Equal(got.Prevs, want.Prevs) || got.Wait != want.Wait {
				t.Errorf("round trip = %+v, want %+v", got, want)
			}
		}
	}
}

func TestTruncatedMessagesAreRejected(t *testing.T) {
	m := &fanout.Message{Kind: fanout.KindKeys, Origin: "a", ID: "m1", Keys: []string{"u1"}, Topic: "t"}
	for _, v := range []fanout.WireVersion{fanout.WireV1, fanout.WireV2} {
		full, _ := m.AppendWire(nil, v)
		// Every cut before the data ends inside a field and must fail cleanly.
		for n := 0; n < len(full); n++ {
			var m fanout.Message
			if err := m.UnmarshalBinary(full[:n]); err == nil || m.UnmarshalString(string(full[:n])) == nil {
				t.Errorf("version %d: decoding the first %d of %d bytes succeeded", v, n, len(full))
			}
		}
	}
}

// FuzzMessageDecode feeds arbitrary bus payloads (a corrupted or foreign
// publish on a herald channel, a frame of another version) to the decoder:
// no panic, the string and slice decoders agree, and what decodes encodes
// back, in either version, to a frame that decodes the same.
func FuzzMessageDecode(f *testing.F) {
	seed := &fanout.Message{Kind: fanout.KindKeys, Origin: "a", ID: "m1", TS: 5, Keys: []string{"u1", "u2"}, Data: []byte(`{"x":1}`)}
	v1, _ := seed.AppendWire(nil, fanout.WireV1)
	v2, _ := seed.AppendWire(nil, fanout.WireV2)
	f.Add(v1)
	f.Add(v2)
	// Version 2 with an extension field a later release may add.
	f.Add(slices.Concat(v2[:len(v2)-len(seed.Data)-1], []byte{4, 1, 2, 'h', 'i'}, seed.Data))
	f.Add(slices.Concat([]byte("\xff\xff\xff\xff\xff\x03"), v1)) // a later version
	f.Add([]byte{})
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		var m, fromString fanout.Message
		err := m.UnmarshalBinary(b)
		serr := fromString.UnmarshalString(string(b))
		if (err == nil) != (serr == nil) {
			t.Fatalf("%x: decoded as bytes: %v, as a string: %v", b, err, serr)
		}
		var uv, suv fanout.UnknownVersionError
		if errors.As(err, &uv) != errors.As(serr, &suv) || uv != suv {
			t.Fatalf("%x: decoded as bytes: %v, as a string: %v", b, err, serr)
		}
		if err != nil {
			return
		}
		if d := differs(&fromString, &m); d != "" {
			t.Fatalf("%x decodes differently as a string: %s", b, d)
		}
		for _, v := range []fanout.WireVersion{fanout.WireV1, fanout.WireV2} {
			again, _ := m.AppendWire(nil, v)
			var m2 fanout.Message
			if err := m2.UnmarshalBinary(again); err != nil {
				t.Fatalf("re-encoding %x in version %d: %v", b, v, err)
			}
			if d := differs(&m2, &m); d != "" {
				t.Fatalf("re-encoding %x in version %d changed the message: %s", b, v, d)
			}
		}
	})
}

func TestRedisShardedBus(t *testing.T) {
	cluster := redistest.StartCluster(t)
	cc := cluster.Client()
	fanouttest.Run(t, func(t *testing.T) func(string) fanout.Bus {
		return func(id string) fanout.Bus { return fanout.NewRedisSharded(cc, id, fanout.RedisOptions{}) }
	})
}

// handled records what a bus hands over.
type handled struct {
	mu  sync.Mutex
	ids []string
}

func (h *handled) HandleMessage(m *fanout.Message) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ids = append(h.ids, m.ID)
}

func (h *handled) has(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Contains(h.ids, id)
}

// After a Sentinel failover go-redis moves its pooled connections to the new
// master but not the subscribing one. This test builds that state by hand:
// a client whose dialer follows a "current master" address, pooled
// connections cut on the old master, the subscription left there. The bus
// must notice that its probes no longer come back and subscribe anew.
func TestARedisBusWhoseSubscriptionWasLeftOnTheOldMasterFollowsTheNewOne(t *testing.T) {
	oldMaster, newMaster := redistest.Start(t), redistest.Start(t)
	var current atomic.Value
	current.Store(oldMaster.Addr())
	rdb := redis.NewClient(&redis.Options{
		Dialer: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, current.Load().(string))
		},
		MaxRetries: 1,
	})
	t.Cleanup(func() { rdb.Close() })
	bus := fanout.NewRedis(rdb, "n1", fanout.RedisOptions{ProbeInterval: 100 * time.Millisecond})
	got := &handled{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); bus.Run(ctx, got) }()
	t.Cleanup(func() { cancel(); <-done })
	wait.Until(t, 5*time.Second, "bus ready on the old master", bus.Ready)

	// The failover: new connections go to the new master; the old master
	// drops its ordinary clients but keeps the subscriber.
	current.Store(newMaster.Addr())
	if err := oldMaster.Client().ClientKillByFilter(ctx, "TYPE", "normal").Err(); err != nil {
		t.Fatal(err)
	}
	sender := fanout.NewRedis(newMaster.Client(), "n2", fanout.RedisOptions{})
	i := 0
	wait.Until(t, 10*time.Second, "a send on the new master reaches n1", func() bool {
		i++
		id := fmt.Sprint("m", i)
		ok, err := sender.Send(ctx, "n1", &fanout.Message{Kind: fanout.KindKeys, ID: id})
		return err == nil && ok && got.has(id)
	})
	wait.Until(t, 5*time.Second, "bus ready again", bus.Ready)
}

// BenchmarkDecodeReceived is what a node does with each message Redis hands
// it: decode it from the string pub/sub gave, in either wire version.
func BenchmarkDecodeReceived(b *testing.B) {
	m := &fanout.Message{Kind: fanout.KindKeys, Origin: "node-a", ID: "mx5i7fxm-a3zw-br", TS: 1796178375434,
		Keys: []string{"player-1234"}, Data: []byte(`{"item":"sword","gold":5}`)}
	for _, v := range []fanout.WireVersion{fanout.WireV1, fanout.WireV2} {
		b.Run(fmt.Sprint("v", v), func(b *testing.B) {
			wire, _ := m.AppendWire(nil, v)
			payload := string(wire)
			b.ReportAllocs()
			for b.Loop() {
				var got fanout.Message
				if err := got.UnmarshalString(payload); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
