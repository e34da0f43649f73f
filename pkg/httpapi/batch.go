package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/herald-push/herald/pkg/auth"
	"github.com/herald-push/herald/pkg/node"
)

// batchParallel bounds how many items of one batch run at once: enough for
// the engine's Redis pipelines to merge them, not so many that one batch
// crowds out other requests.
const batchParallel = 64

// batchItem is one item of POST /v1/batch: a send (key or keys), a topic
// publish (topic) or a broadcast (broadcast: true), with its own
// Idempotency-Key.
type batchItem struct {
	Key            *string         `json:"key"`
	Keys           []string        `json:"keys"`
	Topic          *string         `json:"topic"`
	Broadcast      bool            `json:"broadcast"`
	Data           json.RawMessage `json:"data"`
	Store          bool            `json:"store"`
	Wait           string          `json:"wait"`
	TimeoutMS      int             `json:"timeout_ms"`
	IdempotencyKey string          `json:"idempotency_key"`
}

// batchResult is one item's answer: its status and either its result (the
// body a single request would have had) or its error.
type batchResult struct {
	Status int          `json:"status"`
	Result any          `json:"result,omitempty"`
	Error  *errorDetail `json:"error,omitempty"`
}

// handleBatch serves POST /v1/batch: up to --max-batch items, each
// validated, authorised and carried out on its own, answered in order. One
// bad item does not fail the others.
func (s *Server) handleBatch(c *gin.Context) {
	start := time.Now()
	defer func() { s.metrics.batchSeconds.Observe(time.Since(start).Seconds()) }()
	var caller *auth.Caller
	if s.cfg.APIKeys != nil {
		cl, err := s.caller(c)
		if err != nil {
			s.fail(c, err)
			return
		}
		caller = &cl
	}
	items, reserved, err := s.readBatch(c)
	defer s.releaseBody(reserved)
	if err != nil {
		s.fail(c, err)
		return
	}
	results := make([]batchResult, len(items))
	ctx := c.Request.Context()
	// Sends without an idempotency_key go to the engine together, which
	// looks up their keys in one Redis call; every other item runs on its
	// own, up to batchParallel at once.
	var sendAt []int // of items
	var sends []node.SendRequest
	var wg sync.WaitGroup
	sem := make(chan struct{}, batchParallel)
	// Items that share an idempotency_key run one after the other, so the
	// repeat gets the first one's result rather than "in progress".
	previous := map[string]chan struct{}{}
	client := ""
	if caller == nil {
		client = c.ClientIP() // open mode: stored bytes are counted per address
	}
	var failed batchFailures
	defer failed.log(s.log, len(items))
	for i, raw := range items {
		it, err := s.planItem(caller, client, raw)
		if err != nil {
			results[i] = s.itemFailed(&failed, err)
			continue
		}
		if it.send != nil && it.send.IdempotencyKey == "" {
			sendAt = append(sendAt, i)
			sends = append(sends, *it.send)
			continue
		}
		var after chan struct{}
		done := make(chan struct{})
		if key := it.idempotencyKey; key != "" {
			after = previous[key]
			previous[key] = done
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer close(done)
			if after != nil {
				<-after
			}
			defer func() { <-sem }()
			res, err := it.run(ctx)
			if err != nil {
				results[i] = s.itemFailed(&failed, err)
				return
			}
			results[i] = batchResult{Status: http.StatusOK, Result: res}
		})
	}
	if len(sends) > 0 {
		answers, errs := s.node.SendMany(ctx, sends)
		for j, i := range sendAt {
			if errs[j] != nil {
				results[i] = s.itemFailed(&failed, errs[j])
				continue
			}
			results[i] = batchResult{Status: http.StatusOK, Result: sendAnswerOf(answers[j])}
		}
	}
	wg.Wait()
	c.JSON(http.StatusOK, gin.H{"results": results})
}

// itemFailed is a failed item's answer, in the shape of a request's error.
func (s *Server) itemFailed(failed *batchFailures, err error) batchResult {
	e := node.AsError(err)
	if e.Kind == node.KindInternal {
		failed.add(err)
	}
	s.metrics.rejected.WithLabelValues(e.Code).Inc()
	d := detailOf(e, err)
	return batchResult{Status: statusOf[e.Kind], Error: &d}
}

// batchFailures gathers a batch's internal errors, so that a batch whose
// items all fail (Redis gone) logs one line, not one per item.
type batchFailures struct {
	mu    sync.Mutex
	n     int
	first error
}

func (f *batchFailures) add(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n++; f.first == nil {
		f.first = err
	}
}

// log writes the batch's one line, if anything failed; items stay
// answered with their own errors.
func (f *batchFailures) log(l *slog.Logger, items int) {
	if f.n > 0 {
		l.Error("batch items failed", "failed", f.n, "items", items, "first_err", f.first)
	}
}

