package idempotency_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/herald-push/herald/pkg/idempotency"
)

// BenchmarkBatchOf1000With60kRemembered is what one idempotent batch of
// 1000 items costs the single-node store when it already remembers 60,000
// answers: 1000 claims and answers.
func BenchmarkBatchOf1000With60kRemembered(b *testing.B) {
	m := idempotency.NewMemory(time.Hour, 0)
	answer := []byte(`{"id":"1","results":{"u1":{"status":"delivered"}}}`)
	for i := range 60000 {
		key := fmt.Sprint("old-", i)
		m.Begin(b.Context(), key, time.Minute)
		m.Finish(b.Context(), key, answer)
	}
	keys := make([]string, 1000)
	for n := 0; b.Loop(); n++ {
		for i := range keys {
			keys[i] = fmt.Sprint("batch-", n, "-", i)
		}
		for _, k := range keys {
			if _, claimed, err := m.Begin(b.Context(), k, time.Minute); !claimed || err != nil {
				b.Fatal(claimed, err)
			}
			m.Finish(b.Context(), k, answer)
		}
		for _, k := range keys { // keep 60,000 remembered
			m.Abort(b.Context(), k)
		}
	}
}

func TestTheMemoryStoreForgetsAnswersAfterTheirTTLWithoutBeingAskedAgain(t *testing.T) {
	m := idempotency.NewMemory(time.Minute, 0)
	for i := range 5000 {
		key := fmt.Sprint("k", i)
		m.Begin(t.Context(), key, time.Second)
		m.Finish(t.Context(), key, []byte(`{"id":"1"}`))
	}
	m.Begin(t.Context(), "never-finished", time.Second) // its node died mid-request
	m.Sweep(time.Now().Add(30 * time.Second))
	if keys, _ := m.Usage(); keys != 5000 {
		t.Fatalf("within the TTL: %d keys remembered, want the 5000 answers", keys)
	}
	m.Sweep(time.Now().Add(2 * time.Minute))
	if keys, bytes := m.Usage(); keys != 0 || bytes != 0 {
		t.Fatalf("past the TTL: %d keys, %d bytes left, want none", keys, bytes)
	}
}

func TestAFullMemoryStoreRefusesNewKeysAndStillAnswersRetries(t *testing.T) {
	m := idempotency.NewMemory(time.Hour, 64<<10)
	var err error
	n := 0
	for ; n < 10000; n++ {
		key := fmt.Sprint("k", n)
		if _, _, err = m.Begin(t.Context(), key, time.Minute); err != nil {
			break
		}
		m.Finish(t.Context(), key, []byte(`{"id":"`+key+`"}`))
	}
	if !errors.Is(err, idempotency.ErrFull) || n < 100 {
		t.Fatalf("after %d keys: err = %v, want ErrFull once 64 KB are used", n, err)
	}
	if _, bytes := m.Usage(); bytes > 64<<10+1024 {
		t.Fatalf("the store counts %d bytes, over its 64 KB", bytes)
	}
	answer, claimed, err := m.Begin(t.Context(), "k7", time.Minute)
	if claimed || err != nil || string(answer) != `{"id":"k7"}` {
		t.Fatalf("a retry when full: %q claimed=%v err=%v, want its first answer", answer, claimed, err)
	}
	m.Abort(t.Context(), "k7")
	if _, claimed, err := m.Begin(t.Context(), "new", time.Minute); !claimed || err != nil {
		t.Fatalf("after an abort freed room: claimed=%v err=%v", claimed, err)
	}
}
