package fanout

import (
	"encoding/binary"
	"errors"

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

// AppendBinary appends m's wire form to b:
// kind, origin, id, ts, key count, keys, topic as length-prefixed fields, then
// the data to the end. A hand-written layout because this runs once per
// routed send on both sides and encoding/json would double its cost.
func (m *Message) AppendBinary(b []byte) ([]byte, error) {
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

// UnmarshalBinary decodes what AppendBinary wrote. Data aliases b.
func (m *Message) UnmarshalBinary(b []byte) error { return decode(m, b) }

// UnmarshalString decodes what AppendBinary wrote from a string, as Redis
// pub/sub hands messages over: origin, id, keys and topic are substrings
// of s, and only Data is copied out, so a received message costs one
// allocation for its fields rather than one per field.
func (m *Message) UnmarshalString(s string) error { return decode(m, s) }

func decode[T string | []byte](m *Message, b T) error {
	if len(b) == 0 {
		return errMalformed
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
	if n <= 0 || stored > uint64(len(b)) {
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
	m.Data = []byte(b) // a copy from a string; b itself from a slice
	return nil
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
