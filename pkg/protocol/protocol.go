// Package protocol defines what clients see on the wire: the names they may
// use, the frames the server writes and the close codes it ends with.
package protocol

import (
	"encoding/json"
	"strconv"
)

// MaxNameLen is the longest key or topic name accepted.
const MaxNameLen = 128

// ValidName reports whether s is a usable key or topic name:
// 1 to 128 characters from [A-Za-z0-9_.:@-]. The restricted alphabet lets
// frames embed names without escaping and keeps Redis hash tags intact.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > MaxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '_', c == '.', c == ':', c == '@', c == '-':
		default:
			return false
		}
	}
	return true
}

// CloseCode is a code the server ends a connection with: a WebSocket close
// frame's status (RFC 6455 §7.4), and the same number in the closing event
// of an event stream, so that every client applies one set of reconnect
// rules whatever its transport.
type CloseCode uint16

// Close codes the server ends connections with.
const (
	// CloseNormal: the connection is done; nothing is wrong.
	CloseNormal CloseCode = 1000
	// CloseServiceRestart: the node is shutting down; reconnect (after a
	// short random delay) and the load balancer will pick another node.
	CloseServiceRestart CloseCode = 1012
	// CloseSlowConsumer: the client read too slowly and its outgoing queue
	// overflowed; messages queued for it were dropped. Reconnect.
	CloseSlowConsumer CloseCode = 1008
	// CloseTooBig: the client sent a frame over the read limit.
	CloseTooBig CloseCode = 1009
	// CloseDisconnected: an operator closed the key's connections through
	// DELETE /v1/connections/{key}. Do not reconnect at once.
	CloseDisconnected CloseCode = 4001
	// CloseTokenExpired: the connection's token expired. Reconnect with a
	// fresh token.
	CloseTokenExpired CloseCode = 4002
	// CloseTryAgainLater: the node could not read the client's stored
	// messages, or it lost Redis for longer than its fence delay.
	// Reconnect (with since) after a short delay.
	CloseTryAgainLater CloseCode = 1013
)

// String names the code for logs: its number and what it means.
func (c CloseCode) String() string {
	var name string
	switch c {
	case CloseNormal:
		name = "normal"
	case CloseServiceRestart:
		name = "service restart"
	case CloseSlowConsumer:
		name = "slow consumer"
	case CloseTooBig:
		name = "too big"
	case CloseDisconnected:
		name = "disconnected"
	case CloseTokenExpired:
		name = "token expired"
	case CloseTryAgainLater:
		name = "try again later"
	default:
		return strconv.Itoa(int(c))
	}
	return strconv.Itoa(int(c)) + " " + name
}

// Kind says which of a frame's routing fields is set.
type Kind uint8

const (
	KindKey       Kind = iota + 1 // "key": name
	KindTopic                     // "topic": name
	KindBroadcast                 // neither
)

// AppendFrame appends the JSON frame
//
//	{"id":"<id>","key":"<name>","data":<data>,"ts":<ts>}
//
// ("topic" instead of "key" for KindTopic, neither for KindBroadcast) to b.
// id and name must be valid names and data valid JSON: they are copied
// verbatim, which is what lets a message be encoded once per send instead of
// through encoding/json once per connection.
func AppendFrame(b []byte, kind Kind, id, name string, data []byte, ts int64) []byte {
	b = append(b, `{"id":"`...)
	b = append(b, id...)
	switch kind {
	case KindKey:
		b = append(b, `","key":"`...)
		b = append(b, name...)
	case KindTopic:
		b = append(b, `","topic":"`...)
		b = append(b, name...)
	}
	b = append(b, `","data":`...)
	b = append(b, data...)
	b = append(b, `,"ts":`...)
	b = strconv.AppendInt(b, ts, 10)
	return append(b, '}')
}

// RawPayload is what a format=raw connection receives for data: a JSON string
// as its bare text, any other JSON value as it is.
func RawPayload(data []byte) []byte {
	if len(data) == 0 || data[0] != '"' {
		return data
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return data
	}
	return []byte(s)
}
