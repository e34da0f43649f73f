package fanout_test

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"runtime"
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

// A node told to write version 1 writes exactly what nodes before wire
// versions wrote, byte for byte: they can read nothing else.
func TestVersion1FramesAreWrittenAsNodesBeforeWireVersionsWroteThem(t *testing.T) {
	golden := readFrames(t, "testdata/frames-v1.txt")
	for name, m := range frames {
		got, err := m.AppendWire(nil, fanout.WireV1)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, golden[name]) {
			t.Errorf("%s: version 1 frame\n %x\nwant\n %x", name, got, golden[name])
		}
	}
}

// Every kind, in every shape, comes back from a version 2 frame as it went.
func TestEveryKindSurvivesAVersion2Frame(t *testing.T) {
	for name, want := range frames {
		b, err := want.AppendWire(nil, fanout.WireV2)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(b), "\xff\xff\xff\xff\xff\x02") {
			t.Errorf("%s: version 2 frame starts %x", name, b[:min(6, len(b))])
		}
		var fromBytes, fromString fanout.Message
		if err := fromBytes.UnmarshalBinary(b); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := fromString.UnmarshalString(string(b)); err != nil {
			t.Fatalf("%s from a string: %v", name, err)
		}
		if d := differs(&fromBytes, &want); d != "" {
			t.Errorf("%s: %s", name, d)
		}
		if d := differs(&fromString, &want); d != "" {
			t.Errorf("%s from a string: %s", name, d)
		}
	}
}

// decodeBeforeVersions is the []byte path of the decoder nodes before wire
// versions run (pkg/fanout/message.go at 44bdc79), with encoding/binary's
// varints, which its own mirror: what such a node, deployed already, does
// with whatever reaches it.
func decodeBeforeVersions(b []byte) (fanout.Message, error) {
	var m fanout.Message
	bad := fmt.Errorf("malformed message")
	str := func() (string, bool) {
		l, n := binary.Uvarint(b)
		if n <= 0 || l > uint64(len(b)-n) {
			return "", false
		}
		s := string(b[n : n+int(l)])
		b = b[n+int(l):]
		return s, true
	}
	id := func() (protocol.StoredID, bool) {
		ms, n := binary.Uvarint(b)
		if n <= 0 {
			return protocol.StoredID{}, false
		}
		seq, k := binary.Uvarint(b[n:])
		if k <= 0 {
			return protocol.StoredID{}, false
		}
		b = b[n+k:]
		return protocol.StoredID{MS: ms, Seq: seq}, true
	}
	if len(b) == 0 {
		return m, bad
	}
	m.Kind, b = fanout.Kind(b[0]), b[1:]
	var ok bool
	if m.Origin, ok = str(); !ok {
		return m, bad
	}
	if m.ID, ok = str(); !ok {
		return m, bad
	}
	ts, n := binary.Varint(b)
	if n <= 0 {
		return m, bad
	}
	m.TS, b = ts, b[n:]
	count, n := binary.Uvarint(b)
	if n <= 0 || count > uint64(len(b)) {
		return m, bad
	}
	b = b[n:]
	m.Keys = make([]string, count)
	for i := range m.Keys {
		if m.Keys[i], ok = str(); !ok {
			return m, bad
		}
	}
	stored, n := binary.Uvarint(b)
	if n <= 0 || stored > uint64(len(b)) {
		return m, bad
	}
	b = b[n:]
	if stored > 0 {
		m.Stored, m.Prevs = make([]protocol.StoredID, stored), make([]protocol.StoredID, stored)
		for i := range m.Stored {
			if m.Stored[i], ok = id(); !ok {
				return m, bad
			}
			if m.Prevs[i], ok = id(); !ok {
				return m, bad
			}
		}
	}
	if len(b) == 0 {
		return m, bad
	}
	m.Wait, b = b[0], b[1:]
	if m.Topic, ok = str(); !ok {
		return m, bad
	}
	m.Data = b
	return m, nil
}

