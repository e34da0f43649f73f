package httpapi

import (
	"bytes"
	"encoding/json"
	"strconv"

	"github.com/herald-push/herald/pkg/protocol"
)

// The event stream's wire format (the HTML standard's text/event-stream):
// an event is "id:" and "data:" lines ended by a blank line; a line that
// starts with ":" is a comment, which herald writes as its heartbeat.

// appendEvent appends the event carrying frame to buf: "id: <stored id>"
// for a stored message of the key's stream, so that EventSource's
// Last-Event-ID resumes it, then one "data:" line per line of frame. A
// frame holds a line break only where its JSON has one as whitespace, or
// where a raw frame's text has one; EventSource joins the data lines with
// "\n", so a "\r\n" or lone "\r" of a raw text arrives as "\n".
func appendEvent(buf, frame []byte, id protocol.StoredID) []byte {
	if !id.IsZero() {
		buf = append(buf, "id: "...)
		buf = strconv.AppendUint(buf, id.MS, 10)
		buf = append(buf, '-')
		buf = strconv.AppendUint(buf, id.Seq, 10)
		buf = append(buf, '\n')
	}
	for {
		i := bytes.IndexAny(frame, "\r\n")
		buf = append(buf, "data: "...)
		if i < 0 {
			buf = append(buf, frame...)
			break
		}
		buf = append(buf, frame[:i]...)
		buf = append(buf, '\n')
		if frame[i] == '\r' && i+1 < len(frame) && frame[i+1] == '\n' {
			i++
		}
		frame = frame[i+1:]
	}
	return append(buf, "\n\n"...)
}

// sseHeartbeat is the comment written every ping interval: proxies see the
// stream is alive, and a client gone away fails the write.
const sseHeartbeat = ":\n\n"

// closeEvent is the data of the event that ends a stream: the WebSocket
// close code and reason a WebSocket client would get, so that a client
// applies the same reconnect rules to both.
type closeEvent struct {
	Code   protocol.CloseCode `json:"code"`
	Reason string             `json:"reason"`
}

// appendCloseEvent appends "event: close" with code and reason to buf.
func appendCloseEvent(buf []byte, code protocol.CloseCode, reason string) []byte {
	data, _ := json.Marshal(closeEvent{Code: code, Reason: reason}) // cannot fail: a number and a string
	buf = append(buf, "event: close\n"...)
	return appendEvent(buf, data, protocol.StoredID{})
}

// resumePoint is where a stream resumes the key's stored messages: after
// the later of the query's since= and the Last-Event-ID header. Both are
// positions in the key's stream, whose ids only grow; the header is sent
// by EventSource on its own reconnects, with the id of the last event it
// got, while the URL, and the since= in it, stays what the page first
// opened. The later is where the client is, whichever it is: an earlier
// since= would only resend what the client has. A Last-Event-ID that is no
// stored id (another server's, or empty) is ignored, as EventSource would
// send it again on every reconnect and a refusal would never end.
func resumePoint(since *protocol.StoredID, lastEventID string) *protocol.StoredID {
	id, ok := protocol.ParseStoredID(lastEventID)
	if !ok || (since != nil && !id.After(*since)) {
		return since
	}
	return &id
}
