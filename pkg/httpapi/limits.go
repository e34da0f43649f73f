package httpapi

import (
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

// reserveBody reserves, before a body is read, the most bytes it may hold:
// its Content-Length when it gives one (the server reads no further), the
// endpoint's limit otherwise. The handler gives them back with releaseBody
// when it has answered, since what is decoded from a body lives as long as
// the request. A request alone in flight is never refused, whatever its
// size: the bound is on the sum.
func (s *Server) reserveBody(c *gin.Context, limit int64) (int64, error) {
	l := &s.inFlight
	if l.maxBytes < 0 {
		return 0, nil
	}
	n := limit
	if cl := c.Request.ContentLength; cl >= 0 && cl < limit {
		n = cl
	}
	if total := l.bytes.Add(n); total > l.maxBytes && total != n {
		l.bytes.Add(-n)
		return 0, errTooManyBodyBytes
	}
	return n, nil
}

// releaseBody gives back what reserveBody reserved.
func (s *Server) releaseBody(n int64) {
	if n > 0 {
		s.inFlight.bytes.Add(-n)
	}
}
