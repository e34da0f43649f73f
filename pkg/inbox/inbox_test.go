package inbox_test

import (
	"testing"

	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/pkg/inbox"
	"github.com/herald-push/herald/pkg/inbox/inboxtest"
)

func TestMemoryInbox(t *testing.T) {
	inboxtest.Run(t, func(t *testing.T, opts inbox.Options) inbox.Store { return inbox.NewMemory(opts) })
}

func TestRedisInbox(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	inboxtest.Run(t, func(t *testing.T, opts inbox.Options) inbox.Store {
		if err := rdb.FlushAll(t.Context()).Err(); err != nil {
			t.Fatal(err)
		}
		return inbox.NewRedis(rdb, opts)
	})
}
