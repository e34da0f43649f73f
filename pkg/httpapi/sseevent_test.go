package httpapi

import (
	"testing"

	"github.com/herald-push/herald/internal/ssetest"
	"github.com/herald-push/herald/pkg/protocol"
)

// parseEvents reads stream as an EventSource would.
func parseEvents(t *testing.T, stream string) []ssetest.Event {
	t.Helper()
	return ssetest.ParseString(stream)
}

// Each frame becomes one event whose data an EventSource hands back as the
// frame itself, line breaks of any kind arriving as "\n"; a stored message
// carries its stored id, a plain one leaves the last id as it was.
func TestAFrameBecomesOneEventAnEventSourceReadsBackWhole(t *testing.T) {
	for _, tc := range []struct {
		what, frame string
		id          protocol.StoredID
		wire, data  string
	}{
		{"a plain frame", `{"id":"m1","key":"u1","data":5,"ts":1}`, protocol.StoredID{},
			"data: {\"id\":\"m1\",\"key\":\"u1\",\"data\":5,\"ts\":1}\n\n", `{"id":"m1","key":"u1","data":5,"ts":1}`},
		{"a stored frame", `{"id":"17-2","key":"u1","data":5,"ts":1}`, protocol.StoredID{MS: 17, Seq: 2},
			"id: 17-2\ndata: {\"id\":\"17-2\",\"key\":\"u1\",\"data\":5,\"ts\":1}\n\n", `{"id":"17-2","key":"u1","data":5,"ts":1}`},
		{"JSON whitespace with a line feed", "{\"id\":\"m1\",\"data\":{\n\"a\": 1\n}}", protocol.StoredID{},
			"data: {\"id\":\"m1\",\"data\":{\ndata: \"a\": 1\ndata: }}\n\n", "{\"id\":\"m1\",\"data\":{\n\"a\": 1\n}}"},
		{"a raw text with CRLF and a lone CR", "one\r\ntwo\rthree", protocol.StoredID{},
			"data: one\ndata: two\ndata: three\n\n", "one\ntwo\nthree"},
		{"a raw text ending in a line break", "last\n", protocol.StoredID{},
			"data: last\ndata: \n\n", "last\n"},
		{"a raw text starting with a space and a colon", " :x", protocol.StoredID{},
			"data:  :x\n\n", " :x"},
		{"an empty raw text", "", protocol.StoredID{}, "data: \n\n", ""},
	} {
		t.Run(tc.what, func(t *testing.T) {
			wire := string(appendEvent([]byte(":\n\n"), []byte(tc.frame), tc.id))[3:]
			if wire != tc.wire {
				t.Fatalf("wire %q, want %q", wire, tc.wire)
			}
			events := parseEvents(t, ": heartbeat\n\nid: 1-1\ndata: before\n\n"+wire)
			if len(events) != 2 {
				t.Fatalf("events %+v, want the one before and this one", events)
			}
			got, wantID := events[1], "1-1"
			if !tc.id.IsZero() {
				wantID = tc.id.String()
			}
			if got.Type != "message" || got.Data != tc.data || got.LastID != wantID {
				t.Fatalf("EventSource reads %+v, want a message %q with last id %s", got, tc.data, wantID)
			}
		})
	}
}

// The stream's end says why, in the close code and reason a WebSocket
// client gets; a reason with quotes or a line break stays one data line.
func TestTheClosingEventCarriesTheCloseCodeAndReason(t *testing.T) {
	wire := string(appendCloseEvent(nil, protocol.CloseServiceRestart, "node \"a\" is shutting down\nbye"))
	want := "event: close\ndata: {\"code\":1012,\"reason\":\"node \\\"a\\\" is shutting down\\nbye\"}\n\n"
	if wire != want {
		t.Fatalf("wire %q, want %q", wire, want)
	}
	events := parseEvents(t, wire)
	if len(events) != 1 || events[0].Type != "close" || events[0].LastID != "" {
		t.Fatalf("events %+v, want one close event without an id", events)
	}
	if events := parseEvents(t, sseHeartbeat); len(events) != 0 {
		t.Fatalf("a heartbeat reads as events %+v, want none", events)
	}
}

// A reconnecting EventSource sends Last-Event-ID with the URL it first
// opened, since= and all: the later of the two is where the client is.
func TestLastEventIDAndSinceResumeAfterTheLaterOfTheTwo(t *testing.T) {
	id := func(ms, seq uint64) *protocol.StoredID { return &protocol.StoredID{MS: ms, Seq: seq} }
	for _, tc := range []struct {
		what   string
		since  *protocol.StoredID
		header string
		want   *protocol.StoredID
	}{
		{"neither: after the acknowledged position", nil, "", nil},
		{"since alone", id(5, 0), "", id(5, 0)},
		{"Last-Event-ID alone", nil, "7-1", id(7, 1)},
		{"Last-Event-ID later than since", id(5, 0), "7-1", id(7, 1)},
		{"since later than Last-Event-ID", id(9, 0), "7-1", id(9, 0)},
		{"the same id", id(7, 1), "7-1", id(7, 1)},
		{"a Last-Event-ID that is no stored id is ignored", id(5, 0), "m-abc", id(5, 0)},
		{"an empty Last-Event-ID alone", nil, "", nil},
	} {
		t.Run(tc.what, func(t *testing.T) {
			got := resumePoint(tc.since, tc.header)
			if (got == nil) != (tc.want == nil) || (got != nil && *got != *tc.want) {
				t.Fatalf("resumePoint(%v, %q) = %v, want %v", tc.since, tc.header, got, tc.want)
			}
		})
	}
}
