package node

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/herald-push/herald/pkg/fanout"
	"github.com/herald-push/herald/pkg/inbox"
	"github.com/herald-push/herald/pkg/protocol"
	"github.com/herald-push/herald/pkg/redisconn"
)

// SendRequest is a message for the connections of some keys.
type SendRequest struct {
	Keys []string
	Data []byte // JSON
	// Store keeps the message in each key's inbox, so that clients that
	// are away get it when they come back.
	Store bool
	// Wait, with a stored message, waits until each key's message was
	// delivered or acknowledged, or Timeout (default 5s, at most MaxWait)
	// passed.
	Wait    inbox.Wait
	Timeout time.Duration
	// IdempotencyKey, when set, makes a retry within the TTL get the first
	// result instead of sending again. Caller scopes it: each caller has
	// keys of its own.
	IdempotencyKey string
	Caller         string
	// Client is the sender's address: whose stored bytes are counted when
	// there is no Caller (open mode).
	Client string
}

// SendResult says where a send went.
type SendResult struct {
	ID      string
	Online  []string // keys with a connection that was handed the message
	Offline []string
	// Results, for a stored send, is what became of each key's message.
	Results map[string]KeyResult
	// Replayed: the result of an earlier request with the same
	// IdempotencyKey; nothing was sent now.
	Replayed bool
}

// KeyResult is what became of a stored send for one key.
type KeyResult struct {
	ID     string // the stored id the key's clients see
	Status Status
}

// Status is how far a stored message got.
type Status uint8

const (
	StatusStored    Status = iota + 1 // kept in the key's inbox
	StatusDelivered                   // written to a connection of the key
	StatusAcked                       // acknowledged by a client of the key
	StatusNotStored                   // Redis could not store it: not sent (see PartialError)
)

var statusNames = [...]string{StatusStored: "stored", StatusDelivered: "delivered", StatusAcked: "acked", StatusNotStored: "not_stored"}

func (s Status) String() string {
	if int(s) < len(statusNames) && statusNames[s] != "" {
		return statusNames[s]
	}
	return "unknown"
}

// MarshalText and UnmarshalText keep a Status readable where results are
// stored for idempotent replays.
func (s Status) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

func (s *Status) UnmarshalText(b []byte) error {
	i := slices.Index(statusNames[:], string(b))
	if i <= 0 {
		return errors.New("unknown status " + string(b))
	}
	*s = Status(i)
	return nil
}

// Send delivers req.Data to every connection of req.Keys in the cluster,
// storing it first when asked (or when the node stores by default).
func (n *Node) Send(ctx context.Context, req SendRequest) (SendResult, error) {
	keys, err := n.checkSend(req)
	if err != nil {
		return SendResult{}, err
	}
	dedupe := ""
	if req.IdempotencyKey != "" {
		dedupe = req.Caller + ":" + req.IdempotencyKey
	}
	res, replayed, err := idempotent(ctx, n, req.IdempotencyKey, dedupe, func() (SendResult, error) {
		return n.send(ctx, keys, req, dedupe)
	})
	res.Replayed = replayed
	return res, err
}

// checkSend returns req's keys, validated and without duplicates, or why
// req cannot be sent.
func (n *Node) checkSend(req SendRequest) ([]string, error) {
	keys, err := CheckKeys(req.Keys, n.cfg.MaxKeysPerSend)
	if err != nil {
		return nil, err
	}
	if err := n.checkData(req.Data, n.cfg.MaxMessageBytes, "the limit"); err != nil {
		return nil, err
	}
	if req.Wait != inbox.WaitNone && req.Timeout < 0 {
		return nil, invalid("invalid_timeout", "the wait timeout must be positive")
	}
	return keys, nil
}

// CheckKeys returns the keys of a send, validated and without duplicates,
// or why they cannot be sent to (at most max).
func CheckKeys(keys []string, max int) ([]string, error) {
	switch {
	case len(keys) == 0:
		return nil, invalid("missing_key", `name the recipient with "key" or a non-empty "keys"`)
	case len(keys) > max:
		return nil, invalid("too_many_keys", "%d keys in one send, over the limit of %d", len(keys), max)
	case len(keys) == 1: // the common case needs no set
		if !protocol.ValidName(keys[0]) {
			return nil, InvalidName("invalid_key", "key", keys[0])
		}
		return keys, nil
	}
	out := make([]string, 0, len(keys))
	seen := make(map[string]struct{}, len(keys))
	for _, k := range keys {
		if !protocol.ValidName(k) {
			return nil, InvalidName("invalid_key", "key", k)
		}
		if _, dup := seen[k]; !dup {
			seen[k] = struct{}{}
			out = append(out, k)
		}
	}
	return out, nil
}

