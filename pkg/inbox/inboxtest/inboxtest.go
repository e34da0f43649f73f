// Package inboxtest is the conformance suite every inbox.Store passes.
package inboxtest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/herald-push/herald/pkg/inbox"
	"github.com/herald-push/herald/pkg/protocol"
)

// NewStore returns an empty Store with the given options.
type NewStore func(t *testing.T, opts inbox.Options) inbox.Store

// Run runs the suite.
func Run(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	roomy := inbox.Options{MaxLen: 1000, MaxAge: time.Hour}
	appendN := func(t *testing.T, s inbox.Store, key string, n int) []protocol.StoredID {
		t.Helper()
		var ids []protocol.StoredID
		for i := range n {
			got, prevs, err := s.Append(ctx, []string{key}, inbox.Entry{Data: []byte(fmt.Sprint(i)), Origin: "a", Wait: inbox.WaitAcked})
			if err != nil {
				t.Fatal(err)
			}
			var want protocol.StoredID
			if len(ids) > 0 {
				want = ids[len(ids)-1]
			}
			if prevs[0] != want {
				t.Fatalf("append %d: prev %v, want the id before it, %v", i, prevs[0], want)
			}
			ids = append(ids, got[0])
		}
		return ids
	}

	t.Run("IDsIncreaseAndEntriesComeBackInOrderWithTheirFields", func(t *testing.T) {
		s := newStore(t, roomy)
		ids := appendN(t, s, "u1", 50)
		for i := 1; i < len(ids); i++ {
			if !ids[i].After(ids[i-1]) {
				t.Fatalf("id %d (%v) not after id %d (%v)", i, ids[i], i-1, ids[i-1])
			}
		}
		got, err := s.After(ctx, "u1", ids[9], 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 40 || got[0].ID != ids[10] || string(got[0].Data) != "10" || got[39].ID != ids[49] {
			t.Fatalf("After the 10th: %d entries starting %+v", len(got), got[0])
		}
		if got[0].Origin != "a" || got[0].Wait != inbox.WaitAcked || got[0].Prev != ids[9] {
			t.Fatalf("fields lost: %+v", got[0])
		}
		if got, _ := s.After(ctx, "u1", ids[0], 5); len(got) != 5 || got[4].ID != ids[5] {
			t.Fatalf("After with limit 5: %d entries", len(got))
		}
		if got, _ := s.After(ctx, "nobody", protocol.StoredID{}, 10); len(got) != 0 {
			t.Fatalf("unknown key has %d entries", len(got))
		}
	})

	t.Run("OneAppendStoresTheMessageForEveryKey", func(t *testing.T) {
		s := newStore(t, roomy)
		ids, _, err := s.Append(ctx, []string{"u1", "u2"}, inbox.Entry{Data: []byte(`"hi"`)})
		if err != nil || len(ids) != 2 {
			t.Fatalf("append: %v %v", ids, err)
		}
		for i, k := range []string{"u1", "u2"} {
			got, _ := s.After(ctx, k, protocol.StoredID{}, 10)
			if len(got) != 1 || got[0].ID != ids[i] || string(got[0].Data) != `"hi"` {
				t.Fatalf("%s holds %+v", k, got)
			}
		}
	})

	t.Run("ARetriedAppendWithTheSameDedupeKeyStoresNothingTwice", func(t *testing.T) {
		s := newStore(t, roomy)
		keys := []string{"u1", "u2"}
		first, firstPrevs, err := s.Append(ctx, keys, inbox.Entry{Data: []byte(`"sword"`), Dedupe: "shop:purchase-7"})
		if err != nil {
			t.Fatal(err)
		}
		again, prevs, err := s.Append(ctx, keys, inbox.Entry{Data: []byte(`"sword"`), Dedupe: "shop:purchase-7"})
		if err != nil || !slices.Equal(again, first) || !slices.Equal(prevs, firstPrevs) {
			t.Fatalf("retry = %v %v %v, want the first append's %v %v", again, prevs, err, first, firstPrevs)
		}
		other, _, _ := s.Append(ctx, keys, inbox.Entry{Data: []byte(`"shield"`), Dedupe: "shop:purchase-8"})
		plain, _, _ := s.Append(ctx, keys, inbox.Entry{Data: []byte(`"gold"`)})
		for i, k := range keys {
			got, _ := s.After(ctx, k, protocol.StoredID{}, 10)
			if len(got) != 3 || got[0].ID != first[i] || got[1].ID != other[i] || got[2].ID != plain[i] || got[1].Prev != first[i] {
				t.Fatalf("%s holds %+v, want the sword once, then the shield and the gold", k, got)
			}
		}
	})

	t.Run("PendingIsWhatFollowsTheAckAndAcksNeverGoBack", func(t *testing.T) {
		s := newStore(t, roomy)
		ids := appendN(t, s, "u1", 5)
		acked, pending, err := s.Pending(ctx, "u1", 100)
		if err != nil || !acked.IsZero() || len(pending) != 5 {
			t.Fatalf("before any ack: %v %d %v", acked, len(pending), err)
		}
		if err := s.Ack(ctx, "u1", ids[2]); err != nil {
			t.Fatal(err)
		}
		if err := s.Ack(ctx, "u1", ids[1]); err != nil { // late, older ack
			t.Fatal(err)
		}
		acked, pending, _ = s.Pending(ctx, "u1", 100)
		if acked != ids[2] || len(pending) != 2 || pending[0].ID != ids[3] {
			t.Fatalf("after acking the 3rd: acked %v, %d pending", acked, len(pending))
		}
		if got, _ := s.Acked(ctx, "u1"); got != ids[2] {
			t.Fatalf("Acked = %v, want %v", got, ids[2])
		}
	})

	t.Run("TailIsTheNewestEntriesOldestFirst", func(t *testing.T) {
		s := newStore(t, roomy)
		if got, err := s.Tail(ctx, "u1", 2); err != nil || len(got) != 0 {
			t.Fatalf("Tail of an empty inbox: %v %v", got, err)
		}
		ids := appendN(t, s, "u1", 5)
		got, err := s.Tail(ctx, "u1", 2)
		if err != nil || len(got) != 2 || got[0].ID != ids[3] || got[1].ID != ids[4] || got[1].Prev != ids[3] {
			t.Fatalf("Tail(2) = %+v %v, want the 4th and 5th", got, err)
		}
		for _, n := range []int{0, -1} {
			if got, err := s.Tail(ctx, "u1", n); err != nil || len(got) != 0 {
				t.Fatalf("Tail(%d) = %+v %v, want nothing", n, got, err)
			}
		}
	})

	t.Run("TheInboxKeepsOnlyTheNewestMessages", func(t *testing.T) {
		s := newStore(t, inbox.Options{MaxLen: 10, MaxAge: time.Hour})
		ids := appendN(t, s, "u1", 500)
		got, _ := s.After(ctx, "u1", protocol.StoredID{}, 1000)
		// Redis trims lazily ("~"): a little over the bound is allowed.
		if len(got) < 10 || len(got) > 200 || got[len(got)-1].ID != ids[499] {
			t.Fatalf("kept %d of 500 with MaxLen 10", len(got))
		}
	})
}