// readBatch reads {"items":[...]} and returns each item undecoded, so that
// a malformed item is that item's error alone.
// A batch is JSON only, and says so: a cross-site page may post text/plain
// without asking, and its batch could name any key. The caller gives the
// body's reserved bytes back with releaseBody.
func (s *Server) readBatch(c *gin.Context) ([]json.RawMessage, int64, error) {
	isJSON, err := jsonContentType(c.GetHeader("Content-Type"))
	if err != nil {
		return nil, 0, err
	}
	if !isJSON {
		return nil, 0, errNotJSON
	}
	body, reserved, err := s.readBody(c, s.cfg.BatchBodyLimit(s.cfg.MaxMessageBytes), nil)
	if err != nil {
		return nil, reserved, err
	}
	var envelope struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := decodeStrict(body, &envelope, envelopeFields); err != nil {
		return nil, reserved, err
	}
	switch {
	case len(envelope.Items) == 0:
		return nil, reserved, badRequest("missing_items", `the body has no "items", or none`)
	case len(envelope.Items) > s.cfg.MaxBatch:
		return nil, reserved, badRequest("too_many_items", "%d items in one batch, over the limit of %d", len(envelope.Items), s.cfg.MaxBatch)
	}
	return envelope.Items, reserved, nil
}

// itemPlan is a validated item: a send for the engine's SendMany, or
// something to run on its own.
type itemPlan struct {
	send           *node.SendRequest
	run            func(context.Context) (any, error)
	idempotencyKey string
}

// planItem decodes, validates and authorises one item; running it answers
// what a single request would have.
func (s *Server) planItem(caller *auth.Caller, client string, raw json.RawMessage) (itemPlan, error) {
	var it batchItem
	if err := checkFields(raw, itemFields); err != nil {
		return itemPlan{}, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&it); err != nil {
		return itemPlan{}, badRequest("invalid_json", "the item is not a valid JSON object: %v", err)
	}
	if it.Data == nil {
		return itemPlan{}, badRequest("missing_data", `the item has no "data" field`)
	}
	if len(it.Data) > s.cfg.MaxMessageBytes {
		return itemPlan{}, tooLarge("data is %d bytes, over the limit of %d", len(it.Data), s.cfg.MaxMessageBytes)
	}
	name := ""
	if caller != nil {
		name = caller.Name()
	}
	kinds := 0
	for _, set := range []bool{it.Key != nil || it.Keys != nil, it.Topic != nil, it.Broadcast} {
		if set {
			kinds++
		}
	}
	if kinds != 1 {
		return itemPlan{}, badRequest("invalid_request", `an item is a send ("key" or "keys"), a publish ("topic") or a broadcast ("broadcast": true)`)
	}
	if it.Key == nil && it.Keys == nil && (it.Store || it.Wait != "" || it.TimeoutMS != 0) {
		return itemPlan{}, badRequest("unknown_field", `"store", "wait" and "timeout_ms" are for sends`)
	}
	plan := itemPlan{idempotencyKey: it.IdempotencyKey}
	switch {
	case it.Topic != nil:
		if caller != nil && !caller.CanPublish(*it.Topic) {
			return itemPlan{}, node.Errorf(node.KindForbidden, "forbidden", "api key %q may not publish to %s", name, *it.Topic)
		}
		plan.run = func(ctx context.Context) (any, error) {
			res, err := s.node.Publish(ctx, node.PublishRequest{Topic: *it.Topic, Data: it.Data, IdempotencyKey: it.IdempotencyKey, Caller: name})
			if err != nil {
				return nil, err
			}
			return publishAnswer{ID: res.ID, Nodes: res.Nodes, Topic: res.Topic}, nil
		}
		return plan, nil
	case it.Broadcast:
		if caller != nil && !caller.Can(auth.ScopeBroadcast) {
			return itemPlan{}, node.Errorf(node.KindForbidden, "forbidden", "api key %q lacks the %s scope", name, auth.ScopeBroadcast)
		}
		plan.run = func(ctx context.Context) (any, error) {
			res, err := s.node.Broadcast(ctx, node.PublishRequest{Data: it.Data, IdempotencyKey: it.IdempotencyKey, Caller: name})
			if err != nil {
				return nil, err
			}
			return publishAnswer{ID: res.ID, Nodes: res.Nodes}, nil
		}
		return plan, nil
	}
	if caller != nil && !caller.Can(auth.ScopeSend) {
		return itemPlan{}, node.Errorf(node.KindForbidden, "forbidden", "api key %q lacks the %s scope", name, auth.ScopeSend)
	}
	p := payload{Key: it.Key, Keys: it.Keys, Data: it.Data, Store: it.Store, Wait: it.Wait, TimeoutMS: it.TimeoutMS}
	if err := p.checkWait(); err != nil {
		return itemPlan{}, err
	}
	keys, err := p.keys()
	if err != nil {
		return itemPlan{}, err
	}
	req := node.SendRequest{Keys: keys, Data: p.Data, Store: p.Store, Wait: waits[p.Wait],
		Timeout: time.Duration(p.TimeoutMS) * time.Millisecond, IdempotencyKey: it.IdempotencyKey, Caller: name, Client: client}
	plan.send = &req
	plan.run = func(ctx context.Context) (any, error) {
		res, err := s.node.Send(ctx, req)
		if err != nil {
			return nil, err
		}
		return sendAnswerOf(res), nil
	}
	return plan, nil
}
