package node

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	heraldjs "github.com/herald-push/herald/clients/js"
	"github.com/herald-push/herald/pkg/auth"
	"github.com/herald-push/herald/pkg/fanout"
	"github.com/herald-push/herald/pkg/idempotency"
	"github.com/herald-push/herald/pkg/inbox"
	"github.com/herald-push/herald/pkg/protocol"
	"github.com/herald-push/herald/pkg/redisconn"
)

//go:embed web
var webFiles embed.FS

// redisTimeout bounds the Redis work of one API request.
const redisTimeout = 5 * time.Second

func (n *Node) routes() (*gin.Engine, error) {
	r := gin.New()
	r.HandleMethodNotAllowed = true
	// gin trusts every proxy by default; herald trusts only the configured
	// ones, and only their X-Forwarded-For.
	r.ForwardedByClientIP = true
	r.RemoteIPHeaders = []string{"X-Forwarded-For"}
	if err := r.SetTrustedProxies(n.cfg.TrustedProxies); err != nil {
		return nil, fmt.Errorf("trusted proxies: %w", err)
	}
	r.Use(gin.CustomRecoveryWithWriter(io.Discard, func(c *gin.Context, err any) {
		n.log.Error("handler panicked", "path", c.Request.URL.Path, "panic", fmt.Sprint(err))
		n.fail(c, http.StatusInternalServerError, "internal", "internal error")
	}), n.logRequests)
	r.NoRoute(func(c *gin.Context) { n.fail(c, http.StatusNotFound, "not_found", "no such endpoint") })
	r.NoMethod(func(c *gin.Context) {
		n.fail(c, http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed here")
	})

	v1 := r.Group("/v1")
	v1.GET("/ws", n.handleWebSocket)
	v1.POST("/send", n.require(auth.ScopeSend), n.handleSend)
	v1.POST("/topics/:topic", n.handlePublish) // public topics: see handlePublish
	v1.POST("/broadcast", n.require(auth.ScopeBroadcast), n.handleBroadcast)
	v1.GET("/presence/:key", n.require(auth.ScopePresence), n.handlePresence)
	v1.GET("/cluster", n.require(auth.ScopeAdmin), n.handleCluster)
	v1.DELETE("/connections/:key", n.require(auth.ScopeAdmin), n.handleDisconnect)

	// The JavaScript client, so a page can import it from any node.
	r.GET("/v1/herald.js", func(c *gin.Context) { c.Data(http.StatusOK, "text/javascript; charset=utf-8", heraldjs.Source) })
	r.GET("/v1/herald.d.ts", func(c *gin.Context) { c.Data(http.StatusOK, "application/typescript; charset=utf-8", heraldjs.Types) })

	r.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	r.GET("/readyz", n.handleReady)
	r.GET("/metrics", gin.WrapH(promhttp.HandlerFor(n.metrics.reg, promhttp.HandlerOpts{})))

	web, _ := fs.Sub(webFiles, "web")
	r.GET("/", func(c *gin.Context) { c.FileFromFS("/", http.FS(web)) })
	// The console page is static; the API calls it makes need an API key
	// with the admin, presence and send scopes once keys are configured.
	r.GET("/console", func(c *gin.Context) { c.FileFromFS("console.html", http.FS(web)) })
	return r, nil
}

// require answers 401 or 403 unless the request carries an API key holding
// scope. Without configured keys the API is open.
func (n *Node) require(scope auth.Scope) gin.HandlerFunc {
	return func(c *gin.Context) {
		if n.cfg.APIKeys == nil {
			return
		}
		caller, ok := n.caller(c)
		if !ok {
			return
		}
		if !caller.Can(scope) {
			n.fail(c, http.StatusForbidden, "forbidden", fmt.Sprintf("api key %q lacks the %s scope", caller.Name(), scope))
			return
		}
		c.Set(callerNameKey, caller.Name())
	}
}

// callerNameKey holds the authenticated API key's name in a gin.Context.
const callerNameKey = "herald.caller"

// caller authenticates the request's API key, answering 401 when it has
// none or an unknown one.
func (n *Node) caller(c *gin.Context) (auth.Caller, bool) {
	key, ok := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
	if !ok || key == "" {
		c.Header("WWW-Authenticate", "Bearer")
		n.fail(c, http.StatusUnauthorized, "missing_api_key", "send an API key as Authorization: Bearer <key>")
		return auth.Caller{}, false
	}
	caller, ok := n.cfg.APIKeys.Authenticate(key)
	if !ok {
		c.Header("WWW-Authenticate", `Bearer error="invalid_token"`)
		n.fail(c, http.StatusUnauthorized, "invalid_api_key", "unknown API key")
		return auth.Caller{}, false
	}
	return caller, true
}

// logRequests logs each request at debug level with a request id, taken from
// X-Request-ID or made up, and echoes the id back. Query strings are left
// out: they may carry credentials.
func (n *Node) logRequests(c *gin.Context) {
	id := c.GetHeader("X-Request-ID")
	if id == "" || len(id) > 128 {
		id = n.reqIDs.next()
	}
	c.Header("X-Request-ID", id)
	start := time.Now()
	c.Next()
	n.log.Debug("request", "request_id", id, "method", c.Request.Method, "path", c.Request.URL.Path,
		"status", c.Writer.Status(), "duration", time.Since(start))
}

// apiError is the body of every error answer.
type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func (n *Node) fail(c *gin.Context, status int, code, msg string) {
	var e apiError
	e.Error.Code, e.Error.Message = code, msg
	n.metrics.badRequests.WithLabelValues(code).Inc()
	c.AbortWithStatusJSON(status, e)
}

// requestError is a bad request found while reading one.
type requestError struct {
	status        int
	code, message string
	retryAfter    string // seconds, for 429 and 503
}

func (e *requestError) Error() string { return e.message }

func apiErr(status int, code, msg string) *requestError {
	return &requestError{status: status, code: code, message: msg}
}

func badRequest(code, format string, args ...any) *requestError {
	return &requestError{status: http.StatusBadRequest, code: code, message: fmt.Sprintf(format, args...)}
}

func (n *Node) failWith(c *gin.Context, err error) {
	var re *requestError
	if errors.As(err, &re) {
		if re.retryAfter != "" {
			c.Header("Retry-After", re.retryAfter)
		}
		n.fail(c, re.status, re.code, re.message)
		return
	}
	n.log.Error("request failed", "path", c.Request.URL.Path, "err", err)
	n.fail(c, http.StatusInternalServerError, "internal", "internal error")
}

// payload is a request's message: its data and, for sends, its keys.
type payload struct {
	Key       *string         `json:"key"`
	Keys      []string        `json:"keys"`
	Data      json.RawMessage `json:"data"`
	Store     bool            `json:"store"`
	Wait      string          `json:"wait"`       // "", "delivered" or "acked"
	TimeoutMS int             `json:"timeout_ms"` // for wait

	// dedupe is the send's scoped Idempotency-Key, stored with each key's
	// entry so that a retry whose first attempt's answer was lost (a Redis
	// failover mid-request) still stores the message once.
	dedupe string
}

// readPayload reads a request body. A JSON body (Content-Type
// application/json) is an object holding "data" (and, with allowKeys, "key"
// or "keys"); any other body is the message as text, which becomes a JSON
// string, its key for a send taken from ?key=. A send without ?key= must
// be the JSON object whatever its Content-Type (curl -d sends form type).
func (n *Node) readPayload(c *gin.Context, allowKeys bool) (payload, error) {
	var p payload
	limit := int64(n.cfg.MaxMessageBytes)
	if allowKeys {
		// Room for the envelope and a full list of maximal keys.
		limit += int64(n.cfg.MaxKeysPerSend*(protocol.MaxNameLen+3) + 1024)
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return p, &requestError{status: http.StatusRequestEntityTooLarge, code: "message_too_large",
				message: fmt.Sprintf("request body over %d bytes", limit)}
		}
		return p, badRequest("unreadable_body", "reading the body failed: %v", err)
	}

	queryKey, hasQueryKey := c.GetQuery("key")
	return parsePayload(body, c.GetHeader("Content-Type"), queryKey, hasQueryKey, allowKeys, n.cfg.MaxMessageBytes)
}

