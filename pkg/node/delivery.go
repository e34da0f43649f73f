package node

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/herald-push/herald/pkg/hub"
	"github.com/herald-push/herald/pkg/inbox"
	"github.com/herald-push/herald/pkg/ordering"
	"github.com/herald-push/herald/pkg/protocol"
	"github.com/herald-push/herald/pkg/reconcile"
)

// resubscribed runs when the bus comes back after losing Redis: messages
// routed here meanwhile were lost in pub/sub, so every connection reads its
// streams from where it is.
func (n *Node) resubscribed() {
	conns := n.hub.Conns()
	n.log.Info("bus resubscribed; catching every connection up from its inbox", "connections", len(conns))
	for _, c := range conns {
		for _, s := range c.MarkBehind() {
			go n.catcher.CatchUp(n.connCtx, c, c.Key, s, ordering.FromLast, protocol.StoredID{})
		}
	}
}

// delivered takes a delivery notice from the connection that first wrote
// its message. A sender waiting on this node learns it at once; one waiting
// on another node through the bus, from the reporting goroutine. A report
// that finds that queue full is dropped, and its sender then sees "stored"
// rather than "delivered" — never a lost message.
func (n *Node) delivered(notice *ordering.Notice) {
	if notice.Origin == n.cfg.NodeID {
		n.waits.delivered(notice.Key, notice.ID)
		return
	}
	select {
	case n.reports <- notice:
	default:
		n.log.Warn("delivery report dropped: report queue full")
	}
}

// sendReports publishes delivery reports for senders waiting on other
// nodes: every report waiting in the queue goes in one round trip, so that
// on a slow link they keep up with the rate sends arrive at.
func (n *Node) sendReports(ctx context.Context) {
	const most = 1024 // per round trip: bounds one message's size
	batch := make([]*ordering.Notice, 0, most)
	for {
		select {
		case <-ctx.Done():
			return
		case notice := <-n.reports:
			batch = append(batch[:0], notice)
		drain:
			for len(batch) < most {
				select {
				case notice := <-n.reports:
					batch = append(batch, notice)
				default:
					break drain
				}
			}
			rctx, cancel := context.WithTimeout(ctx, redisTimeout)
			if err := n.router.ReportDeliveredMany(rctx, batch); err != nil {
				n.metrics.redisErrors.WithLabelValues("delivery_report").Inc()
			}
			cancel()
			clear(batch) // let the notices go
		}
	}
}

// acked records a client's acknowledgement. A client may only acknowledge
// what its connection was sent: an id past that is ignored, so a client
// cannot skip messages it never saw.
func (n *Node) acked(c *hub.Conn, id protocol.StoredID) {
	if id.After(c.Last(ordering.KeyStream)) {
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
