package fanout

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/redis/go-redis/v9"

	"github.com/herald-push/herald/internal/batch"
	"github.com/herald-push/herald/pkg/redisconn"
)

// publisher publishes Messages to Redis channels, classic (PUBLISH) or
// sharded (SPUBLISH): the sending half of both Redis buses, which embed it.
// While run runs, concurrent publishes share one pipeline (see
// internal/batch); a cluster client splits it per master.
type publisher struct {
	rdb     redis.UniversalClient
	sharded bool
	batch   *batch.Batcher[publishReq]
	batched atomic.Bool
	version WireVersion // of the frames it writes
}

type publishReq struct {
	channel string
	payload []byte
	once    bool
	done    chan publishRes
}

// onceCmd is a PUBLISH the Redis client must not run again after a failure
// (go-redis does not retry a command, nor a pipeline holding one, whose
// NoRetry is true). A plain send is at most once: a publish whose answer
// was lost may have run, and running it again on another connection hands
// its clients the message twice.
type onceCmd struct{ *redis.IntCmd }

func (onceCmd) NoRetry() bool { return true }

type publishRes struct {
	n   int
	err error
}

func newPublisher(rdb redis.UniversalClient, sharded bool, v WireVersion) *publisher {
	p := &publisher{rdb: rdb, sharded: sharded, version: v}
	p.batch = batch.New(256, p.publishBatch)
	return p
}

// run merges concurrent publishes until ctx ends.
func (p *publisher) run(ctx context.Context) {
	p.batched.Store(true)
	defer p.batched.Store(false)
	p.batch.Run(ctx)
}

// Send publishes m to node's channel and reports whether it listened.
func (p *publisher) Send(ctx context.Context, node string, m *Message) (bool, error) {
	n, err := p.publishOnce(ctx, nodeChannel(node), m, atMostOnce(m))
	return n > 0, err
}

// SendKey publishes m to key's channel and returns how many nodes heard it.
// A plain send's publish is never run twice; a stored one's may be, which
// its clients' cursors absorb, and that retry saves it from waiting for the
// next catch-up.
func (p *publisher) SendKey(ctx context.Context, key string, m *Message) (int, error) {
	return p.publishOnce(ctx, keyChannel(key), m, atMostOnce(m))
}

// atMostOnce reports whether m is a message its clients must get at most
// once: a send, topic post or broadcast that was not stored. Stored ones,
// and the nodes' own messages (reports, disconnects), may be published
// again after a failure.
func atMostOnce(m *Message) bool {
	switch m.Kind {
	case KindKeys, KindTopic, KindBroadcast:
		return m.Stored == nil
	}
	return false
}

// Publish publishes a topic or broadcast message to its channel.
func (p *publisher) Publish(ctx context.Context, m *Message) (int, error) {
	ch := BroadcastChannel
	if m.Kind == KindTopic {
		ch = topicChannel(m.Topic)
	}
	return p.publishOnce(ctx, ch, m, atMostOnce(m))
}

// processor is a client or a pipeline.
type processor interface {
	Process(ctx context.Context, cmd redis.Cmder) error
}

func (p *publisher) command(ctx context.Context, c processor, channel string, payload []byte, once bool) *redis.IntCmd {
	name := "publish"
	if p.sharded {
		name = "spublish"
	}
	cmd := redis.NewIntCmd(ctx, name, channel, payload)
	if once {
		_ = c.Process(ctx, onceCmd{cmd})
	} else {
		_ = c.Process(ctx, cmd)
	}
	return cmd
}

// publish returns how many subscribers Redis counted (in a cluster, on the
// master that owns the channel).
func (p *publisher) publish(ctx context.Context, channel string, m *Message) (int, error) {
	return p.publishOnce(ctx, channel, m, false)
}

// publishOnce is publish, run at most once when once is set.
func (p *publisher) publishOnce(ctx context.Context, channel string, m *Message, once bool) (int, error) {
	b, err := m.AppendWire(make([]byte, 0, 64+len(m.Data)), p.version)
	if err != nil {
		return 0, err
	}
	if !p.batched.Load() {
		n, err := p.command(ctx, p.rdb, channel, b, once).Result()
		if err != nil {
			return 0, fmt.Errorf("publish to %s: %w", channel, err)
		}
		return int(n), nil
	}
	req := publishReq{channel: channel, payload: b, once: once, done: make(chan publishRes, 1)}
	if err := p.batch.Do(ctx, req); err != nil {
		return 0, err
	}
	select {
	case res := <-req.done:
		return res.n, res.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// publishBatch sends concurrent publishes in one pipeline.
func (p *publisher) publishBatch(ctx context.Context, reqs []publishReq) {
	ctx, cancel := context.WithTimeout(ctx, redisconn.Timeout)
	defer cancel()
	cmds := make([]*redis.IntCmd, len(reqs))
	_, _ = p.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, q := range reqs {
			cmds[i] = p.command(ctx, pipe, q.channel, q.payload, q.once)
		}
		return nil
	})
	for i, q := range reqs {
		n, err := cmds[i].Result()
		if err != nil {
			err = fmt.Errorf("publish to %s: %w", q.channel, err)
		}
		q.done <- publishRes{n: int(n), err: err}
	}
}
