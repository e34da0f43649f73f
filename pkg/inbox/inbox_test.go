package inbox_test

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/internal/wait"
	"github.com/herald-push/herald/pkg/inbox"
	"github.com/herald-push/herald/pkg/inbox/inboxtest"
	"github.com/herald-push/herald/pkg/protocol"
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

// A client that reads its inbox after a failover must not be handed what the
// failover can still lose: an entry no replica confirmed (answered
// not_replicated, or written to a restarted, empty master that still took
// itself for the master) would be stored again by the sender's retry under a
// new id, and the client would handle one message twice.
func TestReadsWaitForTheReplicasToHaveWhatTheyReturn(t *testing.T) {
	master := redistest.Start(t)
	replica := redistest.StartWith(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port))
	rdb := master.Client()
	wait.Until(t, 10*time.Second, "the replica is in sync", func() bool {
		info, _ := rdb.Info(t.Context(), "replication").Result()
		return strings.Contains(info, "connected_slaves:1") && strings.Contains(info, "state=online")
	})
	in := inbox.NewRedis(rdb, inbox.Options{MaxLen: 100, MaxAge: time.Hour,
		Replication: redisconn.Replication{Min: 1, Timeout: 200 * time.Millisecond}})
	ctx := t.Context()
	ids, _, err := in.Append(ctx, []string{"u1"}, inbox.Entry{Data: []byte(`{"item":"sword"}`), Wait: inbox.WaitDelivered})
	if err != nil {
		t.Fatal(err)
	}
	reads := []struct {
		name string
		read func(key string) (int, error)
	}{
		{"After", func(key string) (int, error) {
			es, err := in.After(ctx, key, protocol.StoredID{}, 10)
			return len(es), err
		}},
		{"Pending", func(key string) (int, error) { _, es, err := in.Pending(ctx, key, 10); return len(es), err }},
		{"Tail", func(key string) (int, error) { es, err := in.Tail(ctx, key, 10); return len(es), err }},
	}
	for _, r := range reads {
		if n, err := r.read("u1"); n != 1 || err != nil {
			t.Errorf("%s with the replica in sync = %d entries, %v; want %v", r.name, n, err, ids)
		}
	}

	replica.Pause() // the replica stops confirming anything
	t.Cleanup(replica.Resume)
	for _, r := range reads {
		if _, err := r.read("u1"); !errors.Is(err, redisconn.ErrNotReplicated) {
			t.Errorf("%s with no replica confirming = %v, want ErrNotReplicated", r.name, err)
		}
		// Nothing to hand on, nothing to confirm: an empty inbox reads at once.
		if n, err := r.read("nobody"); n != 0 || err != nil {
			t.Errorf("%s of an empty inbox with no replica confirming = %d, %v; want nothing, no error", r.name, n, err)
		}
	}
}
