package httpapi

import (
	"bytes"
	"encoding/json"

	"github.com/herald-push/herald/pkg/node"
)

// encoding/json matches field names case-insensitively and lets a repeated
// name overwrite the first, so {"KEY":"u1"} is taken as "key" and
// {"key":"a","key":"b"} as "b": a proxy or a log that reads the body
// differently from herald would see another recipient. checkFields reads
// the names of a body's top-level object once, before decoding, and
// refuses both.

// fieldSet is the names an object may hold, at most 16.
type fieldSet []string

var (
	payloadFields  = fieldSet{"key", "keys", "data", "store", "wait", "timeout_ms"}
	envelopeFields = fieldSet{"items"}
	itemFields     = fieldSet{"key", "keys", "topic", "broadcast", "data", "store", "wait", "timeout_ms", "idempotency_key"}
)

// checkFields refuses a top-level object with a name not exactly in names
// (unknown_field) or a name given twice (duplicate_field). Anything that is
// not a well-formed object is left for the JSON decoder to refuse, with
// its own message.
func checkFields(body []byte, names fieldSet) *node.Error {
	var seen uint16
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return nil
	}
	i = skipSpace(body, i+1)
	if i < len(body) && body[i] == '}' {
		return nil
	}
	for i < len(body) {
		if body[i] != '"' {
			return nil
		}
		end := scanString(body, i)
		if end < 0 {
			return nil
		}
		name := body[i+1 : end-1]
		if bytes.IndexByte(name, '\\') >= 0 {
			var s string
			if json.Unmarshal(body[i:end], &s) != nil {
				return nil
			}
			name = []byte(s)
		}
		at := -1
		for j, n := range names {
			if string(name) == n {
				at = j
				break
			}
		}
		switch {
		case at < 0:
			return badRequest("unknown_field", "unknown field %s (field names are lower case and exact: %s)", quoteClipped(string(name)), names)
		case seen&(1<<at) != 0:
			return badRequest("duplicate_field", "field %q is given twice", names[at])
		}
		seen |= 1 << at
		i = skipSpace(body, end)
		if i >= len(body) || body[i] != ':' {
			return nil
		}
		if i = skipValue(body, skipSpace(body, i+1)); i < 0 {
			return nil
		}
		i = skipSpace(body, i)
		if i >= len(body) || body[i] != ',' {
			return nil // '}' or malformed: either way no more names
		}
		i = skipSpace(body, i+1)
	}
	return nil
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanString returns the index after the string starting at b[i] (a quote),
// or -1 when it does not end. It jumps from quote to quote: a quote is the
// string's end unless an odd number of backslashes precedes it.
func scanString(b []byte, i int) int {
	for i++; i < len(b); {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return -1
		}
		i += j
		k := i
		for k > 0 && b[k-1] == '\\' {
			k--
		}
		i++
		if (i-1-k)%2 == 0 {
			return i
		}
	}
	return -1
}

// skipValue returns the index after the JSON value starting at b[i], or -1.
// It checks only what it needs to find the value's end.
func skipValue(b []byte, i int) int {
	depth := 0
	for i < len(b) {
		switch c := b[i]; c {
		case '"':
			end := scanString(b, i)
			if end < 0 {
				return -1
			}
			i = end
		case '{', '[':
			depth++
			i++
		case '}', ']':
			if depth == 0 {
				return i // the end of the enclosing object
			}
			depth--
			i++
		case ',':
			if depth == 0 {
				return i
			}
			i++
		default:
			i++
		}
		if depth == 0 && i < len(b) && (b[i-1] == '"' || b[i-1] == '}' || b[i-1] == ']') {
			return i
		}
	}
	if depth == 0 {
		return i
	}
	return -1
}
