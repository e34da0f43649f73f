package httpapi

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/herald-push/herald/pkg/auth"
	"github.com/herald-push/herald/pkg/node"
)

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
	// The engine decides how the items run (node.Node.Batch): which sends
	// are routed together, how many run at once, which wait for others.
	// Here each is only parsed, authorised and answered.
	results := make([]batchResult, len(items))
	client := ""
	if caller == nil {
		client = c.ClientIP() // open mode: stored bytes are counted per address
	}
	var failed batchFailures
	defer failed.log(s.log, len(items))
	var at []int // of items, for each planned one
	planned := make([]node.BatchItem, 0, len(items))
	for i, raw := range items {
		it, err := s.planItem(caller, client, raw)
		if err != nil {
			results[i] = s.itemFailed(&failed, err)
			continue
		}
		at = append(at, i)
		planned = append(planned, it)
	}
	for j, res := range s.node.Batch(c.Request.Context(), planned) {
		i, it := at[j], planned[j]
		switch {
		case res.Err != nil:
			results[i] = s.itemFailed(&failed, res.Err)
		case it.Send != nil:
			results[i] = batchResult{Status: http.StatusOK, Result: sendAnswerOf(res.Send)}
		case it.Publish != nil:
			results[i] = batchResult{Status: http.StatusOK, Result: publishAnswer{ID: res.Publish.ID, Nodes: res.Publish.Nodes, Topic: res.Publish.Topic}}
		default:
			results[i] = batchResult{Status: http.StatusOK, Result: publishAnswer{ID: res.Publish.ID, Nodes: res.Publish.Nodes}}
		}
	}
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

// planItem decodes, validates and authorises one item, and returns it as
// the engine's; carried out, it answers what a single request would have.
func (s *Server) planItem(caller *auth.Caller, client string, raw json.RawMessage) (node.BatchItem, error) {
	var it batchItem
	if err := checkFields(raw, itemFields); err != nil {
		return node.BatchItem{}, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&it); err != nil {
		return node.BatchItem{}, badRequest("invalid_json", "the item is not a valid JSON object: %v", err)
	}
	if it.Data == nil {
		return node.BatchItem{}, badRequest("missing_data", `the item has no "data" field`)
	}
	if len(it.Data) > s.cfg.MaxMessageBytes {
		return node.BatchItem{}, tooLarge("data is %d bytes, over the limit of %d", len(it.Data), s.cfg.MaxMessageBytes)
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
		return node.BatchItem{}, badRequest("invalid_request", `an item is a send ("key" or "keys"), a publish ("topic") or a broadcast ("broadcast": true)`)
	}
	if it.Key == nil && it.Keys == nil && (it.Store || it.Wait != "" || it.TimeoutMS != 0) {
		return node.BatchItem{}, badRequest("unknown_field", `"store", "wait" and "timeout_ms" are for sends`)
	}
	switch {
	case it.Topic != nil:
		if caller != nil && !caller.CanPublish(*it.Topic) {
			return node.BatchItem{}, node.Errorf(node.KindForbidden, "forbidden", "api key %q may not publish to %s", name, *it.Topic)
		}
		return node.BatchItem{Publish: &node.PublishRequest{Topic: *it.Topic, Data: it.Data, IdempotencyKey: it.IdempotencyKey, Caller: name}}, nil
	case it.Broadcast:
		if caller != nil && !caller.Can(auth.ScopeBroadcast) {
			return node.BatchItem{}, node.Errorf(node.KindForbidden, "forbidden", "api key %q lacks the %s scope", name, auth.ScopeBroadcast)
		}
		return node.BatchItem{Broadcast: &node.PublishRequest{Data: it.Data, IdempotencyKey: it.IdempotencyKey, Caller: name}}, nil
	}
	if caller != nil && !caller.Can(auth.ScopeSend) {
		return node.BatchItem{}, node.Errorf(node.KindForbidden, "forbidden", "api key %q lacks the %s scope", name, auth.ScopeSend)
	}
	p := payload{Key: it.Key, Keys: it.Keys, Data: it.Data, Store: it.Store, Wait: it.Wait, TimeoutMS: it.TimeoutMS}
	if err := p.checkWait(); err != nil {
		return node.BatchItem{}, err
	}
	keys, err := p.keys()
	if err != nil {
		return node.BatchItem{}, err
	}
	return node.BatchItem{Send: &node.SendRequest{Keys: keys, Data: p.Data, Store: p.Store, Wait: waits[p.Wait],
		Timeout: time.Duration(p.TimeoutMS) * time.Millisecond, IdempotencyKey: it.IdempotencyKey, Caller: name, Client: client}}, nil
}
