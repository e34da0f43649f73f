package node

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/herald-push/herald/pkg/hub"
	"github.com/herald-push/herald/pkg/inbox"
	"github.com/herald-push/herald/pkg/protocol"
	"github.com/herald-push/herald/pkg/reconcile"
)

// replayPage is how many stored messages one inbox read returns.
const replayPage = 256

// catchUp replays what c missed on one of its streams ("" its key's inbox,
// "#<topic>" a history topic), then lets that stream's live messages through
// again (see hub.Conn). since is where a connecting client resumes; nil
// resumes a key after its acknowledged position and gives a topic's newest
// HistoryReplay messages when connecting, or reads after c.Last(stream) for a
// connection that fell behind. A connection whose stream cannot be read for a while is closed with
// 1013 so that the client resumes elsewhere, which loses nothing.
func (n *Node) catchUp(ctx context.Context, c *hub.Conn, stream string, since *protocol.StoredID, connecting bool) {
	key := c.Key
	if stream != "" {
		key = stream
	}
	first := connecting
	failures := 0
	for !c.Closed() {
		var (
			start   protocol.StoredID
			entries []inbox.Entry
			err     error
		)
		rctx, cancel := context.WithTimeout(ctx, redisTimeout)
		switch {
		case first && since != nil:
			start = *since
			entries, err = n.inbox.After(rctx, key, start, replayPage)
		case first && stream == "":
			start, entries, err = n.inbox.Pending(rctx, key, replayPage)
		case first:
			// A new subscriber sees the newest HistoryReplay messages; with
			// replay off it starts after the newest, which it is not shown.
			entries, err = n.inbox.Tail(rctx, key, max(n.cfg.HistoryReplay, 1))
			if err == nil && n.cfg.HistoryReplay < 0 && len(entries) > 0 {
				start, entries = entries[len(entries)-1].ID, nil
			}
		default:
			entries, err = n.inbox.After(rctx, key, c.Last(stream), replayPage)
		}
		cancel()
		if err != nil {
			n.metrics.redisErrors.WithLabelValues("inbox_read").Inc()
			if failures++; failures > 10 {
				n.log.Warn("cannot read the stored messages of a connection; closing it so it resumes elsewhere", "err", err)
				c.Close(protocol.CloseTryAgainLater, "try again later: stored messages unreadable")
				return
			}
			time.Sleep(time.Duration(failures) * 200 * time.Millisecond)
			continue
		}
		failures = 0
		first = false
		ds := make([]hub.Delivery, len(entries))
		for i, e := range entries {
			ds[i] = storedDelivery(c.Key, stream, e)
		}
		n.hub.Replay(c, stream, start, nil) // the start point, even when nothing follows it
		for len(ds) > 0 {
			used := n.hub.Replay(c, stream, start, ds)
			n.metrics.replayed.Add(uint64(used))
			ds = ds[used:]
			if len(ds) > 0 && !n.hub.WaitRoom(ctx, c) {
				return
			}
		}
		if len(entries) == replayPage && (stream == "" || since != nil || !connecting) {
			continue // there may be more
		}
		for {
			switch n.hub.EndCatchUp(c, stream) {
			case hub.CaughtUp:
				return
			case hub.NeedRoom:
				if !n.hub.WaitRoom(ctx, c) {
					return
				}
				continue
			}
			break // NeedRead
		}
	}
}

// storedDelivery is what a connection receives for a stored entry of its
// key's inbox (stream "") or of a history topic.
func storedDelivery(key, stream string, e inbox.Entry) hub.Delivery {
	d := hub.Delivery{ID: e.ID.String(), Stored: e.ID, Prev: e.Prev, Stream: stream, TS: int64(e.ID.MS), Data: e.Data}
	if stream == "" && e.Wait != inbox.WaitNone {
		d.Notice = &hub.Notice{Origin: e.Origin, Key: key, ID: e.ID}
	}
	return d
}

// resubscribed runs when the bus comes back after losing Redis: messages
// routed here meanwhile were lost in pub/sub, so every connection reads its
// inbox from where it is.
func (n *Node) resubscribed() {
	conns := n.hub.Conns()
	n.log.Info("bus resubscribed; catching every connection up from its inbox", "connections", len(conns))
	for _, c := range conns {
		for _, stream := range n.hub.MarkBehind(c) {
			go n.catchUp(n.connCtx, c, stream, nil, false)
		}
	}
}

// reportDelivered hands a delivery report to the reporting goroutine; a
// report that finds the queue full is dropped, and its sender then sees
// "stored" rather than "delivered" — never a lost message.
func (n *Node) reportDelivered(notice *hub.Notice) {
	select {
	case n.reports <- notice:
	default:
		n.log.Warn("delivery report dropped: report queue full")
	}
}

func (n *Node) sendReports(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case notice := <-n.reports:
			rctx, cancel := context.WithTimeout(ctx, redisTimeout)
			if err := n.router.ReportDelivered(rctx, notice); err != nil {
				n.metrics.redisErrors.WithLabelValues("delivery_report").Inc()
			}
			cancel()
		}
	}
}

// acked records a client's acknowledgement. A client may only acknowledge
// what its connection was sent: an id past that is ignored, so a client
// cannot skip messages it never saw.
func (n *Node) acked(c *hub.Conn, id protocol.StoredID) {
	if id.After(c.Last("")) {
		return
	}
	n.metrics.acks.Add(1)
	n.acks.add(c.Key, id)
}

// ackBuffer batches acknowledgements: each flush writes the newest id per
// key, so a client acking every message costs one write per flush.
type ackBuffer struct {
	inbox inbox.Store
	log   *slog.Logger
	loop  *reconcile.Loop

	mu      sync.Mutex
	pending map[string]protocol.StoredID
}

func newAckBuffer(in inbox.Store, log *slog.Logger) *ackBuffer {
	a := &ackBuffer{inbox: in, log: log, pending: make(map[string]protocol.StoredID)}
	a.loop = reconcile.New(a.flush, time.Second)
	return a
}

func (a *ackBuffer) add(key string, id protocol.StoredID) {
	a.mu.Lock()
	if id.After(a.pending[key]) {
		a.pending[key] = id
	}
	a.mu.Unlock()
	a.loop.Mark(key)
}

func (a *ackBuffer) flush(ctx context.Context, keys []string) error {
	for _, k := range keys {
		a.mu.Lock()
		id, ok := a.pending[k]
		delete(a.pending, k)
		a.mu.Unlock()
		if !ok {
			continue
		}
		if err := a.inbox.Ack(ctx, k, id); err != nil {
			a.add(k, id) // keep it for the retry
			return err
		}
	}
	return nil
}

// waiters are the senders on this node waiting for "delivered" reports.
type waiters struct {
	mu sync.Mutex
	m  map[waitKey]chan struct{}
}

type waitKey struct {
	key string
	id  protocol.StoredID
}

func newWaiters() *waiters { return &waiters{m: make(map[waitKey]chan struct{})} }

// add registers interest in key's stored message id before it is routed, so
// that no report can come too early.
func (w *waiters) add(key string, id protocol.StoredID) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	ch := make(chan struct{})
	w.m[waitKey{key, id}] = ch
	return ch
}

func (w *waiters) remove(key string, id protocol.StoredID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.m, waitKey{key, id})
}

// delivered closes the waiter of key's message id, if any still waits.
func (w *waiters) delivered(key string, id protocol.StoredID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if ch, ok := w.m[waitKey{key, id}]; ok {
		close(ch)
		delete(w.m, waitKey{key, id})
	}
}
