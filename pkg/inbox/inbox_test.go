package inbox_test

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/pkg/inbox"
	"github.com/herald-push/herald/pkg/inbox/inboxtest"
	"github.com/herald-push/herald/pkg/redisconn"
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

func TestRedisClusterInbox(t *testing.T) {
	cluster := redistest.StartCluster(t)
	cc := cluster.Client()
	for _, min := range []int{0, 1} {
		t.Run(fmt.Sprintf("MinReplicas%d", min), func(t *testing.T) {
			inboxtest.Run(t, func(t *testing.T, opts inbox.Options) inbox.Store {
				if err := cluster.FlushAll(t.Context()); err != nil {
					t.Fatal(err)
				}
				opts.Replication = redisconn.Replication{Min: min, Timeout: time.Second}
				return inbox.NewRedis(cc, opts)
			})
			// A payload shared by keys of every slot lives in a slot of its
			// own: written, confirmed and read with commands of its own.
			t.Run("ASendToKeysOfEverySlotSharesItsPayload", func(t *testing.T) {
				in := inbox.NewRedis(cc, inbox.Options{MaxLen: 10, MaxAge: time.Hour,
					Replication: redisconn.Replication{Min: min, Timeout: time.Second}})
				keys := make([]string, 50)
				for i := range keys {
					keys[i] = fmt.Sprintf("slot-%d", i)
				}
				data := payload(2 * inbox.SharedMin)
				ids, _, err := in.Append(t.Context(), keys, inbox.Entry{Data: data})
				if err != nil {
					t.Fatal(err)
				}
				for i, k := range keys {
					got, err := in.Tail(t.Context(), k, 1)
					if err != nil || len(got) != 1 || got[0].ID != ids[i] || !bytes.Equal(got[0].Data, data) {
						t.Fatalf("Tail(%s) = %d entries, %v", k, len(got), err)
					}
				}
			})
		})
	}
}

func TestAnAppendThatNoReplicaConfirmsReturnsItsIDsAndSaysSo(t *testing.T) {
	rdb := redistest.Start(t).Client() // a master without replicas
	in := inbox.NewRedis(rdb, inbox.Options{MaxLen: 100, MaxAge: time.Hour,
		Replication: redisconn.Replication{Min: 1, Timeout: 50 * time.Millisecond}})
	keys := []string{"u1", "u2"}
	ids, _, err := in.Append(t.Context(), keys, inbox.Entry{Data: []byte(`1`)})
	if !errors.Is(err, redisconn.ErrNotReplicated) {
		t.Fatalf("append with no replica: err = %v, want ErrNotReplicated", err)
	}
	if len(ids) != 2 || ids[0].IsZero() || ids[1].IsZero() {
		t.Fatalf("ids = %v, want the ids it stored", ids)
	}
	// The master holds them: a retry under the same dedupe key finds them,
	// stores nothing, and still finds no replica to confirm them.
	again, _, err := in.Append(t.Context(), keys, inbox.Entry{Data: []byte(`1`), Dedupe: "purchase-1"})
	if !errors.Is(err, redisconn.ErrNotReplicated) || slices.Equal(again, ids) {
		t.Fatalf("a retry under a new dedupe key: %v %v", again, err)
	}
	retry, _, err := in.Append(t.Context(), keys, inbox.Entry{Data: []byte(`1`), Dedupe: "purchase-1"})
	if !errors.Is(err, redisconn.ErrNotReplicated) || !slices.Equal(retry, again) {
		t.Fatalf("retry = %v %v, want %v, not replicated", retry, err, again)
	}
}
