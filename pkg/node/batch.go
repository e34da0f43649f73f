package node

import (
	"context"
	"sync"
	"time"

	"github.com/herald-push/herald/pkg/fanout"
	"github.com/herald-push/herald/pkg/inbox"
)

// BatchParallel bounds how many items of one batch that are not plain
// sends run at once: enough for the node's Redis pipelines to merge them,
// not so many that one batch crowds out other callers.
const BatchParallel = 64

// BatchItem is one item of a Batch: a send, a topic publish or a
// broadcast; exactly one of its fields is set.
type BatchItem struct {
	Send      *SendRequest
	Publish   *PublishRequest // to Publish.Topic
	Broadcast *PublishRequest // its Topic is ignored
}

// BatchResult is what one item of a Batch did: Send for a send, Publish
// for a publish or a broadcast, or Err, the error the item's own call
// (Send, Publish, Broadcast) would have returned.
type BatchResult struct {
	Send    SendResult
	Publish PublishResult
	Err     error
}

// Batch carries out items as the calls Send, Publish and Broadcast would
// each, and answers them in order; one item's failure does not fail the
// others. Plain sends (not stored, no wait, no Idempotency-Key: see
// plainSend) are routed together, so that their presence lookups share one
// Redis call and their publishes share pipelines. Every other item runs on
// its own, at most BatchParallel at once, except that items with the same
// caller and Idempotency-Key run one after the other, in order, so that a
// repeat gets the first one's result rather than "in progress". Batch
// returns when every item is done.
func (n *Node) Batch(ctx context.Context, items []BatchItem) []BatchResult {
	results := make([]BatchResult, len(items))
	var plainAt []int // of items
	var plain []SendRequest
	var wg sync.WaitGroup
	sem := make(chan struct{}, BatchParallel)
	type chainKey struct{ caller, key string }
	previous := map[chainKey]chan struct{}{}
	for i, it := range items {
		run, caller, key, err := n.batchCall(it)
		if err != nil {
			results[i].Err = err
			continue
		}
		if it.Send != nil && n.plainSend(*it.Send) {
			plainAt = append(plainAt, i)
			plain = append(plain, *it.Send)
			continue
		}
		var after chan struct{}
		done := make(chan struct{})
		if key != "" {
			ck := chainKey{caller, key}
			after = previous[ck]
			previous[ck] = done
		}
		// Taken in item order, before the wait for the item ahead: the
		// head of every chain holds a slot before its followers do, so a
		// chain longer than BatchParallel still moves.
		sem <- struct{}{}
		wg.Go(func() {
			defer close(done)
			defer func() { <-sem }()
			if after != nil {
				<-after
			}
			results[i] = run(ctx)
		})
	}
	if len(plain) > 0 {
		sent, errs := n.sendPlain(ctx, plain)
		for j, i := range plainAt {
			results[i] = BatchResult{Send: sent[j], Err: errs[j]}
		}
	}
	wg.Wait()
	return results
}

// batchCall is the call that carries out it, with the caller and
// Idempotency-Key that chain it, or why it is no item.
func (n *Node) batchCall(it BatchItem) (run func(context.Context) BatchResult, caller, key string, err error) {
	set := 0
	for _, ok := range []bool{it.Send != nil, it.Publish != nil, it.Broadcast != nil} {
		if ok {
			set++
		}
	}
	if set != 1 {
		return nil, "", "", invalid("invalid_request", "a batch item is a send, a publish or a broadcast")
	}
	switch {
	case it.Send != nil:
		req := *it.Send
		return func(ctx context.Context) BatchResult {
			res, err := n.Send(ctx, req)
			return BatchResult{Send: res, Err: err}
		}, req.Caller, req.IdempotencyKey, nil
	case it.Publish != nil:
		req := *it.Publish
		return func(ctx context.Context) BatchResult {
			res, err := n.Publish(ctx, req)
			return BatchResult{Publish: res, Err: err}
		}, req.Caller, req.IdempotencyKey, nil
	default:
		req := *it.Broadcast
		return func(ctx context.Context) BatchResult {
			res, err := n.Broadcast(ctx, req)
			return BatchResult{Publish: res, Err: err}
		}, req.Caller, req.IdempotencyKey, nil
	}
}

// plainSend reports whether req is a plain send: at most once, nothing
// kept, nothing awaited, nothing recorded. The one place that says so.
func (n *Node) plainSend(req SendRequest) bool {
	return !req.Store && req.Wait == inbox.WaitNone && req.IdempotencyKey == "" && !n.cfg.StoreByDefault
}

// sendPlain routes plain sends together, answered in order: errs[i] is why
// reqs[i] failed, results[i] what it did otherwise.
func (n *Node) sendPlain(ctx context.Context, reqs []SendRequest) (results []SendResult, errs []error) {
	results, errs = make([]SendResult, len(reqs)), make([]error, len(reqs))
	var at []int // of reqs
	var ms []*fanout.Message
	now := time.Now().UnixMilli()
	for i, req := range reqs {
		keys, err := n.checkSend(req)
		if err != nil {
			errs[i] = err
			continue
		}
		at = append(at, i)
		ms = append(ms, &fanout.Message{Kind: fanout.KindKeys, Origin: n.cfg.NodeID, ID: n.ids.next(),
			TS: now, Keys: keys, Data: req.Data})
	}
	if len(ms) == 0 {
		return results, errs
	}
	rctx, cancel := context.WithTimeout(ctx, redisTimeout)
	defer cancel()
	routed, routeErrs := n.router.SendKeysMany(rctx, ms)
	unpublished := 0
	var first error
	for j, i := range at {
		results[i], errs[i] = n.sendResult(ms[j], false, routed[j], routeErrs[j])
		if err := routed[j].RouteErr; err != nil {
			if unpublished++; first == nil {
				first = err
			}
		}
	}
	if unpublished > 0 {
		// One line for the lot: a batch of thousands failing against a sick
		// Redis must not write thousands of lines.
		n.log.Warn("sends could not be published to every node holding their keys",
			"sends", unpublished, "of", len(reqs), "first_err", first)
	}
	return results, errs
}