// parsePayload turns a request body into a payload; see readPayload. It
// does no I/O, which is what lets it be fuzzed directly.
func parsePayload(body []byte, contentType, queryKey string, hasQueryKey, allowKeys bool, maxData int) (payload, error) {
	var p payload
	isJSON, err := jsonContentType(contentType)
	if err != nil {
		return p, err
	}
	switch {
	case isJSON && hasQueryKey:
		return p, badRequest("invalid_request", "with a JSON body, name the key in the body, not in ?key=")
	case isJSON, allowKeys && !hasQueryKey:
		if err := decodeStrict(body, &p); err != nil {
			if !isJSON {
				return p, badRequest(err.(*requestError).code, "%s (send JSON with Content-Type: application/json, or text with ?key=)", err.Error())
			}
			return p, err
		}
		if p.Data == nil {
			return p, badRequest("missing_data", `the body has no "data" field`)
		}
	default:
		if hasQueryKey && !allowKeys {
			return p, badRequest("invalid_request", "?key= is only for POST /v1/send")
		}
		if len(body) == 0 {
			return p, badRequest("missing_data", "the body is empty")
		}
		if !utf8.Valid(body) {
			return p, badRequest("invalid_text", "a text body must be UTF-8")
		}
		p.Data, _ = json.Marshal(string(body))
		if hasQueryKey {
			p.Key = &queryKey
		}
	}
	if !allowKeys && (p.Key != nil || p.Keys != nil || p.Store || p.Wait != "" || p.TimeoutMS != 0) {
		return p, badRequest("unknown_field", `this endpoint takes only "data"`)
	}
	switch p.Wait {
	case "", "delivered", "acked":
	default:
		return p, badRequest("invalid_wait", `wait must be "delivered" or "acked"`)
	}
	if p.TimeoutMS < 0 || (p.TimeoutMS > 0 && p.Wait == "") {
		return p, badRequest("invalid_timeout", `timeout_ms must be positive and goes with "wait"`)
	}
	if len(p.Data) > maxData {
		return p, &requestError{status: http.StatusRequestEntityTooLarge, code: "message_too_large",
			message: fmt.Sprintf("data is %d bytes, over the limit of %d", len(p.Data), maxData)}
	}
	return p, nil
}

