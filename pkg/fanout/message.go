package fanout

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"

	"github.com/herald-push/herald/pkg/protocol"
)

// Kind says what a Message asks the receiving node to do.
type Kind uint8

const (
	KindKeys       Kind = iota + 1 // deliver to the local connections of Keys
	KindTopic                      // deliver to the local subscribers of Topic
	KindBroadcast                  // deliver to every local connection
	KindDisconnect                 // close the local connections of Keys
	KindDelivered                  // Keys[i]'s stored message Stored[i] was written to a connection
	kindProbe                      // a node checking its own subscription; never handed on
)

// Message travels between nodes. Data is the message's JSON exactly as the
// sender gave it, so the receiving node builds client frames without parsing.
type Message struct {
	Kind   Kind
	Origin string // id of the node that accepted the send
	ID     string
	TS     int64 // unix milliseconds at acceptance
	Keys   []string
	// Stored and Prevs, when the message was stored, hold each key's stored
	// id and the key's id before it (see hub.Conn); for a topic with
	// history, the one id of the topic's stream. Otherwise nil.
	Stored []protocol.StoredID
	Prevs  []protocol.StoredID
	Wait   uint8 // what the sender waits for (inbox.Wait)
	Topic  string
	Data   []byte

	one [1]string // Keys of a decoded one-key message
}

// WireVersion is a version of the frame a Message travels between nodes in.
type WireVersion uint8

const (
	// WireV1 is the frame of herald before wire versions: the kind first,
	// then the fields, then the data to the end, so that a field added
	// after the topic would be read by such a node as data. Every node
	// reads it.
	WireV1 WireVersion = 1
	// WireV2 starts with a header that a version 1 decoder refuses (see
	// wireHeader), and has an extension area, before the data, for fields
	// added later: a decoder skips the fields it does not know.
	WireV2 WireVersion = 2
	// WireCurrent is the newest version this node reads and writes.
	WireCurrent = WireV2
	// DefaultWireVersion is what a bus writes unless told otherwise: a
	// version the nodes of the release before read, so that a cluster
	// upgraded one node at a time loses nothing between old and new
	// nodes. Nodes before wire versions read only version 1; the release
	// after this one writes version 2, which this one reads
	// (docs/architecture.md#between-nodes-the-wire-format).
	DefaultWireVersion = WireV1
)

// wireHeader opens every frame of version 2 on; the version byte follows.
// A version 1 decoder, which every node before versions runs, reads the
// first byte as a kind (0xff, none) and the next five, four 0xff and the
// version, as the uvarint length of the origin: with a version from 2 to
// 127 a length of at least 3<<28 - 1 bytes, more than the frame holds
// (Redis carries no value over its proto-max-bulk-len, 512 MB by default),
// so that decoder refuses the frame as malformed rather than read any of
// it as data. A version 1 frame starts with its kind, from 1 to 6: never
// 0xff.
const wireHeader = "\xff\xff\xff\xff\xff"

// UnknownVersionError is the error decoding a frame of a wire version this
// node does not read: a newer node wrote it.
type UnknownVersionError struct{ Version uint8 }

func (e UnknownVersionError) Error() string {
	return "unknown wire version " + strconv.Itoa(int(e.Version))
}

// AppendBinary appends m's frame in WireCurrent to b.
func (m *Message) AppendBinary(b []byte) ([]byte, error) { return m.AppendWire(b, WireCurrent) }

// AppendWire appends m's frame in version v to b. Version 1:
// kind, origin, id, ts, key count, keys, stored count, stored and previous
// ids, wait, topic, then the data to the end. Version 2: wireHeader and
// the version byte, the fields of version 1 up to the topic, the
// extension area (its length, then fields of a uvarint tag, a uvarint
// length and that many bytes; none are defined yet, so this writes it
// empty), then the data to the end. A hand-written layout because this
// runs once per routed send on both sides and encoding/json would double
// its cost.
func (m *Message) AppendWire(b []byte, v WireVersion) ([]byte, error) {
	switch v {
	case WireV1:
	case WireV2:
		b = append(append(b, wireHeader...), byte(v))
	default:
		return b, fmt.Errorf("wire version %d: this node writes versions %d and %d", v, WireV1, WireV2)
	}
	b = append(b, byte(m.Kind))
	b = appendString(b, m.Origin)
	b = appendString(b, m.ID)
	b = binary.AppendVarint(b, m.TS)
	b = binary.AppendUvarint(b, uint64(len(m.Keys)))
	for _, k := range m.Keys {
		b = appendString(b, k)
	}
	n := min(len(m.Stored), len(m.Prevs))
	b = binary.AppendUvarint(b, uint64(n))
	for i := range n {
		b = appendID(b, m.Stored[i])
		b = appendID(b, m.Prevs[i])
	}
	b = append(b, m.Wait)
	b = appendString(b, m.Topic)
	if v != WireV1 {
		b = append(b, 0) // an empty extension area
	}
	return append(b, m.Data...), nil
}

