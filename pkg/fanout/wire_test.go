package fanout_test

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/herald-push/herald/pkg/fanout"
	"github.com/herald-push/herald/pkg/protocol"
)

// frames are the messages whose wire form testdata/frames-v1.txt holds, as
// herald's encoder wrote them before the format had versions: one of each
// kind, and of each shape a kind takes.
var frames = map[string]fanout.Message{
	"keys-one": {Kind: fanout.KindKeys, Origin: "node-a", ID: "mx5i7fxm-a3zw-br", TS: 1796178375434,
		Keys: []string{"player-1234"}, Data: []byte(`{"item":"sword","gold":5}`)},
	"keys-many": {Kind: fanout.KindKeys, Origin: "node-b", ID: "mx5i7fxm-a3zw-bs", TS: 1796178375435,
		Keys: []string{"u1", "u2", "u3", "u4", "u5"}, Data: []byte(`"raid at 8"`)},
	"keys-long-key-and-data": {Kind: fanout.KindKeys, Origin: "n", ID: "m-long", TS: 1,
		Keys: []string{strings.Repeat("k", 128)}, Data: []byte(`"` + strings.Repeat("é☃", 40) + `"`)},
	"keys-no-data": {Kind: fanout.KindKeys, ID: "m1", Keys: []string{"u1"}},
	"keys-stored-wait-acked": {Kind: fanout.KindKeys, Origin: "node-a", ID: "mx5i7fxm-a3zw-bt", TS: 1795723200000,
		Keys:   []string{"u1", "u2"},
		Stored: []protocol.StoredID{{MS: 1795723200000, Seq: 3}, {MS: 1795723200001}},
		Prevs:  []protocol.StoredID{{MS: 1795723200000, Seq: 2}, {}}, Wait: 2, Data: []byte(`{"gold":5}`)},
	"keys-stored-wait-delivered": {Kind: fanout.KindKeys, Origin: "node-a", ID: "mx5i7fxm-a3zw-bu", TS: 1795723200002,
		Keys:   []string{"u1"},
		Stored: []protocol.StoredID{{MS: 1795723200002}}, Prevs: []protocol.StoredID{{MS: 1795723200000, Seq: 3}},
		Wait: 1, Data: []byte(`1`)},
	"keys-stored-no-wait": {Kind: fanout.KindKeys, Origin: "node-c", ID: "mx5i7fxm-a3zw-bv", TS: 1795723200003,
		Keys: []string{"u9"}, Stored: []protocol.StoredID{{MS: 1795723200003, Seq: 7}}, Prevs: []protocol.StoredID{{}},
		Data: []byte(`[1,2,3]`)},
	"topic": {Kind: fanout.KindTopic, Origin: "b", ID: "m2", TS: 1796178375436, Topic: "board",
		Data: []byte(`{"text":"Fix the fountain"}`)},
	"topic-history": {Kind: fanout.KindTopic, Origin: "b", ID: "m3", TS: 1796178375437, Topic: "news",
		Stored: []protocol.StoredID{{MS: 1796178375437, Seq: 1}}, Prevs: []protocol.StoredID{{MS: 1796178375437}},
		Data: []byte(`"extra"`)},
	"broadcast":  {Kind: fanout.KindBroadcast, Origin: "c", ID: "m4", TS: -1, Data: []byte(`"maintenance at noon"`)},
	"disconnect": {Kind: fanout.KindDisconnect, Origin: "a", ID: "mx5i7fxm-a3zw-bw", Keys: []string{"u1"}},
	"delivered": {Kind: fanout.KindDelivered, Origin: "b", Keys: []string{"u1", "u2"},
		Stored: []protocol.StoredID{{MS: 1795723200000, Seq: 3}, {MS: 1795723200001}}, Prevs: make([]protocol.StoredID, 2)},
	"probe": {Kind: fanout.KindProbe, Origin: "a", ID: "17"},
}

// readFrames reads a file of "name hex" lines.
func readFrames(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := make(map[string][]byte)
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, h, ok := strings.Cut(line, " ")
		b, err := hex.DecodeString(h)
		if !ok || err != nil {
			t.Fatalf("%s: bad line %q", path, line)
		}
		out[name] = b
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// differs says how got differs from want, or "" when it does not.
func differs(got, want *fanout.Message) string {
	switch {
	case got.Kind != want.Kind:
		return fmt.Sprintf("kind %d, want %d", got.Kind, want.Kind)
	case got.Origin != want.Origin || got.ID != want.ID || got.TS != want.TS:
		return fmt.Sprintf("origin, id, ts %q %q %d, want %q %q %d", got.Origin, got.ID, got.TS, want.Origin, want.ID, want.TS)
	case !slices.Equal(got.Keys, want.Keys):
		return fmt.Sprintf("keys %q, want %q", got.Keys, want.Keys)
	case !slices.Equal(got.Stored, want.Stored) || !slices.Equal(got.Prevs, want.Prevs):
		return fmt.Sprintf("stored %v prevs %v, want %v %v", got.Stored, got.Prevs, want.Stored, want.Prevs)
	case got.Wait != want.Wait || got.Topic != want.Topic:
		return fmt.Sprintf("wait, topic %d %q, want %d %q", got.Wait, got.Topic, want.Wait, want.Topic)
	case string(got.Data) != string(want.Data):
		return fmt.Sprintf("data %q, want %q", got.Data, want.Data)
	}
	return ""
}

// Nodes of the release before wire versions are deployed: what their
// encoder wrote, captured once, is what a node reads from them during a
// rolling upgrade. Every kind decodes to the message it was, as bytes and
// as the string Redis hands a subscriber.
func TestFramesOfNodesBeforeWireVersionsDecodeAsTheyWere(t *testing.T) {
	golden := readFrames(t, "testdata/frames-v1.txt")
	if len(golden) != len(frames) {
		t.Fatalf("testdata has %d frames, the test knows %d", len(golden), len(frames))
	}
	for name, want := range frames {
		t.Run(name, func(t *testing.T) {
			b, ok := golden[name]
			if !ok {
				t.Fatalf("no frame %q in testdata", name)
			}
			var fromBytes, fromString fanout.Message
			if err := fromBytes.UnmarshalBinary(b); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if err := fromString.UnmarshalString(string(b)); err != nil {
				t.Fatalf("decode from a string: %v", err)
			}
			if d := differs(&fromBytes, &want); d != "" {
				t.Errorf("decoded: %s", d)
			}
			if d := differs(&fromString, &want); d != "" {
				t.Errorf("decoded from a string: %s", d)
			}
		})
	}
}
