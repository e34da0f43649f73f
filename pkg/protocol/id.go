package protocol

import (
	"strconv"
	"strings"
)

// StoredID is the id of a stored message: its Redis stream id, milliseconds
// and a sequence number. Stored ids of one key are strictly increasing, which
// is what lets a client resume "after" one and acknowledge "up to" one.
// The zero StoredID comes before every stored message.
type StoredID struct {
	MS, Seq uint64
}

// ParseStoredID parses "<ms>-<seq>".
func ParseStoredID(s string) (StoredID, bool) {
	ms, seq, ok := strings.Cut(s, "-")
	if !ok || ms == "" || seq == "" || len(s) > 41 {
		return StoredID{}, false
	}
	a, err1 := strconv.ParseUint(ms, 10, 64)
	b, err2 := strconv.ParseUint(seq, 10, 64)
	if err1 != nil || err2 != nil || ms[0] == '+' || seq[0] == '+' {
		return StoredID{}, false
	}
	return StoredID{MS: a, Seq: b}, true
}

func (id StoredID) String() string {
	b := make([]byte, 0, 41)
	b = strconv.AppendUint(b, id.MS, 10)
	b = append(b, '-')
	return string(strconv.AppendUint(b, id.Seq, 10))
}

// IsZero reports whether id is the zero StoredID.
func (id StoredID) IsZero() bool { return id == StoredID{} }

// After reports whether id comes after other.
func (id StoredID) After(other StoredID) bool {
	return id.MS > other.MS || (id.MS == other.MS && id.Seq > other.Seq)
}
