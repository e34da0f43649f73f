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
// routed here meanwhile were lost in pub/sub.
func (n *Node) resubscribed() { n.catchUpAll("resubscribed") }

// catchUpAll makes every connection read its streams from where it is:
// delivery to this node may have been interrupted (see keepPresence), and
// a stored message that was not routed here meanwhile would otherwise wait
// for a later send to show the gap. A stream already catching up reads
// once more instead of twice at once. reason is one of resubscribed,
// forgotten, heartbeat_gap and fence_lifted.
func (n *Node) catchUpAll(reason string) {
	conns := n.hub.Conns()
	n.metrics.catchUps.WithLabelValues(reason).Inc()
	n.log.Info("delivery may have been interrupted; catching every connection up from its stored streams", "reason", reason, "connections", len(conns))
	for _, c := range conns {
		for _, s := range c.MarkBehind() {
			go n.catcher.CatchUp(n.connCtx, c, c.Key, s, ordering.FromLast, protocol.StoredID{})
		}
	}
}

// reaped is told by presence of each dead node this node reaped.
func (n *Node) reaped(node string, killed int, err error) {
	if err != nil {
		n.log.Warn("reaped a dead node but could not drop its subscriptions in Redis; sends to it count as received until its connection times out",
			"dead_node", node, "err", err)
		return
	}
	n.log.Info("reaped a dead node", "dead_node", node, "subscriptions_dropped", killed)
}

// fence closes the node's clients once its presence heartbeats have failed
// for a while: its keys are about to read offline (or already do) on every
// other node, and what is sent to them no longer reaches this node, so its
// clients are better served by another. It lifts at the next good
// heartbeat.
type fence struct {
	after time.Duration
	fire  func()

	mu     sync.Mutex
	timer  *time.Timer
	gen    uint64 // bumped by ok, so a timer that fired late does nothing
	fenced bool
}

// failed arms the fence to fire after from the last good heartbeat at
// lastOK, unless it is armed or up already.
func (f *fence) failed(lastOK time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.timer != nil || f.fenced || lastOK.IsZero() {
		return
	}
	gen := f.gen
	f.timer = time.AfterFunc(max(f.after-time.Since(lastOK), 0), func() {
		f.mu.Lock()
		if f.gen != gen {
			f.mu.Unlock()
			return
		}
		f.fenced, f.timer = true, nil
		f.mu.Unlock()
		f.fire()
	})
}

// ok disarms the fence after a good heartbeat and reports whether it was
// up.
func (f *fence) ok() (lifted bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gen++
	if f.timer != nil {
		f.timer.Stop()
		f.timer = nil
	}
	lifted, f.fenced = f.fenced, false
	return lifted
}

// fenceOff closes every client with 1013 and drops the bus subscription.
func (n *Node) fenceOff() {
	conns := n.hub.Conns()
	n.metrics.fences.Add(1)
	n.log.Warn("presence heartbeats failed for the fence delay; closing every client so it reconnects to a node that reaches Redis",
		"fence_after", n.cfg.FenceAfter, "connections", len(conns))
	n.router.RenewSubscription("node lost Redis (fenced)")
	for _, c := range conns {
		c.Close(protocol.CloseTryAgainLater, fenceReason)
	}
}

// fenceReason is the close reason clients of a fenced node get.
const fenceReason = "node lost Redis; reconnect"

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