func jsonContentType(header string) (bool, error) {
	if header == "" {
		return false, nil
	}
	mt, _, err := mime.ParseMediaType(header)
	if err != nil {
		return false, &requestError{status: http.StatusUnsupportedMediaType, code: "unsupported_media_type", message: "unparsable Content-Type"}
	}
	switch {
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		return true, nil
	case mt == "text/plain" || mt == "application/x-www-form-urlencoded":
		return false, nil
	}
	return false, &requestError{status: http.StatusUnsupportedMediaType, code: "unsupported_media_type",
		message: fmt.Sprintf("Content-Type %s is not accepted: use application/json or text/plain", mt)}
}

// decodeStrict decodes exactly one JSON object with no unknown fields.
func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if strings.HasPrefix(err.Error(), "json: unknown field") {
			return badRequest("unknown_field", "%s", strings.TrimPrefix(err.Error(), "json: "))
		}
		return badRequest("invalid_json", "the body is not a valid JSON object: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("invalid_json", "the body holds more than one JSON value")
	}
	return nil
}

// sendKeys returns the deduplicated, validated keys of a send.
func (n *Node) sendKeys(p payload) ([]string, error) {
	switch {
	case p.Key != nil && p.Keys != nil:
		return nil, badRequest("invalid_request", `give "key" or "keys", not both`)
	case p.Key != nil:
		if !protocol.ValidName(*p.Key) {
			return nil, invalidName("invalid_key", "key", *p.Key)
		}
		return []string{*p.Key}, nil
	case len(p.Keys) == 0:
		return nil, badRequest("missing_key", `name the recipient with "key" or a non-empty "keys"`)
	case len(p.Keys) > n.cfg.MaxKeysPerSend:
		return nil, badRequest("too_many_keys", "%d keys in one send, over the limit of %d", len(p.Keys), n.cfg.MaxKeysPerSend)
	}
	keys := make([]string, 0, len(p.Keys))
	seen := make(map[string]struct{}, len(p.Keys))
	for _, k := range p.Keys {
		if !protocol.ValidName(k) {
			return nil, invalidName("invalid_key", "key", k)
		}
		if _, dup := seen[k]; !dup {
			seen[k] = struct{}{}
			keys = append(keys, k)
		}
	}
	return keys, nil
}

// invalidName is the error for a key or topic outside the allowed alphabet.
func invalidName(code, what, name string) *requestError {
	return badRequest(code, "%s %q must be 1-128 characters of [A-Za-z0-9_.:@-]", what, clip(name))
}

