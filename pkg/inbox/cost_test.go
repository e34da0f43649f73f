package inbox_test

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/pkg/inbox"
	"github.com/herald-push/herald/pkg/protocol"
)

// payload is a JSON string of about n bytes.
func payload(n int) []byte {
	return append(append([]byte(`"`), bytes.Repeat([]byte("x"), n-2)...), '"')
}

// The attack of issue #18: one POST /v1/send of 60 KB to 1000 keys with
// "store": true. Each key's inbox used to hold its own copy (60 MB and more
// in Redis for one 79 KB request); the payload is now stored once.
func TestAStoredSendToAThousandKeysCostsRedisItsPayloadOnce(t *testing.T) {
	r := redistest.Start(t)
	rdb := r.Client()
	in := inbox.NewRedis(rdb, inbox.Options{MaxLen: 1000, MaxAge: 24 * time.Hour})
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprintf("player-%d", i)
	}
	data := payload(60 << 10)
	before := r.UsedMemory(t)
	if _, _, err := in.Append(t.Context(), keys, inbox.Entry{Data: data, Origin: "n1"}); err != nil {
		t.Fatal(err)
	}
	grown := r.UsedMemory(t) - before
	t.Logf("one stored send, 1000 keys × %d bytes: used_memory grew by %d bytes (%d per key)", len(data), grown, grown/1000)
	if limit := int64(len(data) + 1000*inbox.EntryOverhead); grown > limit {
		t.Fatalf("used_memory grew by %d bytes, over the payload once plus %d per key (%d)", grown, inbox.EntryOverhead, limit)
	}
	// Every key's clients read what was sent.
	for _, k := range []string{keys[0], keys[999]} {
		got, err := in.After(t.Context(), k, protocol.StoredID{}, 10)
		if err != nil || len(got) != 1 || !bytes.Equal(got[0].Data, data) {
			t.Fatalf("After(%s) = %d entries, %v", k, len(got), err)
		}
	}
}

// A thousand single-key stored sends keep their one-script path: each costs
// its data and one entry, no more than before payloads were shared.
func TestAThousandSingleKeyStoredSendsCostTheirDataAndAnEntryEach(t *testing.T) {
	r := redistest.Start(t)
	rdb := r.Client()
	in := inbox.NewRedis(rdb, inbox.Options{MaxLen: 1000, MaxAge: 24 * time.Hour})
	data := payload(60 << 10)
	before := r.UsedMemory(t)
	for i := range 1000 {
		if _, _, err := in.Append(t.Context(), []string{fmt.Sprintf("player-%d", i)}, inbox.Entry{Data: data, Origin: "n1"}); err != nil {
			t.Fatal(err)
		}
	}
	grown := r.UsedMemory(t) - before
	t.Logf("1000 stored sends, 1 key × %d bytes each: used_memory grew by %d bytes (%d per send)", len(data), grown, grown/1000)
	// The allocator rounds a 60 KB string up to its 64 KB size class.
	if limit := int64(1000 * (len(data)*9/8 + inbox.EntryOverhead)); grown > limit {
		t.Fatalf("used_memory grew by %d bytes, over data (rounded up) plus %d per send (%d)", grown, inbox.EntryOverhead, limit)
	}
}

