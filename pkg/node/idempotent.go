package node

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/herald-push/herald/pkg/idempotency"
	"github.com/herald-push/herald/pkg/inbox"
	"github.com/herald-push/herald/pkg/redisconn"
)

// idempotent carries do out once per key: a retry within the TTL gets the
// first result (replayed) and carries out nothing. Only successes are kept;
// a failed request may be retried (a stored send's retry stores nothing
// twice: the inbox keeps dedupe with each entry). A send stored for some
// keys only (PartialError) is a failure too, so its retry stores the rest
// rather than being answered the partial failure again. key "" runs do as it is;
// scoped is key as stored.
func idempotent[R any](ctx context.Context, n *Node, key, scoped string, do func() (R, error)) (res R, replayed bool, err error) {
	if key == "" {
		res, err = do()
		return res, false, err
	}
	if len(key) > 255 || strings.ContainsFunc(key, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
		return res, false, invalid("invalid_idempotency_key", "Idempotency-Key must be 1-255 printable ASCII characters")
	}
	rctx, cancel := context.WithTimeout(ctx, redisTimeout)
	defer cancel()
	answer, claimed, err := n.idem.Begin(rctx, scoped, n.requestLease())
	switch {
	case errors.Is(err, idempotency.ErrInProgress):
		return res, false, retryLater(Errorf(KindConflict, "idempotency_in_progress",
			"a request with this Idempotency-Key is still being carried out"), time.Second)
	case errors.Is(err, idempotency.ErrFull):
		return res, false, n.storageFull(ErrIdempotencyFull)
	case err != nil:
		n.metrics.redisErrors.WithLabelValues("idempotency").Inc()
		if redisconn.MayHaveRun(err) {
			// Nothing was sent (the request never started), but the claim
			// may stand: a retry then finds it in progress until its lease
			// ends. It cannot be released blindly: it may be another
			// request's.
			return res, false, retryLater(unavailable("could not check the Idempotency-Key; nothing was sent, "+
				"but Redis may hold the key's claim: a retry with it may be answered idempotency_in_progress for up to %v", n.requestLease()), time.Second)
		}
		return res, false, retryLater(unavailable("could not check the Idempotency-Key; nothing was sent"), time.Second)
	case !claimed:
		if err := json.Unmarshal(answer, &res); err != nil {
			return res, false, err // internal: the stored answer is not ours
		}
		n.metrics.idemReplays.Add(1)
		return res, true, nil
	}
	// A record holds the request's answer, a few hundred bytes, counted
	// as generously as a stored send's entry.
	cost := inbox.StoredCost(1, 512)
	if err := n.roomInRedis(cost); err != nil {
		// Checked once claimed, not before: a retry of a request already
		// answered gets its answer, which costs Redis nothing more.
		n.abortClaim(rctx, scoped)
		return res, false, err
	}
	defer n.mem.Settled(cost)
	res, err = do()
	if err != nil {
		n.abortClaim(rctx, scoped)
		return res, false, err
	}
	b, err := json.Marshal(res)
	if err != nil {
		n.abortClaim(rctx, scoped)
		return res, false, err
	}
	if err := n.finishClaim(rctx, scoped, b); err != nil {
		if errors.Is(err, redisconn.ErrNotReplicated) {
			// Sent, but the answer itself may not survive a failover: a
			// retry gets it, or (if it was lost) sends again, which stores
			// nothing twice and routes the same message once more, which
			// clients drop by id.
			n.metrics.notReplicated.Inc()
			return res, false, ErrNotReplicated
		}
		n.log.Warn("could not record an idempotent answer; a retry would send again", "err", err)
	}
	return res, false, nil
}

// requestLease is how long an Idempotency-Key claim may stay in progress:
// the longest a request can take (its Redis steps and its wait). A claim
// left behind by a node that died, or lost its Redis mid-request, frees
// itself after it.
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
