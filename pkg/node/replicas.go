package node

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/herald-push/herald/pkg/redisconn"
)

// unconfirmed is what a send returns when its messages were stored on the
// masters but --redis-min-replicas replicas did not confirm them in time.
// They were not routed: a message a failover may still lose must not reach
// a client, which would then get it twice once the retry stores it again.
type unconfirmed struct{}

// answerNotReplicated tells the sender its stored send is not confirmed.
func (n *Node) answerNotReplicated(c *gin.Context) {
	c.Header("Retry-After", "1")
	n.answer(c, http.StatusServiceUnavailable, errorBody("not_replicated",
		"the message was stored on the Redis master, but too few replicas confirmed it in time, so it was not sent yet; "+
			"retry with the same Idempotency-Key: the retry sends it once, without storing it twice"))
}

// requestLease is how long an Idempotency-Key claim may stay in progress:
// the longest a send can take (its Redis steps and its wait). A claim left
// behind by a node that died, or lost its Redis mid-request, frees itself
// after it.
func (n *Node) requestLease() time.Duration {
	return 3*redisTimeout + n.cfg.MaxWait
}

// abortClaim releases a failed request's Idempotency-Key, trying a few
// times: a claim left in progress turns the sender's retries away until its
// lease runs out.
func (n *Node) abortClaim(ctx context.Context, key string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), redisTimeout)
	defer cancel()
	for attempt := 1; ; attempt++ {
		err := n.idem.Abort(ctx, key)
		if err == nil {
			return
		}
		if attempt == 3 {
			n.log.Warn("could not release an Idempotency-Key; retries wait for its lease", "lease", n.requestLease(), "err", err)
			return
		}
		select {
		case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
		case <-ctx.Done():
			return
		}
	}
}

// finishClaim records a request's answer for its Idempotency-Key, trying a
// few times while Redis fails (not when it answers that replicas fell
// short: that is the caller's to handle).
func (n *Node) finishClaim(ctx context.Context, key string, answer []byte) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), redisTimeout)
	defer cancel()
	for attempt := 1; ; attempt++ {
		err := n.idem.Finish(ctx, key, answer)
		if err == nil || errors.Is(err, redisconn.ErrNotReplicated) || attempt == 3 {
			return err
		}
		select {
		case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
		case <-ctx.Done():
			return err
		}
	}
}
