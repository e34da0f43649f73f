package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/herald-push/herald/pkg/hub"
	"github.com/herald-push/herald/pkg/protocol"
)

// handleEvents serves GET /v1/sse: the connection of GET /v1/ws as
// Server-Sent Events, for where a WebSocket cannot pass (proxies that
// refuse upgrades). The same checks come first, in the same order, so a
// refusal is a plain HTTP error the client can read: the Host and the
// origin before this handler, the query, the credentials and the node's
// readiness (node.Authorize), then the limits and the registration
// (node.Admit). Only then does the stream start, so a client that sees it
// open is reachable from every node.
//
// Unlike a WebSocket, the stream is the request's answer: the handler's
// goroutine lives as long as the stream (under HTTP/2 there is nothing to
// hijack), parked until the client leaves or the hub ends the connection.
func (s *Server) handleEvents(c *gin.Context) {
	// A page of an allowed origin reads a refusal too, Retry-After
	// included: a browser's WebSocket shows none of a refused handshake, so
	// a WebGL game on a CDN learns why from this request's answer.
	s.allowOrigin(c)
	c.Header("Access-Control-Expose-Headers", "Retry-After")
	req, err := s.connectRequest(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	req.Since = resumePoint(req.Since, c.GetHeader("Last-Event-ID"))
	grant, err := s.node.Authorize(req)
	if err != nil {
		s.fail(c, err)
		return
	}
	session, err := s.node.Admit(c.Request.Context(), grant)
	if err != nil {
		s.fail(c, err)
		return
	}
	// Counted from admission, as herald_connections is, so that the two
	// agree by the time the client sees its stream open.
	s.eventStreams.Add(1)
	defer s.eventStreams.Add(-1)
	sock := newSSESocket(c.Writer, session.Settings().WriteTimeout)
	// The HTTP server's timeouts protect plain requests; the stream lives
	// on, bounded by heartbeats and per-write timeouts instead.
	_ = sock.rc.SetReadDeadline(time.Time{})
	_ = sock.rc.SetWriteDeadline(time.Time{})
	h := c.Writer.Header()
	h.Set("Content-Type", "text/event-stream")
	// Proxies must neither keep nor hold back the stream: no caching, no
	// buffering (nginx's X-Accel-Buffering), and no compression, which
	// buffers too (herald compresses nothing).
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	if c.Request.ProtoMajor == 1 {
		// A stream the server ends must end the connection too: kept
		// alive, a client waiting for the end of a response it read to its
		// last event would wait for the idle timeout. (Under HTTP/2 the
		// stream ends alone; Connection: close would end the connection
		// of every other stream on it.)
		h.Set("Connection", "close")
	}
	if o := c.GetHeader("Origin"); o != "" {
		// checkOrigin let it through: let the page read the stream.
		h.Set("Access-Control-Allow-Origin", o)
		h.Add("Vary", "Origin")
	}
	c.Status(http.StatusOK)
	c.Writer.WriteHeaderNow()
	// The headers go out before the hub may write: EventSource opens on
	// them.
	if err := sock.rc.Flush(); err != nil {
		session.Abort() // the client is gone before its stream began
		return
	}
	sock.conn = session.Conn()
	session.Serve(sock)
	sock.beat(session.Settings().PingInterval)
	select {
	case <-sock.ended: // Close or Kill: the hub knows why
	case <-c.Request.Context().Done():
	}
	sock.end()
	session.Ended(hub.EndClientClosed, nil)
}

var _ hub.Socket = (*sseSocket)(nil)

// errStreamEnded is what a write to a stream that ended returns.
var errStreamEnded = errors.New("event stream ended")

// sseSocket is one event stream as the hub's shared writers drive it
// (hub.Socket). A burst of frames is encoded as events into a buffer, then
// written and flushed in one write on a goroutine of the hub's: a
// ResponseWriter cannot be written without waiting, so TryRelease never
// finishes a burst itself.
//
// Writes (a burst's, a heartbeat, the closing event) hold mu while they
// wait for the client, bounded by the write timeout.
type sseSocket struct {
	w            http.ResponseWriter // net/http's own, under gin's
	rc           *http.ResponseController
	writeTimeout time.Duration
	conn         *hub.Conn

	mu    sync.Mutex // held while writing
	held  bool       // a burst is being gathered
	buf   []byte     // the burst's events
	spare []byte     // the last burst's buffer, for the next
	timer *time.Timer

	// life guards the ResponseWriter's deadline and its end: once the
	// handler has returned, net/http and gin reuse what w was.
	life   sync.Mutex
	killed bool // Kill ran: no write may wait any more
	dead   bool // the handler is returning: w is not to be touched
	ended  chan struct{}
	once   sync.Once
}

// maxSpareEvents bounds the buffer a stream keeps between bursts.
const maxSpareEvents = 8 << 10

func newSSESocket(w gin.ResponseWriter, writeTimeout time.Duration) *sseSocket {
	var under http.ResponseWriter = w
	for {
		u, ok := under.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			break
		}
		under = u.Unwrap()
	}
	return &sseSocket{w: under, rc: http.NewResponseController(under), writeTimeout: writeTimeout, ended: make(chan struct{})}
}

