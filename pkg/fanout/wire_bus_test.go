package fanout_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/internal/wait"
	"github.com/herald-push/herald/pkg/fanout"
	"github.com/herald-push/herald/pkg/fanout/fanouttest"
)

// Nodes of this release and of the next run side by side: buses writing
// either version pass the whole conformance suite with each other (a and c
// write version 2, b version 1).
func TestRedisBusesWritingEitherWireVersionReachEachOther(t *testing.T) {
	rdb := redistest.Start(t).Client()
	fanouttest.Run(t, func(t *testing.T) func(string) fanout.Bus {
		return func(id string) fanout.Bus {
			v := fanout.WireV1
			if id[0]%2 == 1 {
				v = fanout.WireV2
			}
			return fanout.NewRedis(rdb, id, fanout.RedisOptions{WireVersion: v})
		}
	})
}

// What goes out on the channel: version 1 by default, which every node
// reads, nodes before wire versions included; version 2 when asked.
func TestABusWritesVersion1UnlessToldOtherwise(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	sub := srv.Client().Subscribe(ctx, "herald:node:listener")
	t.Cleanup(func() { sub.Close() })
	if _, err := sub.Receive(ctx); err != nil { // the subscription's confirmation
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		opts  fanout.RedisOptions
		start string
	}{
		{"default", fanout.RedisOptions{}, "\x01"},
		{"version 1", fanout.RedisOptions{WireVersion: fanout.WireV1}, "\x01"},
		{"version 2", fanout.RedisOptions{WireVersion: fanout.WireV2}, "\xff\xff\xff\xff\xff\x02\x01"},
	}
	for _, tt := range tests {
		bus := fanout.NewRedis(srv.Client(), "sender", tt.opts)
		m := &fanout.Message{Kind: fanout.KindKeys, Origin: "sender", ID: "m1", Keys: []string{"u1"}, Data: []byte(`1`)}
		if ok, err := bus.Send(ctx, "listener", m); err != nil || !ok {
			t.Fatalf("%s: send: %v %v", tt.name, ok, err)
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		got, err := sub.ReceiveMessage(rctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(got.Payload, tt.start) {
			t.Errorf("%s: the frame starts %x, want %x", tt.name, got.Payload[:min(len(got.Payload), 7)], tt.start)
		}
	}
}

// records keeps the log records a bus writes.
type records struct {
	mu   sync.Mutex
	msgs []string
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *records) WithGroup(string) slog.Handler            { return r }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, rec.Level.String()+" "+rec.Message)
	return nil
}

func (r *records) matching(s string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, m := range r.msgs {
		if strings.Contains(m, s) {
			out = append(out, m)
		}
	}
	return out
}

// A node two releases newer writes frames of a version this one does not
// read. Each is dropped, never handed on, and counted; the log says so
// once, not once a message; what this node reads still arrives.
func TestFramesOfAnUnknownVersionAreDroppedCountedAndLoggedOnce(t *testing.T) {
	single := redistest.Start(t)
	cluster := redistest.StartCluster(t)
	tests := []struct {
		name    string
		bus     func(id string, o fanout.RedisOptions) fanout.Bus
		publish func(ctx context.Context, channel string, payload []byte) error
	}{
		{"pub/sub",
			func(id string, o fanout.RedisOptions) fanout.Bus { return fanout.NewRedis(single.Client(), id, o) },
			func(ctx context.Context, ch string, p []byte) error { return single.Client().Publish(ctx, ch, p).Err() }},
		{"sharded pub/sub",
			func(id string, o fanout.RedisOptions) fanout.Bus {
				return fanout.NewRedisSharded(cluster.Client(), id, o)
			},
			func(ctx context.Context, ch string, p []byte) error {
				return cluster.Client().SPublish(ctx, ch, p).Err()
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := &records{}
			var unknown atomic.Int64
			bus := tt.bus("n1", fanout.RedisOptions{Logger: slog.New(logs), UnknownVersion: func() { unknown.Add(1) }})
			got := &handled{}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); bus.Run(ctx, got) }()
			t.Cleanup(func() { cancel(); <-done })
			wait.Until(t, 10*time.Second, "bus ready", bus.Ready)

			const future = 3
			for i := range future {
				m := &fanout.Message{Kind: fanout.KindKeys, Origin: "newer", ID: fmt.Sprint("future-", i), Keys: []string{"u1"}, Data: []byte(`1`)}
				b, _ := m.AppendWire(nil, fanout.WireV2)
				b[5] = byte(3 + i) // versions 3, 4, 5
				if err := tt.publish(ctx, "herald:node:n1", b); err != nil {
					t.Fatal(err)
				}
			}
			sender := tt.bus("n2", fanout.RedisOptions{})
			if ok, err := sender.Send(ctx, "n1", &fanout.Message{Kind: fanout.KindKeys, Origin: "n2", ID: "after"}); err != nil || !ok {
				t.Fatalf("send: %v %v", ok, err)
			}
			wait.Until(t, 5*time.Second, "the message after them arrives", func() bool { return got.has("after") })
			if n := unknown.Load(); n != future {
				t.Errorf("counted %d frames of an unknown version, want %d", n, future)
			}
			for i := range future {
				if id := fmt.Sprint("future-", i); got.has(id) {
					t.Errorf("%s was handed on", id)
				}
			}
			if l := logs.matching("wire version"); len(l) != 1 || !strings.HasPrefix(l[0], "WARN") {
				t.Errorf("logged %q, want one warning", l)
			}
			if l := logs.matching("undecodable"); len(l) != 0 {
				t.Errorf("logged %q: frames of another version are not malformed", l)
			}
		})
	}
}

// Anyone who may PUBLISH to Redis can send a node garbage: each frame is
// dropped, and the log says so at most once per interval with how many it
// dropped meanwhile, rather than a line per frame.
func TestAFloodOfMalformedFramesIsLoggedOnceNotOnceAFrame(t *testing.T) {
	single := redistest.Start(t)
	logs := &records{}
	bus := fanout.NewRedis(single.Client(), "n1", fanout.RedisOptions{Logger: slog.New(logs)})
	got := &handled{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); bus.Run(ctx, got) }()
	t.Cleanup(func() { cancel(); <-done })
	wait.Until(t, 10*time.Second, "bus ready", bus.Ready)
	for i := range 50 {
		if err := single.Client().Publish(ctx, "herald:node:n1", fmt.Sprint("garbage ", i)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	sender := fanout.NewRedis(single.Client(), "n2", fanout.RedisOptions{})
	if ok, err := sender.Send(ctx, "n1", &fanout.Message{Kind: fanout.KindKeys, Origin: "n2", ID: "after"}); err != nil || !ok {
		t.Fatalf("send: %v %v", ok, err)
	}
	wait.Until(t, 5*time.Second, "the message after them arrives", func() bool { return got.has("after") })
	if l := logs.matching("undecodable"); len(l) != 1 {
		t.Fatalf("50 malformed frames logged %d lines, want 1: %q", len(l), l)
	}
}
