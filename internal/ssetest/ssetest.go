// Package ssetest reads Server-Sent Events streams in tests, as the HTML
// standard's EventSource parses them, over a real HTTP connection.
package ssetest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Event is one event as EventSource hands it over: its type ("message"
// unless the stream named one), its data, and the last event id so far.
type Event struct {
	Type, Data, LastID string
}

// Stream is an open event stream being read.
type Stream struct {
	t      testing.TB
	Resp   *http.Response
	events chan Event
	done   chan error // the error that ended reading (io.EOF: the server ended it)
	cancel context.CancelFunc
	// Comments counts the comment lines read (herald's heartbeats).
	Comments atomic.Int64
}

// Open requests url with header through client and, on a 200 event stream,
// starts reading it. Any other answer is returned with a nil Stream, its
// body unread.
func Open(t testing.TB, client *http.Client, url string, header http.Header) (*Stream, *http.Response) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Cleanup(cancel)
		return nil, resp
	}
	s := &Stream{t: t, Resp: resp, events: make(chan Event, 4096), done: make(chan error, 1), cancel: cancel}
	t.Cleanup(s.Close)
	go s.read()
	return s, resp
}

// MustOpen is Open that fails the test on anything but an event stream.
func MustOpen(t testing.TB, client *http.Client, url string, header http.Header) *Stream {
	t.Helper()
	s, resp := Open(t, client, url, header)
	if s == nil {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s, want an event stream", url, resp.StatusCode, b)
	}
	return s
}

// Close hangs up.
func (s *Stream) Close() {
	s.cancel()
	s.Resp.Body.Close()
}

func (s *Stream) read() {
	err := Parse(s.Resp.Body, func(e Event) { s.events <- e }, func() { s.Comments.Add(1) })
	if err == nil {
		err = io.EOF
	}
	s.done <- err
}

// Parse reads a text/event-stream from r as the HTML standard's parser does
// (§9.2.6): each event is handed to event, with its data lines joined by
// "\n" and the id kept across events until one sets it; each comment line
// is counted by comment (which may be nil). It returns the error that
// ended reading, nil at the end of r.
func Parse(r io.Reader, event func(Event), comment func()) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	sc.Split(scanLines)
	var typ, lastID string
	var data []string
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if data != nil {
				if typ == "" {
					typ = "message"
				}
				event(Event{Type: typ, Data: strings.Join(data, "\n"), LastID: lastID})
			}
			typ, data = "", nil
			continue
		}
		if strings.HasPrefix(line, ":") {
			if comment != nil {
				comment()
			}
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			typ = value
		case "data":
			data = append(data, value)
		case "id":
			lastID = value
		}
	}
	return sc.Err()
}

// ParseString is Parse of a whole stream held in memory.
func ParseString(stream string) []Event {
	var out []Event
	_ = Parse(strings.NewReader(stream), func(e Event) { out = append(out, e) }, nil) // a string reader does not fail
	return out
}

// scanLines splits on "\r\n", "\r" or "\n".
func scanLines(b []byte, atEOF bool) (int, []byte, error) {
	for i, c := range b {
		switch c {
		case '\n':
			return i + 1, b[:i], nil
		case '\r':
			if i+1 == len(b) && !atEOF {
				return 0, nil, nil
			}
			if i+1 < len(b) && b[i+1] == '\n' {
				return i + 2, b[:i], nil
			}
			return i + 1, b[:i], nil
		}
	}
	if atEOF && len(b) > 0 {
		return len(b), b, nil
	}
	return 0, nil, nil
}

// Next returns the next event, failing the test if none comes within d or
// the stream ends first.
func (s *Stream) Next(d time.Duration) Event {
	s.t.Helper()
	select {
	case e := <-s.events:
		return e
	case err := <-s.done:
		s.done <- err
		s.t.Fatalf("the stream ended while waiting for an event: %v", err)
	case <-time.After(d):
		s.t.Fatalf("no event within %v", d)
	}
	return Event{}
}

// Nothing fails the test if an event arrives within d.
func (s *Stream) Nothing(d time.Duration) {
	s.t.Helper()
	select {
	case e := <-s.events:
		s.t.Fatalf("unexpected event %+v", e)
	case <-time.After(d):
	}
}

// End waits up to d for the stream to end and returns the events read
// meanwhile and how it ended (io.EOF: the server ended the response).
func (s *Stream) End(d time.Duration) ([]Event, error) {
	s.t.Helper()
	var got []Event
	timeout := time.After(d)
	for {
		select {
		case e := <-s.events:
			got = append(got, e)
		case err := <-s.done:
			s.done <- err
			for {
				select {
				case e := <-s.events:
					got = append(got, e)
				default:
					return got, err
				}
			}
		case <-timeout:
			s.t.Fatalf("the stream still open after %v (events %+v)", d, got)
			return got, errors.New("still open")
		}
	}
}

// CloseEvent is the data of herald's closing event.
type CloseEvent struct {
	Code   int    `json:"code"`
	Reason string `json:"reason"`
}

// String is for messages.
func (c CloseEvent) String() string { return fmt.Sprintf("%d %q", c.Code, c.Reason) }