// TryHold starts a burst, unless a heartbeat or the close is being written.
func (s *sseSocket) TryHold(buf []byte) bool {
	if !s.mu.TryLock() {
		return false
	}
	s.holdLocked(buf)
	s.mu.Unlock()
	return true
}

// Hold starts a burst, waiting for a heartbeat or the close to be written.
func (s *sseSocket) Hold(buf []byte) {
	s.mu.Lock()
	s.holdLocked(buf)
	s.mu.Unlock()
}

func (s *sseSocket) holdLocked(buf []byte) {
	if buf == nil {
		buf, s.spare = s.spare, nil
	}
	s.held, s.buf = true, buf[:0]
}

// Put adds frame to the burst as one event, with the key's stored id as
// the event's (the hub passes no other).
func (s *sseSocket) Put(frame []byte, id protocol.StoredID) error {
	s.buf = appendEvent(s.buf, frame, id)
	return nil
}

// TryRelease leaves the burst to Release: writing a ResponseWriter may
// wait.
func (s *sseSocket) TryRelease() ([]byte, bool, error) { return nil, false, nil }

// Release writes and flushes the burst, waiting at most timeout.
func (s *sseSocket) Release(timeout time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	buf := s.buf
	s.held, s.buf = false, nil
	err := s.writeLocked(buf, timeout)
	if cap(buf) <= maxSpareEvents {
		s.spare = buf[:0]
	}
	return err
}

// Drop ends the burst, forgetting it.
func (s *sseSocket) Drop() {
	s.mu.Lock()
	s.held, s.buf = false, nil
	s.mu.Unlock()
}

// Close writes the closing event, if the client takes it within the write
// timeout, and ends the stream.
func (s *sseSocket) Close(code protocol.CloseCode, reason string) error {
	s.mu.Lock()
	err := s.writeLocked(appendCloseEvent(nil, code, reason), s.writeTimeout)
	s.mu.Unlock()
	s.stop()
	return err
}

// Kill ends the stream at once: a write under way fails at its deadline,
// now, and the handler returns.
func (s *sseSocket) Kill() {
	s.life.Lock()
	if !s.killed && !s.dead {
		s.killed = true
		_ = s.rc.SetWriteDeadline(time.Now())
	}
	s.life.Unlock()
	s.stop()
}

// stop has the handler return.
func (s *sseSocket) stop() { s.once.Do(func() { close(s.ended) }) }

// writeLocked writes b and flushes it within timeout; mu is held.
func (s *sseSocket) writeLocked(b []byte, timeout time.Duration) error {
	s.life.Lock()
	if s.killed || s.dead {
		s.life.Unlock()
		return errStreamEnded
	}
	err := s.rc.SetWriteDeadline(time.Now().Add(timeout))
	s.life.Unlock()
	if err != nil {
		return fmt.Errorf("write deadline: %w", err)
	}
	if _, err = s.w.Write(b); err == nil {
		err = s.rc.Flush()
	}
	// A deadline left armed would end an HTTP/2 stream when it passes,
	// idle or not; Kill's own stays.
	s.life.Lock()
	if !s.killed && !s.dead {
		if derr := s.rc.SetWriteDeadline(time.Time{}); err == nil && derr != nil {
			err = fmt.Errorf("write deadline: %w", derr)
		}
	}
	s.life.Unlock()
	if err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// beat writes a comment every interval while the stream is idle (a burst
// is proof enough of life): proxies keep an active stream open, and a
// client gone away fails the write, which ends the connection.
func (s *sseSocket) beat(interval time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.timer = time.AfterFunc(interval, func() {
		s.mu.Lock()
		var err error
		if !s.held {
			err = s.writeLocked([]byte(sseHeartbeat), s.writeTimeout)
		}
		if err == nil {
			s.timer.Reset(interval)
		}
		s.mu.Unlock()
		if err != nil && !errors.Is(err, errStreamEnded) {
			s.conn.Fail(hub.EndWriteFailed, err)
		}
	})
}

// end is the handler returning: it waits for a write under way (Kill's
// deadline ends it) and makes every later one fail.
func (s *sseSocket) end() {
	s.stop()
	s.mu.Lock()
	if s.timer != nil {
		s.timer.Stop()
	}
	s.life.Lock()
	s.dead = true
	s.life.Unlock()
	s.mu.Unlock()
}