// keyParam returns the {key} path parameter, or answers 400 and false.
func (n *Node) keyParam(c *gin.Context) (string, bool) {
	key := c.Param("key")
	if !protocol.ValidName(key) {
		n.failWith(c, invalidName("invalid_key", "key", key))
		return "", false
	}
	return key, true
}

// clip shortens a rejected name before it is echoed back.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

func (n *Node) handleSend(c *gin.Context) {
	start := time.Now()
	p, err := n.readPayload(c, true)
	if err != nil {
		n.failWith(c, err)
		return
	}
	keys, err := n.sendKeys(p)
	if err != nil {
		n.failWith(c, err)
		return
	}
	if key := c.GetHeader("Idempotency-Key"); key != "" {
		p.dedupe = idempotencyScope(c, key)
	}
	n.idempotent(c, func() (int, any) { return n.send(c.Request.Context(), keys, p) })
	n.metrics.sendDuration.WithLabelValues("send").Observe(time.Since(start).Seconds())
}

// sendResult is the answer to a send.
type sendResult struct {
	ID          string               `json:"id"`
	Online      []string             `json:"online"`
	Offline     []string             `json:"offline"`
	Connections int                  `json:"connections"`
	Results     map[string]keyResult `json:"results,omitempty"`
}

// keyResult is what became of a stored send for one key.
type keyResult struct {
	ID     string `json:"id"`     // the stored id the key's clients see
	Status string `json:"status"` // delivered, acked or stored
}

// send stores (when asked), routes and, when asked, waits. It returns the
// HTTP status and body.
func (n *Node) send(ctx context.Context, keys []string, p payload) (int, any) {
	m := &fanout.Message{Kind: fanout.KindKeys, Origin: n.cfg.NodeID, ID: n.ids.next(),
		TS: time.Now().UnixMilli(), Keys: keys, Data: p.Data}
	wait := map[string]inbox.Wait{"": inbox.WaitNone, "delivered": inbox.WaitDelivered, "acked": inbox.WaitAcked}[p.Wait]
	store := p.Store || wait != inbox.WaitNone || n.cfg.StoreByDefault
	rctx, cancel := context.WithTimeout(ctx, redisTimeout)
	defer cancel()
	if store {
		ids, prevs, err := n.inbox.Append(rctx, keys, inbox.Entry{Data: p.Data, Origin: n.cfg.NodeID, Wait: wait, Dedupe: p.dedupe})
		if errors.Is(err, redisconn.ErrNotReplicated) {
			// Stored on the masters, not confirmed: not sent (see
			// unconfirmed); the sender's retry finds it and sends it.
			n.metrics.notReplicated.Inc()
			return http.StatusServiceUnavailable, unconfirmed{}
		}
		if err != nil {
			n.metrics.redisErrors.WithLabelValues("inbox_write").Inc()
			return http.StatusServiceUnavailable, errorBody("unavailable", "could not store the message; nothing was sent")
		}
		n.metrics.stored.Add(uint64(len(keys)))
		m.Stored, m.Prevs, m.Wait = ids, prevs, uint8(wait)
	}
	// Register before routing: a report may come back before Send returns.
	var delivered []<-chan struct{}
	if wait != inbox.WaitNone {
		delivered = make([]<-chan struct{}, len(keys))
		for i, k := range keys {
			delivered[i] = n.waits.add(k, m.Stored[i])
			defer n.waits.remove(k, m.Stored[i])
		}
	}
	res, err := n.router.SendKeys(rctx, m)
	if err != nil {
		n.metrics.redisErrors.WithLabelValues("presence_lookup").Inc()
		if store {
			// Stored: its key's clients get it when they next resume.
			res.Online = make([]bool, len(keys))
		} else {
			return http.StatusServiceUnavailable, errorBody("unavailable", "cluster presence unreachable; nothing was sent")
		}
	}
	out := sendResult{ID: m.ID, Online: make([]string, 0, len(keys)), Offline: make([]string, 0), Connections: res.Conns}
	offline := 0
	for i, k := range keys {
		switch {
		case res.Online[i]:
			out.Online = append(out.Online, k)
		case res.Unreached != nil && res.Unreached[i]:
			out.Offline = append(out.Offline, k) // did not get it; not counted as offline
		default:
			out.Offline = append(out.Offline, k)
			offline++
		}
	}
	if res.RouteErr != nil {
		n.metrics.redisErrors.WithLabelValues("publish").Inc()
		n.log.Warn("a send could not be published to every node holding its keys", "err", res.RouteErr)
		if !store && len(out.Online) == 0 {
			return http.StatusServiceUnavailable, errorBody("unavailable", "cluster bus unreachable; nothing was sent")
		}
	}
	n.metrics.dropOffline.Add(uint64(offline))
	n.metrics.accepted.WithLabelValues("send").Inc()
	n.metrics.sent.Add(1)
	if store {
		out.Results = make(map[string]keyResult, len(keys))
		for i, k := range keys {
			out.Results[k] = keyResult{ID: m.Stored[i].String(), Status: "stored"}
		}
		if wait != inbox.WaitNone {
			n.await(ctx, p, wait, m, delivered, out.Results)
		}
	}
	return http.StatusOK, out
}