// A payload shared by many keys can expire before an entry that refers to
// it (a stream lives on while it gets appends, and trimming by age is
// approximate): the entry then reads back without data, for replay to
// skip, and the entries around it read as they were.
func TestAnEntryWhoseSharedPayloadIsGoneReadsBackWithoutData(t *testing.T) {
	r := redistest.Start(t)
	rdb := r.Client()
	ctx := t.Context()
	in := inbox.NewRedis(rdb, inbox.Options{MaxLen: 100, MaxAge: time.Hour})
	keys := []string{"u1", "u2"}
	small, shared, last := []byte(`"before"`), payload(inbox.SharedMin), []byte(`"after"`)
	for _, d := range [][]byte{small, shared, last} {
		if _, _, err := in.Append(ctx, keys, inbox.Entry{Data: d}); err != nil {
			t.Fatal(err)
		}
	}
	if ttl := payloadTTLs(t, rdb); len(ttl) != 1 || ttl[0] < 2*time.Hour-time.Minute {
		t.Fatalf("shared payloads' TTLs = %v, want one of twice MaxAge", ttl)
	}
	check := func(how string, got []inbox.Entry) {
		t.Helper()
		if len(got) != 3 || string(got[0].Data) != string(small) || !bytes.Equal(got[1].Data, shared) || string(got[2].Data) != string(last) {
			t.Fatalf("%s: %d entries %q", how, len(got), got)
		}
	}
	got, _ := in.After(ctx, "u2", protocol.StoredID{}, 10)
	check("After", got)
	keysOf, err := rdb.Keys(ctx, "herald:payload:*").Result()
	if err != nil || len(keysOf) != 1 {
		t.Fatalf("payload keys %v %v", keysOf, err)
	}
	rdb.Del(ctx, keysOf...)
	after, err := in.After(ctx, "u1", protocol.StoredID{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	_, pending, err := in.Pending(ctx, "u1", 10)
	if err != nil {
		t.Fatal(err)
	}
	tail, err := in.Tail(ctx, "u1", 10)
	if err != nil {
		t.Fatal(err)
	}
	for how, got := range map[string][]inbox.Entry{"After": after, "Pending": pending, "Tail": tail} {
		if len(got) != 3 || string(got[0].Data) != string(small) || got[1].Data != nil || got[1].ID.IsZero() || string(got[2].Data) != string(last) {
			t.Fatalf("%s with the payload gone: %q, want the middle entry without data", how, got)
		}
	}
	// A payload key of another type (an entry written by hand, naming a
	// stream) makes that entry unreadable, not the page: failing the read
	// would close the client at every reconnect.
	rdb.XAdd(ctx, &redis.XAddArgs{Stream: keysOf[0], Values: []any{"a", "b"}})
	wrong, err := in.After(ctx, "u1", protocol.StoredID{}, 10)
	if err != nil || len(wrong) != 3 || wrong[1].Data != nil || string(wrong[2].Data) != string(last) {
		t.Fatalf("with a payload key of another type: %q %v, want the middle entry without data", wrong, err)
	}
}

// A retried send (same Dedupe) gets the first ids back, and its payload,
// named by its content, is not stored a second time.
func TestARetriedSharedSendStoresItsPayloadOnce(t *testing.T) {
	r := redistest.Start(t)
	rdb := r.Client()
	ctx := t.Context()
	in := inbox.NewRedis(rdb, inbox.Options{MaxLen: 100, MaxAge: time.Hour})
	keys := []string{"u1", "u2", "u3"}
	data := payload(4 << 10)
	first, _, err := in.Append(ctx, keys, inbox.Entry{Data: data, Dedupe: "purchase-7"})
	if err != nil {
		t.Fatal(err)
	}
	retry, _, err := in.Append(ctx, keys, inbox.Entry{Data: data, Dedupe: "purchase-7"})
	if err != nil || fmt.Sprint(retry) != fmt.Sprint(first) {
		t.Fatalf("retry = %v %v, want %v", retry, err, first)
	}
	if n := len(payloadTTLs(t, rdb)); n != 1 {
		t.Fatalf("%d payload keys, want 1", n)
	}
	for _, k := range keys {
		got, err := in.After(ctx, k, protocol.StoredID{}, 10)
		if err != nil || len(got) != 1 || !bytes.Equal(got[0].Data, data) {
			t.Fatalf("After(%s) = %d entries, %v", k, len(got), err)
		}
	}
}

func payloadTTLs(t *testing.T, rdb *redis.Client) []time.Duration {
	t.Helper()
	keys, err := rdb.Keys(t.Context(), "herald:payload:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []time.Duration
	for _, k := range keys {
		out = append(out, rdb.PTTL(t.Context(), k).Val())
	}
	return out
}
