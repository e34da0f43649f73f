package inbox_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/herald-push/herald/internal/wait"
	"github.com/herald-push/herald/pkg/inbox"
	"github.com/herald-push/herald/pkg/protocol"
)

func TestIdleKeysOfTheMemoryInboxAreFreedAfterMaxAgeWithoutBeingTouchedAgain(t *testing.T) {
	m := inbox.NewMemory(inbox.Options{MaxLen: 1000, MaxAge: time.Minute})
	data := make([]byte, 64<<10)
	for i := range 3000 {
		if _, _, err := m.Append(t.Context(), []string{fmt.Sprint("u", i)}, inbox.Entry{Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	if keys, bytes := m.Usage(); keys != 3000 || bytes < 3000*64<<10 {
		t.Fatalf("after 3000 sends of 64 KB: %d keys, %d bytes", keys, bytes)
	}
	m.Sweep(time.Now().Add(30 * time.Second))
	if keys, _ := m.Usage(); keys != 3000 {
		t.Fatalf("half-way through their age: %d keys left, want 3000", keys)
	}
	m.Sweep(time.Now().Add(61 * time.Second))
	if keys, bytes := m.Usage(); keys != 0 || bytes != 0 {
		t.Fatalf("past their age, untouched: %d keys, %d bytes left, want none", keys, bytes)
	}
	if got, _ := m.After(t.Context(), "u1", protocol.StoredID{}, 10); len(got) != 0 {
		t.Fatalf("an expired key still returns %d entries", len(got))
	}
}

func TestOldEntriesOfAKeyInUseAgeOutWhileItsAckKeepsTheKey(t *testing.T) {
	m := inbox.NewMemory(inbox.Options{MaxLen: 1000, MaxAge: 200 * time.Millisecond})
	ids, _, err := m.Append(t.Context(), []string{"u1"}, inbox.Entry{Data: []byte(`"old"`)})
	if err != nil {
		t.Fatal(err)
	}
	// The key is used (acked) all along, but its only entry gets older
	// than MaxAge: a sweep frees the entry, the key keeps its position.
	wait.Until(t, 10*time.Second, "the old entry to age out", func() bool {
		_ = m.Ack(t.Context(), "u1", ids[0])
		m.Sweep(time.Now())
		got, _ := m.After(t.Context(), "u1", protocol.StoredID{}, 10)
		return len(got) == 0
	})
	if keys, _ := m.Usage(); keys != 1 {
		t.Fatalf("keys = %d, want u1 kept by its acks", keys)
	}
	if acked, _ := m.Acked(t.Context(), "u1"); acked != ids[0] {
		t.Fatalf("acked = %v, want %v", acked, ids[0])
	}
}

func TestAFullMemoryInboxRefusesNewSendsAndKeepsWhatItAccepted(t *testing.T) {
	m := inbox.NewMemory(inbox.Options{MaxLen: 1000, MaxAge: time.Hour, MemoryBytes: 1 << 20})
	data := make([]byte, 60<<10)
	var accepted []protocol.StoredID
	var err error
	for i := 0; ; i++ {
		var ids []protocol.StoredID
		ids, _, err = m.Append(t.Context(), []string{fmt.Sprint("u", i)}, inbox.Entry{Data: data, Dedupe: fmt.Sprint("send-", i)})
		if err != nil {
			break
		}
		accepted = append(accepted, ids[0])
	}
	if !errors.Is(err, inbox.ErrFull) || len(accepted) < 10 || len(accepted) > 17 {
		t.Fatalf("after %d sends of 60 KB into 1 MB: err = %v, want ErrFull after about 16", len(accepted), err)
	}
	if _, bytes := m.Usage(); bytes > 1<<20 {
		t.Fatalf("the store counts %d bytes, over its 1 MB", bytes)
	}
	// A multi-key send that does not fit stores nothing at all.
	if _, _, err := m.Append(t.Context(), []string{"u0", "new"}, inbox.Entry{Data: data}); !errors.Is(err, inbox.ErrFull) {
		t.Fatalf("a send to a stored key and a new one: err = %v, want ErrFull", err)
	}
	if got, _ := m.After(t.Context(), "u0", protocol.StoredID{}, 10); len(got) != 1 {
		t.Fatalf("u0 holds %d entries, want its one accepted send", len(got))
	}
	// Everything accepted is still there, and a retry of an accepted send
	// gets its first id back rather than a refusal.
	for i, id := range accepted {
		got, _ := m.After(t.Context(), fmt.Sprint("u", i), protocol.StoredID{}, 10)
		if len(got) != 1 || got[0].ID != id {
			t.Fatalf("u%d: %v, want its accepted %v", i, got, id)
		}
	}
	retry, _, err := m.Append(t.Context(), []string{"u3"}, inbox.Entry{Data: data, Dedupe: "send-3"})
	if err != nil || !slices.Equal(retry, accepted[3:4]) {
		t.Fatalf("retry of an accepted send when full: %v %v, want %v", retry, err, accepted[3])
	}
	// Once what it holds has aged out, it takes sends again.
	m.Sweep(time.Now().Add(2 * time.Hour))
	if _, _, err := m.Append(t.Context(), []string{"u0"}, inbox.Entry{Data: data}); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
}

func TestAKeyAtMaxLenKeepsTakingSendsWhenTheStoreIsFull(t *testing.T) {
	// What a full key trims pays for what it takes: a store full of one key
	// at its MaxLen keeps taking that key's newest sends.
	m := inbox.NewMemory(inbox.Options{MaxLen: 4, MaxAge: time.Hour, MemoryBytes: 4 * (1<<10 + 512)})
	data := make([]byte, 1<<10)
	for i := range 20 {
		if _, _, err := m.Append(t.Context(), []string{"u1"}, inbox.Entry{Data: data}); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if got, _ := m.After(t.Context(), "u1", protocol.StoredID{}, 100); len(got) != 4 {
		t.Fatalf("u1 holds %d, want its MaxLen 4", len(got))
	}
}

func BenchmarkMemoryInboxDedupeOnALongInbox(b *testing.B) {
	m := inbox.NewMemory(inbox.Options{MaxLen: 100000, MaxAge: time.Hour})
	for i := range 100000 {
		m.Append(b.Context(), []string{"u1"}, inbox.Entry{Data: []byte(`1`), Dedupe: fmt.Sprint(i)})
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		m.Append(b.Context(), []string{"u1"}, inbox.Entry{Data: []byte(`1`), Dedupe: fmt.Sprint(i % 100000)})
	}
}

func TestAKeyWrittenWithoutPauseKeepsTheStoreBoundedByItsMaxLen(t *testing.T) {
	// Its trimmed entries must not pile up in the store's bookkeeping for
	// MaxAge: 100,000 sends to one key of MaxLen 10 leave about 10.
	m := inbox.NewMemory(inbox.Options{MaxLen: 10, MaxAge: time.Hour})
	for range 100000 {
		if _, _, err := m.Append(t.Context(), []string{"u1"}, inbox.Entry{Data: []byte(`1`)}); err != nil {
			t.Fatal(err)
		}
	}
	if slots := m.OrderLen(); slots > 3000 {
		t.Fatalf("the append-order queue holds %d slots for 10 entries", slots)
	}
	got, _ := m.After(t.Context(), "u1", protocol.StoredID{}, 100)
	if len(got) != 10 {
		t.Fatalf("u1 holds %d entries, want 10", len(got))
	}
	m.Sweep(time.Now().Add(2 * time.Hour))
	if keys, bytes := m.Usage(); keys != 0 || bytes != 0 {
		t.Fatalf("after expiry: %d keys, %d bytes", keys, bytes)
	}
}
