package fanout

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// prober proves, once per interval, that a message published to the node's
// own channel comes back through its subscription: readiness means exactly
// that, and neither a PING nor Redis's count of subscribers proves it (a
// subscription can sit on a server that no longer receives the channel's
// messages, or on a connection that stopped reading).
type prober struct {
	node     string
	interval time.Duration
	log      *slog.Logger
	ready    *atomic.Bool
	// publish sends m to the node's own channel and returns how many
	// subscribers Redis counted.
	publish func(ctx context.Context, m *Message) (int, error)
	// stuck is called after two probes in a row that Redis accepted but
	// that did not come back: the subscription must be rebuilt.
	stuck func()

	mu   sync.Mutex
	seen uint64        // the newest probe that came back
	back chan struct{} // closed and replaced when a probe comes back
	// sent holds when the last few probes went out, by seq, so that a
	// probe coming back, even after its deadline, measures the round trip;
	// rtts are the last few round trips measured.
	sent [4]sentProbe
	rtts [4]time.Duration
	nrtt int
}

type sentProbe struct {
	seq uint64
	at  time.Time
}

// Bounds of a probe's deadline: at least the interval (a fast link answers
// well within it), at most maxProbeWait (beyond, the node is as good as cut
// off: not ready).
const (
	probeRTTs    = 3 // a probe may take this many recent round trips
	maxProbeWait = 10 * time.Second
)

func newProber(node string, interval time.Duration, log *slog.Logger, ready *atomic.Bool,
	publish func(context.Context, *Message) (int, error), stuck func()) *prober {
	return &prober{node: node, interval: interval, log: log, ready: ready, publish: publish, stuck: stuck, back: make(chan struct{})}
}

// received is told of every probe message the subscription delivers.
func (p *prober) received(m *Message) {
	if m.Origin != p.node {
		return
	}
	seq, err := strconv.ParseUint(m.ID, 10, 64)
	if err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.sent {
		if s.seq == seq {
			p.rtts[p.nrtt%len(p.rtts)] = time.Since(s.at)
			p.nrtt++
			break
		}
	}
	if seq > p.seen {
		p.seen = seq
		close(p.back)
		p.back = make(chan struct{})
	}
}

// deadline is how long the next probe may take: probeRTTs times the
// longest of the recent round trips, within [interval, maxProbeWait]. A
// fixed deadline of one interval leaves a node whose link to Redis is
// slower than that (a 700 ms path each way: 1.4 s) never ready, though
// every message reaches it.
func (p *prober) deadline() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	var rtt time.Duration
	for _, d := range p.rtts[:min(p.nrtt, len(p.rtts))] {
		rtt = max(rtt, d)
	}
	return min(max(probeRTTs*rtt, p.interval), maxProbeWait)
}

// sending records when probe seq goes out.
func (p *prober) sending(seq uint64) {
	p.mu.Lock()
	p.sent[seq%uint64(len(p.sent))] = sentProbe{seq: seq, at: time.Now()}
	p.mu.Unlock()
}

// cameBack waits until probe seq came back, or ctx ends.
func (p *prober) cameBack(ctx context.Context, seq uint64) bool {
	for {
		p.mu.Lock()
		seen, back := p.seen, p.back
		p.mu.Unlock()
		if seen >= seq {
			return true
		}
		select {
		case <-back:
		case <-ctx.Done():
			return false
		}
	}
}

// run probes until ctx ends, one at a time: a probe that takes longer
// than the interval is followed by the next at once, never overlapped.
func (p *prober) run(ctx context.Context) {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	misses := 0
	for seq := uint64(1); ; seq++ {
		pctx, cancel := context.WithTimeout(ctx, p.deadline())
		p.sending(seq)
		n, err := p.publish(pctx, &Message{Kind: kindProbe, Origin: p.node, ID: strconv.FormatUint(seq, 10)})
		ready := err == nil && n > 0 && p.cameBack(pctx, seq)
		cancel()
		if ctx.Err() != nil {
			p.ready.Store(false)
			return
		}
		if was := p.ready.Swap(ready); was != ready {
			p.log.Info("bus readiness changed", "ready", ready, "err", err, "subscribers", n)
		}
		if err == nil && !ready {
			if misses++; misses >= 2 {
				misses = 0
				p.stuck()
			}
		} else {
			misses = 0
		}
		select {
		case <-ctx.Done():
			p.ready.Store(false)
			return
		case <-t.C:
		}
	}
}