// await waits, until the send's timeout, for each key's message to be
// delivered or acknowledged, and records what happened in results.
func (n *Node) await(ctx context.Context, p payload, wait inbox.Wait, m *fanout.Message, delivered []<-chan struct{}, results map[string]keyResult) {
	timeout := 5 * time.Second
	if p.TimeoutMS > 0 {
		timeout = time.Duration(p.TimeoutMS) * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(ctx, min(timeout, n.cfg.MaxWait))
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i, k := range m.Keys {
		wg.Go(func() {
			status := n.awaitKey(ctx, wait, k, m.Stored[i], delivered[i])
			mu.Lock()
			results[k] = keyResult{ID: m.Stored[i].String(), Status: status}
			mu.Unlock()
		})
	}
	wg.Wait()
}

// awaitKey returns "acked", "delivered" or "stored" for one key. Acks are
// read from the inbox's ack position, which any node may have moved, so an
// ack given after the client reconnected elsewhere counts too.
func (n *Node) awaitKey(ctx context.Context, wait inbox.Wait, key string, id protocol.StoredID, delivered <-chan struct{}) string {
	status := "stored"
	if wait == inbox.WaitDelivered {
		select {
		case <-delivered:
			return "delivered"
		case <-ctx.Done():
			return status
		}
	}
	poll := 20 * time.Millisecond
	for {
		select {
		case <-delivered:
			status = "delivered"
			delivered = nil
		case <-ctx.Done():
			return status
		case <-time.After(poll):
			acked, err := n.inbox.Acked(ctx, key)
			if err == nil && !id.After(acked) {
				return "acked"
			}
			poll = min(poll*2, 250*time.Millisecond)
		}
	}
}

func errorBody(code, msg string) apiError {
	var e apiError
	e.Error.Code, e.Error.Message = code, msg
	return e
}

// idempotent runs a request once per Idempotency-Key: a retry within the
// TTL is answered with the first answer and carries out nothing. Only
// successful answers are kept; a failed request may be retried (a stored
// send's retry stores nothing twice: see payload.dedupe).
func (n *Node) idempotent(c *gin.Context, do func() (int, any)) {
	key := c.GetHeader("Idempotency-Key")
	if key == "" {
		status, body := do()
		if _, ok := body.(unconfirmed); ok {
			n.answerNotReplicated(c)
			return
		}
		n.answer(c, status, body)
		return
	}
	if len(key) > 255 || strings.ContainsFunc(key, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
		n.fail(c, http.StatusBadRequest, "invalid_idempotency_key", "Idempotency-Key must be 1-255 printable ASCII characters")
		return
	}
	scoped := idempotencyScope(c, key)
	rctx, cancel := context.WithTimeout(c.Request.Context(), redisTimeout)
	defer cancel()
	answer, claimed, err := n.idem.Begin(rctx, scoped, n.requestLease())
	switch {
	case errors.Is(err, idempotency.ErrInProgress):
		c.Header("Retry-After", "1")
		n.fail(c, http.StatusConflict, "idempotency_in_progress", "a request with this Idempotency-Key is still being carried out")
		return
	case err != nil:
		n.metrics.redisErrors.WithLabelValues("idempotency").Inc()
		n.fail(c, http.StatusServiceUnavailable, "unavailable", "could not check the Idempotency-Key; nothing was sent")
		return
	case !claimed:
		n.metrics.idemReplays.Add(1)
		c.Header("Idempotent-Replayed", "true")
		c.Data(http.StatusOK, "application/json; charset=utf-8", answer)
		return
	}
	status, body := do()
	if _, ok := body.(unconfirmed); ok {
		n.abortClaim(rctx, scoped)
		n.answerNotReplicated(c)
		return
	}
	if status != http.StatusOK {
		n.abortClaim(rctx, scoped)
		n.answer(c, status, body)
		return
	}
	b, _ := json.Marshal(body)
	if err := n.finishClaim(rctx, scoped, b); err != nil {
		if errors.Is(err, redisconn.ErrNotReplicated) {
			// Sent, but the answer itself may not survive a failover: a
			// retry gets it, or (if it was lost) sends again, which stores
			// nothing twice and routes the same message once more, which
			// clients drop by id.
			n.metrics.notReplicated.Inc()
			n.answerNotReplicated(c)
			return
		}
		n.log.Warn("could not record an idempotent answer; a retry would send again", "err", err)
	}
	c.Data(status, "application/json; charset=utf-8", b)
}

// idempotencyScope is an Idempotency-Key as stored: each API key has keys of
// its own.
func idempotencyScope(c *gin.Context, key string) string {
	return c.GetString(callerNameKey) + ":" + key
}

// answer writes a handler's status and body; error bodies are counted.
func (n *Node) answer(c *gin.Context, status int, body any) {
	if e, ok := body.(apiError); ok {
		n.metrics.badRequests.WithLabelValues(e.Error.Code).Inc()
	}
	c.JSON(status, body)
}

// handlePublish serves POST /v1/topics/{topic}. A request with an API key
// needs the publish scope for the topic. A request without one is accepted
// only for a public topic, within that topic's size limit and its rate per
// client IP; in development mode every topic is open, public ones still
// limited.
func (n *Node) handlePublish(c *gin.Context) {
	topic := c.Param("topic")
	if !protocol.ValidName(topic) {
		n.failWith(c, invalidName("invalid_topic", "topic", topic))
		return
	}
	public := slices.Contains(n.cfg.PublicTopics, topic)
	anonymous := c.GetHeader("Authorization") == ""
	switch {
	case public && anonymous:
		if ok, wait := n.publicRate.Allow(c.ClientIP()+" "+topic, time.Now()); !ok {
			n.failWith(c, tooFast("rate_limited", fmt.Sprintf("posting to %s is limited to %g per second per address", topic, n.cfg.PublicRate), wait))
			return
		}
	case n.cfg.APIKeys != nil:
		caller, ok := n.caller(c)
		if !ok {
			return
		}
		if !caller.CanPublish(topic) {
			n.fail(c, http.StatusForbidden, "forbidden", fmt.Sprintf("api key %q may not publish to %s", caller.Name(), topic))
			return
		}
		public = false // a publisher's post is not held to the public limits
	}
	limit := 0
	if public && anonymous {
		limit = n.cfg.PublicMaxMessageBytes
	}
	n.publish(c, "topic", &fanout.Message{Kind: fanout.KindTopic, Topic: topic}, limit)
}

func (n *Node) handleBroadcast(c *gin.Context) {
	n.publish(c, "broadcast", &fanout.Message{Kind: fanout.KindBroadcast}, 0)
}

// publish accepts a topic or broadcast message; maxData, when positive, is
// a tighter limit on its data than the node's. Like a send it may carry an
// Idempotency-Key; a post to a history topic keeps it with the entry, so a
// retry whose first answer was lost keeps the post once.
func (n *Node) publish(c *gin.Context, kind string, m *fanout.Message, maxData int) {
	start := time.Now()
	p, err := n.readPayload(c, false)
	if err != nil {
		n.failWith(c, err)
		return
	}
	if maxData > 0 && len(p.Data) > maxData {
		n.fail(c, http.StatusRequestEntityTooLarge, "message_too_large",
			fmt.Sprintf("data is %d bytes, over the public topic limit of %d", len(p.Data), maxData))
		return
	}
	if key := c.GetHeader("Idempotency-Key"); key != "" {
		p.dedupe = idempotencyScope(c, key)
	}
	n.idempotent(c, func() (int, any) { return n.publishMessage(c.Request.Context(), kind, m, p) })
	n.metrics.sendDuration.WithLabelValues(kind).Observe(time.Since(start).Seconds())
}

// publishMessage keeps m in its topic's history when the topic has one, then
// publishes it to the cluster.
func (n *Node) publishMessage(ctx context.Context, kind string, m *fanout.Message, p payload) (int, any) {
	m.Origin, m.ID, m.TS, m.Data = n.cfg.NodeID, n.ids.next(), time.Now().UnixMilli(), p.Data
	ctx, cancel := context.WithTimeout(ctx, redisTimeout)
	defer cancel()
	kept := false
	if m.Kind == fanout.KindTopic && slices.Contains(n.cfg.HistoryTopics, m.Topic) {
		// Kept in the topic's stream first: its id is what subscribers see
		// and resume after.
		ids, prevs, err := n.inbox.Append(ctx, []string{"#" + m.Topic}, inbox.Entry{Data: p.Data, Origin: n.cfg.NodeID, Dedupe: p.dedupe})
		if errors.Is(err, redisconn.ErrNotReplicated) {
			err = nil // --redis-min-replicas is for sends to keys; history is kept as it is
		}
		if err != nil {
			n.metrics.redisErrors.WithLabelValues("inbox_write").Inc()
			return http.StatusServiceUnavailable, errorBody("unavailable", "could not keep the message in the topic's history; nothing was sent")
		}
		m.Stored, m.Prevs = ids, prevs
		m.ID, m.TS = ids[0].String(), int64(ids[0].MS)
		kept = true
	}
	nodes, err := n.router.Publish(ctx, m)
	if err != nil {
		n.metrics.redisErrors.WithLabelValues("publish").Inc()
		if !kept {
			return http.StatusServiceUnavailable, errorBody("unavailable", "cluster bus unreachable; nothing was sent")
		}
		// Kept: subscribers read it from the history when they next resume
		// or see the gap it leaves, so the post is accepted, not refused.
		n.log.Warn("a history post was kept but could not be published live", "topic", m.Topic, "err", err)
		nodes = 0
	}
	n.metrics.accepted.WithLabelValues(kind).Inc()
	n.metrics.sent.Add(1)
	out := gin.H{"id": m.ID, "nodes": nodes}
	if m.Kind == fanout.KindTopic {
		out["topic"] = m.Topic
	}
	return http.StatusOK, out
}

func (n *Node) handlePresence(c *gin.Context) {
	key, ok := n.keyParam(c)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), redisTimeout)
	defer cancel()
	holders, err := n.store.Lookup(ctx, []string{key})
	if err != nil {
		n.metrics.redisErrors.WithLabelValues("presence_lookup").Inc()
		n.fail(c, http.StatusServiceUnavailable, "unavailable", "cluster presence unreachable")
		return
	}
	nodes, conns := make([]string, 0, len(holders[0])), 0
	for _, h := range holders[0] {
		nodes = append(nodes, h.Node)
		conns += h.Conns
	}
	c.JSON(http.StatusOK, gin.H{"key": key, "online": conns > 0, "connections": conns, "nodes": nodes})
}

