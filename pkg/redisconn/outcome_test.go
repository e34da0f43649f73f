package redisconn_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/internal/wait"
	"github.com/herald-push/herald/pkg/redisconn"
)

// A command's failure says whether it may have run: a sender is told
// "nothing was sent" only when Redis surely did not run it. Each case makes
// the failure happen for real, against a real redis-server.
func TestAFailedCommandSaysWhetherItMayHaveRun(t *testing.T) {
	fast := func(addr string, tune ...func(*redis.Options)) *redis.Client {
		o := &redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 300 * time.Millisecond,
			ReadTimeout: 300 * time.Millisecond, WriteTimeout: 300 * time.Millisecond}
		for _, f := range tune {
			f(o)
		}
		c := redis.NewClient(o)
		t.Cleanup(func() { c.Close() })
		return c
	}
	tests := []struct {
		name string
		fail func(t *testing.T) error
		want bool
	}{
		{"Redis is stopped: the dial is refused", func(t *testing.T) error {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := l.Addr().String()
			l.Close() // nothing listens there now
			return fast(addr).Set(t.Context(), "k", "v", 0).Err()
		}, false},
		{"Redis answered an error", func(t *testing.T) error {
			r := redistest.Start(t)
			c := fast(r.Addr())
			c.Set(t.Context(), "k", "v", 0)
			return c.LPush(t.Context(), "k", "x").Err() // WRONGTYPE
		}, false},
		{"the pool had no connection free before anything was written", func(t *testing.T) error {
			r := redistest.Start(t)
			c := fast(r.Addr(), func(o *redis.Options) { o.PoolSize, o.PoolTimeout = 1, 100*time.Millisecond })
			go c.BLPop(context.Background(), 2*time.Second, "nothing") // holds the only connection
			wait.Until(t, 5*time.Second, "the BLPOP holding the only connection", func() bool {
				s := c.PoolStats()
				return s.TotalConns == 1 && s.IdleConns == 0
			})
			return c.Set(t.Context(), "k", "v", 0).Err()
		}, false},
		{"the client was closed", func(t *testing.T) error {
			r := redistest.Start(t)
			c := fast(r.Addr())
			c.Close()
			return c.Set(t.Context(), "k", "v", 0).Err()
		}, false},
		{"Redis is stalled (SIGSTOP): the written command timed out", func(t *testing.T) error {
			r := redistest.Start(t)
			c := fast(r.Addr())
			if err := c.Ping(t.Context()).Err(); err != nil {
				t.Fatal(err)
			}
			r.Pause()
			defer r.Resume()
			return c.Set(t.Context(), "k", "v", 0).Err()
		}, true},
		{"the context ended while the command was in flight", func(t *testing.T) error {
			r := redistest.Start(t)
			c := fast(r.Addr(), func(o *redis.Options) { o.ReadTimeout, o.ContextTimeoutEnabled = 5*time.Second, true })
			if err := c.Ping(t.Context()).Err(); err != nil {
				t.Fatal(err)
			}
			r.Pause()
			defer r.Resume()
			ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
			defer cancel()
			return c.Set(ctx, "k", "v", 0).Err()
		}, true},
		{"the connection was killed after the command was written", func(t *testing.T) error {
			r := redistest.Start(t)
			c := fast(r.Addr(), func(o *redis.Options) { o.ReadTimeout = 5 * time.Second })
			id, err := c.ClientID(t.Context()).Result()
			if err != nil {
				t.Fatal(err)
			}
			admin := r.Client()
			go func() {
				// Killed once Redis shows it blocked in the BLPOP it was sent.
				for range 250 {
					if list, _ := admin.ClientList(context.Background()).Result(); strings.Contains(list, fmt.Sprintf("id=%d ", id)) &&
						strings.Contains(list, "cmd=blpop") {
						break
					}
					time.Sleep(10 * time.Millisecond)
				}
				admin.ClientKillByFilter(context.Background(), "ID", fmt.Sprint(id))
			}()
			return c.BLPop(t.Context(), 3*time.Second, "nothing").Err()
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.fail(t)
			if err == nil {
				t.Fatal("the command did not fail")
			}
			if got := redisconn.MayHaveRun(err); got != tc.want {
				t.Fatalf("MayHaveRun(%v) = %v, want %v", err, got, tc.want)
			}
			wrapped := fmt.Errorf("route to node b: %w", err)
			if got := redisconn.MayHaveRun(wrapped); got != tc.want {
				t.Fatalf("MayHaveRun(wrapped %v) = %v, want %v", err, got, tc.want)
			}
		})
	}
}

// A failure on several nodes may have run when it may have on any of them.
func TestAJoinedFailureMayHaveRunWhenAnyPartMay(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")}
	timeout := &net.OpError{Op: "read", Net: "tcp", Err: timeoutErr{}}
	if redisconn.MayHaveRun(errors.Join(refused, refused)) {
		t.Error("two refused dials may have run")
	}
	if !redisconn.MayHaveRun(errors.Join(refused, fmt.Errorf("route: %w", timeout))) {
		t.Error("a refused dial and a read timeout: said surely not run")
	}
	if redisconn.MayHaveRun(nil) {
		t.Error("no error may have run")
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }
