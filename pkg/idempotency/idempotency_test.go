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
		"memory": idempotency.NewMemory(time.Hour),
		"redis":  idempotency.NewRedis(srv.Client(), time.Hour, redisconn.Replication{}),
	}
	ctx := context.Background()
	for name, s := range stores {
		t.Run(name, func(t *testing.T) {
			if _, claimed, err := s.Begin(ctx, "k1"); !claimed || err != nil {
				t.Fatalf("first Begin: claimed=%v err=%v", claimed, err)
			}
			if _, _, err := s.Begin(ctx, "k1"); !errors.Is(err, idempotency.ErrInProgress) {
				t.Fatalf("Begin while in progress: %v", err)
			}
			if err := s.Finish(ctx, "k1", []byte(`{"id":"1"}`)); err != nil {
				t.Fatal(err)
			}
			answer, claimed, err := s.Begin(ctx, "k1")
			if claimed || err != nil || string(answer) != `{"id":"1"}` {
				t.Fatalf("retry: %q claimed=%v err=%v, want the first answer", answer, claimed, err)
			}
			s.Begin(ctx, "k2")
			s.Abort(ctx, "k2")
			if _, claimed, _ := s.Begin(ctx, "k2"); !claimed {
				t.Fatal("an aborted key could not be claimed again")
			}
		})
	}
}