// checkData refuses data over max bytes, and data no WebSocket text frame
// may carry: a browser closes the connection with 1007 on invalid UTF-8,
// and stored data would do it again on every replay to every subscriber.
func (n *Node) checkData(data []byte, max int, limit string) error {
	if len(data) == 0 {
		return invalid("missing_data", `the message has no data`)
	}
	if len(data) > max {
		return Errorf(KindTooLarge, "message_too_large", "data is %d bytes, over %s of %d", len(data), limit, max)
	}
	if !protocol.ValidText(data) {
		return ErrInvalidUTF8
	}
	if !json.Valid(data) {
		// What herald's HTTP adapter passes on was decoded as JSON; a Go
		// program calling the engine may pass anything.
		return invalid("invalid_json", "data must be one JSON value")
	}
	return nil
}

// send stores (when asked), routes and, when asked, waits.
func (n *Node) send(ctx context.Context, keys []string, req SendRequest, dedupe string) (SendResult, error) {
	m := &fanout.Message{Kind: fanout.KindKeys, Origin: n.cfg.NodeID, ID: n.ids.next(),
		TS: time.Now().UnixMilli(), Keys: keys, Data: req.Data}
	store := req.Store || req.Wait != inbox.WaitNone || n.cfg.StoreByDefault
	rctx, cancel := context.WithTimeout(ctx, redisTimeout)
	defer cancel()
	if store {
		cost := inbox.StoredCost(len(keys), len(req.Data))
		if err := n.roomInRedis(cost); err != nil {
			return SendResult{}, err
		}
		if err := n.takeStored(req, len(keys)); err != nil {
			n.mem.Settled(cost)
			return SendResult{}, err
		}
		ids, prevs, err := n.inbox.Append(rctx, keys, inbox.Entry{Data: req.Data, Origin: n.cfg.NodeID, Wait: req.Wait, Dedupe: dedupe})
		n.mem.Settled(cost)
		if errors.Is(err, redisconn.ErrNotReplicated) {
			// Stored on the masters, not confirmed: not sent, because a
			// failover may still lose it and the retry would then reach
			// clients twice. The retry finds it and sends it once.
			n.metrics.notReplicated.Inc()
			return SendResult{}, ErrNotReplicated
		}
		if errors.Is(err, inbox.ErrPartiallyStored) {
			n.metrics.redisErrors.WithLabelValues("inbox_write").Inc()
			n.log.Warn("a stored send was stored for some of its keys only", "keys", len(keys), "err", err)
			m.Wait = uint8(req.Wait)
			return SendResult{}, n.sendPartial(rctx, m, ids, prevs)
		}
		if errors.Is(err, inbox.ErrFull) {
			return SendResult{}, n.storageFull(ErrStorageFull)
		}
		if err != nil {
			n.metrics.redisErrors.WithLabelValues("inbox_write").Inc()
			// An append that timed out may have stored the message, and it
			// then reaches its clients when they next read the inbox.
			return SendResult{}, redisFailed(err, "could not store the message")
		}
		n.metrics.stored.Add(uint64(len(keys)))
		m.Stored, m.Prevs, m.Wait = ids, prevs, uint8(req.Wait)
	}
	// Register before routing: a report may come back before SendKeys
	// returns.
	var delivered []<-chan struct{}
	if req.Wait != inbox.WaitNone {
		delivered = make([]<-chan struct{}, len(keys))
		for i, k := range keys {
			delivered[i] = n.waits.add(k, m.Stored[i])
			defer n.waits.remove(k, m.Stored[i])
		}
	}
	res, err := n.router.SendKeys(rctx, m)
	if res.RouteErr != nil {
		n.log.Warn("a send could not be published to every node holding its keys", "err", res.RouteErr)
	}
	out, err := n.sendResult(m, store, res, err)
	if err != nil {
		return SendResult{}, err
	}
	if store {
		out.Results = make(map[string]KeyResult, len(keys))
		for i, k := range keys {
			out.Results[k] = KeyResult{ID: m.Stored[i].String(), Status: StatusStored}
		}
		if req.Wait != inbox.WaitNone {
			n.await(ctx, req, m, delivered, out.Results)
		}
	}
	return out, nil
}

// PartialError is the answer to a stored send that was stored for some of
// its keys only (Redis ran out of memory midway, say): the stored ones were
// sent as usual, the others not. Results says which: StatusStored with its
// id, or StatusNotStored.
type PartialError struct {
	Err     *Error // partially_stored, for the transports
	Results map[string]KeyResult
}

func (e *PartialError) Error() string { return e.Err.Error() }
func (e *PartialError) Unwrap() error { return e.Err }

