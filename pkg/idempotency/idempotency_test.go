package idempotency_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/pkg/idempotency"
	"github.com/herald-push/herald/pkg/redisconn"
)

func TestStores(t *testing.T) {
	srv := redistest.Start(t)
	stores := map[string]idempotency.Store{
		"memory": idempotency.NewMemory(time.Hour, 0),
		"redis":  idempotency.NewRedis(srv.Client(), time.Hour, redisconn.Replication{}),
	}
	ctx := context.Background()
	for name, s := range stores {
		t.Run(name, func(t *testing.T) {
			if _, claimed, err := s.Begin(ctx, "k1", time.Minute); !claimed || err != nil {
				t.Fatalf("first Begin: claimed=%v err=%v", claimed, err)
			}
			if _, _, err := s.Begin(ctx, "k1", time.Minute); !errors.Is(err, idempotency.ErrInProgress) {
				t.Fatalf("Begin while in progress: %v", err)
			}
			if err := s.Finish(ctx, "k1", []byte(`{"id":"1"}`)); err != nil {
				t.Fatal(err)
			}
			answer, claimed, err := s.Begin(ctx, "k1", time.Minute)
			if claimed || err != nil || string(answer) != `{"id":"1"}` {
				t.Fatalf("retry: %q claimed=%v err=%v, want the first answer", answer, claimed, err)
			}
			s.Begin(ctx, "k2", time.Minute)
			s.Abort(ctx, "k2")
			if _, claimed, _ := s.Begin(ctx, "k2", time.Minute); !claimed {
				t.Fatal("an aborted key could not be claimed again")
			}

			// A claim whose Finish and Abort never came (its node died)
			// frees itself when its lease runs out.
			s.Begin(ctx, "k3", 50*time.Millisecond)
			if _, _, err := s.Begin(ctx, "k3", time.Minute); !errors.Is(err, idempotency.ErrInProgress) {
				t.Fatalf("Begin within the lease: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
			if _, claimed, err := s.Begin(ctx, "k3", time.Minute); !claimed || err != nil {
				t.Fatalf("Begin after the lease: claimed=%v err=%v", claimed, err)
			}
		})
	}
}