// During a rolling upgrade a node before wire versions may receive a
// version 2 frame (or one of any later version): it must not take any of
// it for a message, whose data would be the new fields. Its decoder reads
// the header as a kind and an origin longer than the frame, and refuses
// every such frame; its own frames it reads as ever.
func TestNodesBeforeWireVersionsRefuseVersion2FramesRatherThanMisreadThem(t *testing.T) {
	golden := readFrames(t, "testdata/frames-v1.txt")
	for name, m := range frames {
		if got, err := decodeBeforeVersions(golden[name]); err != nil || differs(&got, &m) != "" {
			t.Fatalf("%s: the old decoder reads its own frame as %+v, %v", name, got, err)
		}
		b, _ := m.AppendWire(nil, fanout.WireV2)
		if got, err := decodeBeforeVersions(b); err == nil {
			t.Errorf("%s: a node before wire versions reads a version 2 frame as %+v", name, got)
		}
		for _, v := range []byte{3, 0x7f} {
			b[5] = v
			if got, err := decodeBeforeVersions(b); err == nil {
				t.Errorf("%s: a node before wire versions reads a version %d frame as %+v", name, v, got)
			}
		}
	}
}

// withExtensions returns the version 2 frame of m with the extension area
// holding fields, as a later release may write it.
func withExtensions(t *testing.T, m *fanout.Message, fields []byte) []byte {
	t.Helper()
	b, _ := m.AppendWire(nil, fanout.WireV2)
	at := len(b) - len(m.Data) - 1 // the empty area: one byte, its length
	if b[at] != 0 {
		t.Fatalf("no empty extension area before the data of %x", b)
	}
	out := slices.Clone(b[:at])
	out = binary.AppendUvarint(out, uint64(len(fields)))
	out = append(out, fields...)
	return append(out, m.Data...)
}

// field is one extension field: tag, length, value.
func field(tag uint64, value string) []byte {
	b := binary.AppendUvarint(nil, tag)
	b = binary.AppendUvarint(b, uint64(len(value)))
	return append(b, value...)
}

// A later release adds fields in the extension area; this node reads the
// fields it knows of such a frame, as they were, and skips the others.
func TestFieldsALaterReleaseAddsAreSkippedAndTheRestReadAsItWas(t *testing.T) {
	tests := []struct {
		name   string
		fields []byte
	}{
		{"one field", field(1, "trace-4bf92f3577b34da6")},
		{"an empty field", field(7, "")},
		{"several fields", slices.Concat(field(1, "a"), field(2, strings.Repeat("x", 300)), field(1<<40, "far tag"))},
	}
	for _, tt := range tests {
		for name, want := range frames {
			b := withExtensions(t, &want, tt.fields)
			var fromBytes, fromString fanout.Message
			if err := fromBytes.UnmarshalBinary(b); err != nil {
				t.Fatalf("%s, %s: %v", tt.name, name, err)
			}
			if err := fromString.UnmarshalString(string(b)); err != nil {
				t.Fatalf("%s, %s from a string: %v", tt.name, name, err)
			}
			if d := differs(&fromBytes, &want); d != "" {
				t.Errorf("%s, %s: %s", tt.name, name, d)
			}
			if d := differs(&fromString, &want); d != "" {
				t.Errorf("%s, %s from a string: %s", tt.name, name, d)
			}
		}
	}
}

// A frame of a version this node does not know (a node two releases newer,
// which changed the layout) is refused with the version it carries, never
// guessed at.
func TestFramesOfAnUnknownVersionAreRefusedWithTheirVersion(t *testing.T) {
	m := frames["keys-one"]
	for _, v := range []byte{3, 9, 0x7f, 0x80, 0xff} {
		b, _ := m.AppendWire(nil, fanout.WireV2)
		b[5] = v
		for _, decode := range []func(*fanout.Message) error{
			func(m *fanout.Message) error { return m.UnmarshalBinary(b) },
			func(m *fanout.Message) error { return m.UnmarshalString(string(b)) },
		} {
			var got fanout.Message
			err := decode(&got)
			var uv fanout.UnknownVersionError
			if !errors.As(err, &uv) || uv.Version != v {
				t.Errorf("version %d: %v, want an unknown version error", v, err)
			}
		}
	}
	if _, err := m.AppendWire(nil, 3); err == nil {
		t.Error("writing version 3 succeeded")
	}
}

// Frames broken in their header or extension area are refused as
// malformed, not as of another version, and never read as a message.
func TestMalformedVersion2FramesAreRefused(t *testing.T) {
	m := frames["keys-one"]
	good, _ := m.AppendWire(nil, fanout.WireV2)
	body := good[6:]
	// The area's length past the end of the frame.
	areaTooLong := append(slices.Clone(good[:len(good)-len(m.Data)-1]), 0x7f, 'x')
	tests := []struct {
		name  string
		frame []byte
	}{
		{"the header alone", []byte("\xff\xff\xff\xff\xff\x02")},
		{"a cut header", []byte("\xff\xff\xff")},
		{"a header not all 0xff", slices.Concat([]byte("\xff\xff\x00\xff\xff\x02"), body)},
		{"version 0", slices.Concat([]byte("\xff\xff\xff\xff\xff\x00"), body)},
		{"version 1 in a header", slices.Concat([]byte("\xff\xff\xff\xff\xff\x01"), body)},
		{"an extension area longer than the frame", areaTooLong},
		{"a field longer than the area", withExtensions(t, &m, []byte{1, 9, 'a'})},
		{"a field with a tag only", withExtensions(t, &m, []byte{1})},
		{"a tag that never ends", withExtensions(t, &m, []byte{0x80, 0x80})},
	}
	for _, tt := range tests {
		var got fanout.Message
		err := got.UnmarshalBinary(tt.frame)
		serr := got.UnmarshalString(string(tt.frame))
		var uv fanout.UnknownVersionError
		if err == nil || serr == nil || errors.As(err, &uv) || errors.As(serr, &uv) {
			t.Errorf("%s: %v / %v, want malformed", tt.name, err, serr)
		}
	}
	// Every cut before the data ends inside a field.
	for n := 0; n < len(good)-len(m.Data); n++ {
		var got fanout.Message
		if err := got.UnmarshalBinary(good[:n]); err == nil || got.UnmarshalString(string(good[:n])) == nil {
			t.Errorf("decoding the first %d of %d bytes succeeded", n, len(good))
		}
	}
}

// A frame that announces more stored ids than it can hold (anyone who may
// PUBLISH to Redis can send one) is refused before a slice of that count is
// made: a million ids announced in a frame of 1 MiB cost 32 MB to hold.
func TestAFrameAnnouncingMoreStoredIDsThanItHoldsIsRefusedWithoutAllocatingThem(t *testing.T) {
	m := fanout.Message{Kind: fanout.KindKeys, Origin: "o", ID: "i", TS: 1, Keys: []string{"w1"}}
	good, _ := m.AppendWire(nil, fanout.WireV1)
	// In version 1 the stored count follows the keys: one zero byte here.
	at := len(good) - len(m.Data) - 3 // stored count, wait, topic length
	if good[at] != 0 {
		t.Fatalf("no zero stored count at byte %d of %x", at, good)
	}
	frame := slices.Concat(good[:at], binary.AppendUvarint(nil, 1<<20), make([]byte, 1<<20))
	var got fanout.Message
	allocs := testing.AllocsPerRun(5, func() { _ = got.UnmarshalBinary(frame) })
	if err := got.UnmarshalBinary(frame); err == nil {
		t.Fatal("decoded a frame announcing a million stored ids in 1 MiB")
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_ = got.UnmarshalString(string(frame))
	runtime.ReadMemStats(&after)
	if grown := after.TotalAlloc - before.TotalAlloc; grown > 4<<20 { // the string's copy: 1 MiB

		t.Fatalf("refusing it allocated %d bytes (%v allocs per decode)", grown, allocs)
	}
}
