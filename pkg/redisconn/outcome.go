package redisconn

import (
	"errors"
	"net"
	"syscall"

	"github.com/redis/go-redis/v9"
)

// MayHaveRun reports whether a command that failed with err may have run on
// Redis all the same, so that what it did is unknown: it timed out after it
// was written, its connection was lost before the answer came, or its
// context ended midway. It is false only where the command surely did not
// run — no connection could be made (refused, unresolvable, dial timeout),
// none was free in the pool before anything was written, the client was
// closed — or where Redis answered, which is the outcome. An error of
// unknown origin may have run: telling a sender "nothing was sent" when
// something was makes it send twice.
//
// A joined error (several nodes, several commands) may have run when any
// of its parts may have.
//
// One blind spot: go-redis retries a command whose first attempt lost its
// connection; when the retry cannot dial, only the dial error comes back,
// though the first attempt may have run. It takes Redis dying within the
// command's round trip.
func MayHaveRun(err error) bool {
	if err == nil {
		return false
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if MayHaveRun(e) {
				return true
			}
		}
		return false
	}
	var answered redis.Error
	if errors.As(err, &answered) {
		return false
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return false
	}
	var dns *net.DNSError
	switch {
	case errors.As(err, &dns),
		errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, redis.ErrPoolTimeout),
		errors.Is(err, redis.ErrPoolExhausted),
		errors.Is(err, redis.ErrClosed):
		return false
	}
	return true
}