func appendID(b []byte, id protocol.StoredID) []byte {
	return binary.AppendUvarint(binary.AppendUvarint(b, id.MS), id.Seq)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

var errMalformed = errors.New("malformed message")

// UnmarshalBinary decodes a frame of any version AppendWire writes. Data
// aliases b. A frame of a later version fails with UnknownVersionError.
func (m *Message) UnmarshalBinary(b []byte) error { return decode(m, b) }

// UnmarshalString is UnmarshalBinary for a string, as Redis
// pub/sub hands messages over: origin, id, keys and topic are substrings
// of s, and only Data is copied out, so a received message costs one
// allocation for its fields rather than one per field.
func (m *Message) UnmarshalString(s string) error { return decode(m, s) }

func decode[T string | []byte](m *Message, b T) error {
	if len(b) == 0 {
		return errMalformed
	}
	v := WireV1
	if b[0] == wireHeader[0] {
		if len(b) <= len(wireHeader) || string(b[:len(wireHeader)]) != wireHeader {
			return errMalformed
		}
		switch b[len(wireHeader)] {
		case byte(WireV2):
		case 0, byte(WireV1): // version 1 has no header
			return errMalformed
		default:
			return UnknownVersionError{Version: b[len(wireHeader)]}
		}
		v, b = WireV2, b[len(wireHeader)+1:]
		if len(b) == 0 || b[0] == wireHeader[0] {
			return errMalformed // 0xff is no kind: a version 1 frame could not carry it
		}
	}
	m.Kind, b = Kind(b[0]), b[1:]
	var ok bool
	if m.Origin, b, ok = readString(b); !ok {
		return errMalformed
	}
	if m.ID, b, ok = readString(b); !ok {
		return errMalformed
	}
	ts, n := varint(b)
	if n <= 0 {
		return errMalformed
	}
	m.TS, b = ts, b[n:]
	count, n := uvarint(b)
	if n <= 0 || count > uint64(len(b)) {
		return errMalformed
	}
	b = b[n:]
	if count == 1 {
		m.Keys = m.one[:] // most sends are to one key: no slice to allocate
	} else {
		m.Keys = make([]string, count)
	}
	for i := range m.Keys {
		if m.Keys[i], b, ok = readString(b); !ok {
			return errMalformed
		}
	}
	stored, n := uvarint(b)
	// Each stored entry is two ids of at least two bytes each: a count the
	// rest of the frame cannot hold is refused before it is allocated (a
	// hostile frame announcing millions of ids cost 32 bytes each).
	if n <= 0 || stored > uint64(len(b)-n)/4 {
		return errMalformed
	}
	b = b[n:]
	m.Stored, m.Prevs = nil, nil
	if stored > 0 {
		m.Stored = make([]protocol.StoredID, stored)
		m.Prevs = make([]protocol.StoredID, stored)
		for i := range m.Stored {
			if m.Stored[i], b, ok = readID(b); !ok {
				return errMalformed
			}
			if m.Prevs[i], b, ok = readID(b); !ok {
				return errMalformed
			}
		}
	}
	if len(b) == 0 {
		return errMalformed
	}
	m.Wait, b = b[0], b[1:]
	if m.Topic, b, ok = readString(b); !ok {
		return errMalformed
	}
	if v != WireV1 {
		if b, ok = skipExtensions(b); !ok {
			return errMalformed
		}
	}
	m.Data = []byte(b) // a copy from a string; b itself from a slice
	return nil
}

// skipExtensions reads past the extension area: its length, then fields
// of a tag, a length and that many bytes. This node knows no field yet,
// so it checks each is whole and reads none.
func skipExtensions[T string | []byte](b T) (T, bool) {
	size, n := uvarint(b)
	if n <= 0 || size > uint64(len(b)-n) {
		return b[:0], false
	}
	area, rest := b[n:n+int(size)], b[n+int(size):]
	for len(area) > 0 {
		_, n := uvarint(area) // the tag
		if n <= 0 {
			return b[:0], false
		}
		area = area[n:]
		l, n := uvarint(area)
		if n <= 0 || l > uint64(len(area)-n) {
			return b[:0], false
		}
		area = area[n+int(l):]
	}
	return rest, true
}

// readString reads a length-prefixed string: a substring when b is a
// string, a copy when it is a slice.
func readString[T string | []byte](b T) (string, T, bool) {
	l, n := uvarint(b)
	if n <= 0 || l > uint64(len(b)-n) {
		return "", b[:0], false
	}
	end := n + int(l)
	return string(b[n:end]), b[end:], true
}

func readID[T string | []byte](b T) (protocol.StoredID, T, bool) {
	ms, n := uvarint(b)
	if n <= 0 {
		return protocol.StoredID{}, b[:0], false
	}
	seq, m := uvarint(b[n:])
	if m <= 0 {
		return protocol.StoredID{}, b[:0], false
	}
	return protocol.StoredID{MS: ms, Seq: seq}, b[n+m:], true
}

// uvarint is binary.Uvarint for a string or a slice.
func uvarint[T string | []byte](b T) (uint64, int) {
	var x uint64
	var s uint
	for i := 0; i < len(b); i++ {
		if i == binary.MaxVarintLen64 {
			return 0, -(i + 1) // overflow
		}
		c := b[i]
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				return 0, -(i + 1) // overflow
			}
			return x | uint64(c)<<s, i + 1
		}
		x |= uint64(c&0x7f) << s
		s += 7
	}
	return 0, 0
}

// varint is binary.Varint for a string or a slice.
func varint[T string | []byte](b T) (int64, int) {
	ux, n := uvarint(b)
	x := int64(ux >> 1)
	if ux&1 != 0 {
		x = ^x
	}
	return x, n
}