func (n *Node) handleCluster(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), redisTimeout)
	defer cancel()
	nodes, err := n.store.Nodes(ctx)
	if err != nil {
		n.metrics.redisErrors.WithLabelValues("cluster").Inc()
		n.fail(c, http.StatusServiceUnavailable, "unavailable", "cluster presence unreachable")
		return
	}
	for i := range nodes {
		if nodes[i].ID == n.cfg.NodeID {
			nodes[i] = n.info() // fresher than the last heartbeat
		}
	}
	c.JSON(http.StatusOK, gin.H{"nodes": nodes})
}

func (n *Node) handleDisconnect(c *gin.Context) {
	key, ok := n.keyParam(c)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), redisTimeout)
	defer cancel()
	nodes, err := n.router.Disconnect(ctx, key, n.ids.next())
	if err != nil {
		n.metrics.redisErrors.WithLabelValues("disconnect").Inc()
		n.fail(c, http.StatusServiceUnavailable, "unavailable", "cluster unreachable; some connections may remain")
		return
	}
	c.JSON(http.StatusOK, gin.H{"key": key, "nodes": nodes})
}

func (n *Node) handleReady(c *gin.Context) {
	if why := n.notReady(); why != "" {
		n.fail(c, http.StatusServiceUnavailable, "not_ready", why)
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready"})
}
