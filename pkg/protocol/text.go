package protocol

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// ValidData reports whether data may be pasted into a frame as its "data"
// (AppendFrame copies it verbatim): one JSON value, and valid text
// (ValidText). What came through herald's own JSON decoder is JSON
// already; what comes from the bus or from a stored stream may be
// anything, and a fragment such as 1,"id":"forged" would forge the
// frame's other fields.
func ValidData(data []byte) bool {
	return json.Valid(data) && ValidText(data)
}

// ValidText reports whether data, a JSON value, can be written in a
// WebSocket text frame and read by every client: it must be valid UTF-8
// (RFC 6455 §8.1: a client closes the connection with 1007 otherwise), and
// no \u escape in it may name a lone UTF-16 surrogate, which strict JSON
// decoders refuse and others turn into U+FFFD. data is assumed to be JSON
// already: a backslash outside a string would not get this far.
func ValidText(data []byte) bool {
	if !utf8.Valid(data) {
		return false
	}
	for i := 0; ; {
		j := bytes.IndexByte(data[i:], '\\')
		if j < 0 {
			return true
		}
		i += j
		if i+1 >= len(data) {
			return true
		}
		if data[i+1] != 'u' {
			i += 2 // \" \\ \n and the like: the escaped byte is never the start of one
			continue
		}
		r, ok := hex4(data, i+2)
		if !ok {
			return true // not JSON; the JSON decoder has its own say
		}
		i += 6
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			return false // a low surrogate with no high one before it
		case r >= 0xD800 && r <= 0xDBFF:
			low, ok := -1, false
			if i+1 < len(data) && data[i] == '\\' && data[i+1] == 'u' {
				low, ok = hex4(data, i+2)
			}
			if !ok || low < 0xDC00 || low > 0xDFFF {
				return false // a high surrogate not followed by a low one
			}
			i += 6
		}
	}
}

// hex4 reads the four hex digits at data[i:].
func hex4(data []byte, i int) (int, bool) {
	if i+4 > len(data) {
		return 0, false
	}
	r := 0
	for _, c := range data[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | int(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | int(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | int(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}
