package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/herald-push/herald/pkg/protocol"
	"github.com/herald-push/herald/pkg/redisconn"
)

// unconfirmed is what a send returns when its messages were stored on the
// masters but --redis-min-replicas replicas did not confirm them in time:
// the answer it would have given, to be kept for a retry.
type unconfirmed struct {
	answer any
}

// answerNotReplicated tells the sender its stored send is not confirmed.
func (n *Node) answerNotReplicated(c *gin.Context) {
	c.Header("Retry-After", "1")
	n.answer(c, http.StatusServiceUnavailable, errorBody("not_replicated",
		"the message was stored and routed, but too few Redis replicas confirmed it in time; "+
			"retry with the same Idempotency-Key to confirm it without sending it again"))
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

// unconfirmedMark starts a recorded answer that replicas have not confirmed.
const unconfirmedMark = '?'

func isUnconfirmed(answer []byte) bool { return len(answer) > 0 && answer[0] == unconfirmedMark }

// recordUnconfirmed keeps answer for the Idempotency-Key, marked
// unconfirmed, on the master (its own replication is not waited for: the
// retry confirms everything at once).
func (n *Node) recordUnconfirmed(ctx context.Context, key string, answer any) {
	b, _ := json.Marshal(answer)
	err := n.idem.Finish(context.WithoutCancel(ctx), key, append([]byte{unconfirmedMark}, b...))
	if err != nil && !errors.Is(err, redisconn.ErrNotReplicated) {
		n.log.Warn("could not record an unconfirmed answer; a retry would send again", "err", err)
	}
}

// confirmRecorded handles a retry that found an unconfirmed answer: when
// every message it names is still stored and the replicas now confirm them,
// the answer is recorded as final and returned for replay. When a message
// is gone (lost with a master in a failover) redo is true: the record was
// dropped and the request must be carried out again. Otherwise the sender
// has been answered and both results are zero.
func (n *Node) confirmRecorded(c *gin.Context, ctx context.Context, key string, answer []byte) (final []byte, redo bool) {
	final = answer[1:]
	var rec sendResult
	if err := json.Unmarshal(final, &rec); err != nil {
		n.fail(c, http.StatusInternalServerError, "internal", "unreadable recorded answer")
		return nil, false
	}
	keys := make([]string, 0, len(rec.Results))
	ids := make([]protocol.StoredID, 0, len(rec.Results))
	for k, r := range rec.Results {
		id, ok := protocol.ParseStoredID(r.ID)
		if !ok {
			n.fail(c, http.StatusInternalServerError, "internal", fmt.Sprintf("recorded answer names a bad id %q", r.ID))
			return nil, false
		}
		keys, ids = append(keys, k), append(ids, id)
	}
	held, err := n.inbox.Confirm(ctx, keys, ids)
	switch {
	case err == nil && !held:
		n.log.Warn("a send's stored messages were lost before replicas confirmed them; carrying it out again", "idempotency_key", key)
		if err := n.idem.Abort(ctx, key); err != nil {
			n.fail(c, http.StatusServiceUnavailable, "unavailable", "could not reset the Idempotency-Key; retry")
			return nil, false
		}
		return nil, true
	case errors.Is(err, redisconn.ErrNotReplicated):
		n.metrics.notReplicated.Inc()
		n.answerNotReplicated(c)
		return nil, false
	case err != nil:
		n.metrics.redisErrors.WithLabelValues("inbox_read").Inc()
		n.fail(c, http.StatusServiceUnavailable, "unavailable", "could not confirm the stored messages; retry")
		return nil, false
	}
	if err := n.idem.Finish(ctx, key, final); err != nil {
		n.metrics.notReplicated.Inc()
		n.answerNotReplicated(c)
		return nil, false
	}
	return final, false
}
