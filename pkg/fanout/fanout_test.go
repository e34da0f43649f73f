package fanout_test

import (
	"slices"
	"testing"

	"github.com/herald-push/herald/internal/redistest"
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
		{Kind: fanout.KindKeys, Origin: "a", ID: "m3", Keys: []string{"u1", "u2"}, Wait: 2,
			Stored: []protocol.StoredID{{MS: 1795723200000, Seq: 3}, {MS: 5}}, Prevs: []protocol.StoredID{{MS: 1795723200000, Seq: 2}, {}},
			Data: []byte(`1`)},
	}
	for _, want := range tests {
		b, err := want.AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		var got fanout.Message
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatalf("decode %+v: %v", want, err)
		}
		if got.Kind != want.Kind || got.Origin != want.Origin || got.ID != want.ID || got.TS != want.TS ||
			!slices.Equal(got.Keys, want.Keys) || got.Topic != want.Topic || string(got.Data) != string(want.Data) ||
			!slices.Equal(got.Stored, want.Stored) || !slices.Equal(got.Prevs, want.Prevs) || got.Wait != want.Wait {
			t.Errorf("round trip = %+v, want %+v", got, want)
		}
	}
}

func TestTruncatedMessagesAreRejected(t *testing.T) {
	full, _ := (&fanout.Message{Kind: fanout.KindKeys, Origin: "a", ID: "m1", Keys: []string{"u1"}, Topic: "t"}).AppendBinary(nil)
	// Every cut before the data ends inside a field and must fail cleanly.
	for n := 0; n < len(full); n++ {
		var m fanout.Message
		if err := m.UnmarshalBinary(full[:n]); err == nil {
			t.Errorf("decoding the first %d of %d bytes succeeded", n, len(full))
		}
	}
}

// FuzzMessageDecode feeds arbitrary bus payloads (a corrupted or foreign
// publish on a herald channel) to the decoder: no panic, and what decodes
// encodes back to the same bytes.
func FuzzMessageDecode(f *testing.F) {
	seed, _ := (&fanout.Message{Kind: fanout.KindKeys, Origin: "a", ID: "m1", TS: 5, Keys: []string{"u1", "u2"}, Data: []byte(`{"x":1}`)}).AppendBinary(nil)
	f.Add(seed)
	f.Add([]byte{})
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		var m fanout.Message
		if err := m.UnmarshalBinary(b); err != nil {
			return
		}
		again, _ := m.AppendBinary(nil)
		var m2 fanout.Message
		if err := m2.UnmarshalBinary(again); err != nil || m2.ID != m.ID || len(m2.Keys) != len(m.Keys) || string(m2.Data) != string(m.Data) {
			t.Fatalf("re-encoding %x changed the message: %v", b, err)
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