// sendPartial routes m to the keys whose entry was stored (ids[i] not
// zero) and returns the PartialError that says so per key. The send is not
// recorded as done: a retry with the same Idempotency-Key runs again, its
// append finds the entries stored the first time, and only the others are
// stored now.
func (n *Node) sendPartial(ctx context.Context, m *fanout.Message, ids, prevs []protocol.StoredID) error {
	results := make(map[string]KeyResult, len(m.Keys))
	stored := *m
	stored.Keys = make([]string, 0, len(m.Keys))
	for i, k := range m.Keys {
		if ids[i].IsZero() {
			results[k] = KeyResult{Status: StatusNotStored}
			continue
		}
		results[k] = KeyResult{ID: ids[i].String(), Status: StatusStored}
		stored.Keys = append(stored.Keys, k)
		stored.Stored = append(stored.Stored, ids[i])
		stored.Prevs = append(stored.Prevs, prevs[i])
	}
	n.metrics.stored.Add(uint64(len(stored.Keys)))
	res, err := n.router.SendKeys(ctx, &stored)
	// Stored: its keys' clients get it when they resume if routing failed.
	_, _ = n.sendResult(&stored, true, res, err)
	e := Errorf(KindUnavailable, "partially_stored",
		"Redis stored the message for %d of %d keys, and they were sent; the keys with status not_stored got nothing. "+
			"Retry with the same Idempotency-Key (only the keys not stored are stored and sent), or send to those keys alone",
		len(stored.Keys), len(m.Keys))
	return &PartialError{Err: retryLater(e, time.Second), Results: results}
}

// takeStored counts what storing req for keys costs Redis against its
// sender's stored-bytes rate, or says why it may not be stored now. Only a
// send that is carried out counts: a replayed answer costs nothing.
func (n *Node) takeStored(req SendRequest, keys int) error {
	if n.storeRate == nil {
		return nil
	}
	cost := inbox.StoredCost(keys, len(req.Data))
	if cost > int64(n.cfg.StoreBurst) {
		return Errorf(KindTooLarge, "store_too_large",
			"storing this send costs Redis about %d bytes (%d keys of %d bytes), over the store burst of %d; send to fewer keys at once",
			cost, keys, len(req.Data), n.cfg.StoreBurst)
	}
	who := req.Caller
	if who == "" {
		who = req.Client
	}
	if ok, wait := n.storeRate.AllowN(who, float64(cost), time.Now()); !ok {
		return retryLater(Errorf(KindTooMany, "store_rate_limited",
			"stored sends are limited to %d bytes of Redis per second per sender on this node; this one costs %d", n.cfg.StoreRate, cost), wait)
	}
	return nil
}

// sendResult turns where a message went into the send's answer, and counts
// it.
func (n *Node) sendResult(m *fanout.Message, store bool, res fanout.KeysResult, err error) (SendResult, error) {
	keys := m.Keys
	if err != nil {
		n.metrics.redisErrors.WithLabelValues("presence_lookup").Inc()
		if !store {
			return SendResult{}, unavailable("cluster presence unreachable; nothing was sent")
		}
		res.Online = make([]bool, len(keys)) // stored: its key's clients get it when they next resume
	}
	out := SendResult{ID: m.ID, Online: make([]string, 0, len(keys)), Offline: make([]string, 0)}
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
		// Counted here, logged by the caller: once per send, or once per
		// batch however many of its sends failed.
		n.metrics.redisErrors.WithLabelValues("publish").Inc()
		if !store && len(out.Online) == 0 {
			return SendResult{}, redisFailed(res.RouteErr, "cluster bus unreachable")
		}
	}
	n.metrics.dropOffline.Add(uint64(offline))
	n.metrics.accepted.WithLabelValues("send").Inc()
	n.metrics.sent.Add(1)
	return out, nil
}

// await waits, until the send's timeout, for each key's message to be
// delivered or acknowledged, and records what happened in results.
func (n *Node) await(ctx context.Context, req SendRequest, m *fanout.Message, delivered []<-chan struct{}, results map[string]KeyResult) {
	timeout := 5 * time.Second
	if req.Timeout > 0 {
		timeout = req.Timeout
	}
	ctx, cancel := context.WithTimeout(ctx, min(timeout, n.cfg.MaxWait))
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i, k := range m.Keys {
		wg.Go(func() {
			status := n.awaitKey(ctx, req.Wait, k, m.Stored[i], delivered[i])
			mu.Lock()
			results[k] = KeyResult{ID: m.Stored[i].String(), Status: status}
			mu.Unlock()
		})
	}
	wg.Wait()
}

// awaitKey returns how far one key's message got. Acks are read from the
// inbox's ack position, which any node may have moved, so an ack given
// after the client reconnected elsewhere counts too.
func (n *Node) awaitKey(ctx context.Context, wait inbox.Wait, key string, id protocol.StoredID, delivered <-chan struct{}) Status {
	status := StatusStored
	if wait == inbox.WaitDelivered {
		select {
		case <-delivered:
			return StatusDelivered
		case <-ctx.Done():
			return status
		}
	}
	poll := 20 * time.Millisecond
	for {
		select {
		case <-delivered:
			status = StatusDelivered
			delivered = nil
		case <-ctx.Done():
			return status
		case <-time.After(poll):
			acked, err := n.inbox.Acked(ctx, key)
			if err == nil && !id.After(acked) {
				return StatusAcked
			}
			poll = min(poll*2, 250*time.Millisecond)
		}
	}
}
