package presence_test

import (
	"testing"
	"time"

	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/pkg/presence"
	"github.com/herald-push/herald/pkg/presence/presencetest"
)

func TestMemoryStore(t *testing.T) {
	presencetest.Run(t, func(t *testing.T, ttl time.Duration) func(string) presence.Store {
		m := presence.NewMemory(ttl)
		return m.Store
	})
}

func TestRedisStore(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	presencetest.Run(t, func(t *testing.T, ttl time.Duration) func(string) presence.Store {
		if err := rdb.FlushAll(t.Context()).Err(); err != nil {
			t.Fatal(err)
		}
		return func(id string) presence.Store { return presence.NewRedis(rdb, id, ttl) }
	})
}
