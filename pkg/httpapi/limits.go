package httpapi

import (
	"io"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/herald-push/herald/pkg/node"
)

// inFlight bounds the work the API holds at once: requests, and the bytes
// of their bodies. Without it eight concurrent maximal batches took a node
// to 850 MB; each is cheap alone, the sum is what hurts. A request over
// either bound is answered 503 overloaded at once, before its body is read,
// so that a client backs off and a load balancer tries another node.
type inFlight struct {
	maxRequests int64 // < 0: no bound
	maxBytes    int64 // < 0: no bound
	requests    atomic.Int64
	bytes       atomic.Int64
}

var (
	errTooManyRequests = retryAfter(node.Errorf(node.KindUnavailable, "overloaded",
		"this node is answering as many API requests as it may at once; retry shortly or try another node"), time.Second)
	errTooManyBodyBytes = retryAfter(node.Errorf(node.KindUnavailable, "overloaded",
		"this node holds as many request bytes as it may at once; retry shortly or try another node"), time.Second)
)

func retryAfter(e *node.Error, d time.Duration) *node.Error {
	e.RetryAfter = d
	return e
}

// limitRequests counts an API request in flight for as long as it runs,
// refusing it over the bound.
func (s *Server) limitRequests(c *gin.Context) {
	l := &s.inFlight
	if n := l.requests.Add(1); l.maxRequests >= 0 && n > l.maxRequests {
		l.requests.Add(-1)
		s.fail(c, errTooManyRequests)
		return
	}
	defer l.requests.Add(-1)
	c.Next()
}

// bodyReader counts a request's body bytes in flight as they arrive, and
// fails the read once the node's sum is over its bound. Counting what
// arrived, not what a body may hold, is what keeps a client that trickles
// its body from holding more than it sent: reserving each body's limit (or
// its Content-Length) up front let four slow connections lock every send
// out for the whole read timeout. A request alone in flight is never
// refused, whatever its size: the bound is on the sum.
type bodyReader struct {
	r    io.Reader
	l    *inFlight
	held int64 // bytes this body counts in l; given back with releaseBody
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if n > 0 && b.l.maxBytes >= 0 {
		b.held += int64(n)
		if total := b.l.bytes.Add(int64(n)); total > b.l.maxBytes && total > b.held {
			return n, errTooManyBodyBytes
		}
	}
	return n, err
}

// readAll is io.ReadAll appending to buf: a send's body goes into a pooled
// buffer, and a bodyReader that is not an io.Reader here stays off the
// heap.
func (b *bodyReader) readAll(buf []byte) ([]byte, error) {
	if cap(buf) == 0 {
		buf = make([]byte, 0, 512)
	}
	for {
		n, err := b.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return buf, err
		}
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)] // room to grow, as io.ReadAll makes it
		}
	}
}

// releaseBody gives back what a bodyReader counted, once the request is
// answered: what is decoded from a body lives as long as the request.
func (s *Server) releaseBody(n int64) {
	if n > 0 {
		s.inFlight.bytes.Add(-n)
	}
}
