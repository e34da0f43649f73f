package ratelimit

import (
	"testing"
	"time"
)

func TestABucketAllowsItsBurstThenItsRate(t *testing.T) {
	l := New(2, 3) // 2 per second, bursts of 3
	t0 := time.Unix(1000, 0)
	for i := range 3 {
		if ok, _ := l.Allow("ip1", t0); !ok {
			t.Fatalf("burst event %d refused", i)
		}
	}
	ok, wait := l.Allow("ip1", t0)
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("fourth event: ok=%v wait=%v, want refused with 500ms to wait", ok, wait)
	}
	if ok, _ := l.Allow("ip2", t0); !ok {
		t.Fatal("another key was limited by ip1's bucket")
	}
	if ok, _ := l.Allow("ip1", t0.Add(500*time.Millisecond)); !ok {
		t.Fatal("refused after waiting what it was told")
	}
}

func TestRefilledBucketsAreForgotten(t *testing.T) {
	l := New(10, 1)
	t0 := time.Unix(1000, 0)
	l.Allow("ip1", t0)
	l.Allow("ip2", t0.Add(2*time.Minute)) // sweeps: ip1 has long refilled
	if _, ok := l.buckets["ip1"]; ok {
		t.Fatal("a refilled bucket was kept")
	}
}

// A sender of bytes takes as many tokens as it stores: a big send waits
// longer than a small one, and a refused one takes nothing.
func TestAWeightedTakeCountsItsWeightAndARefusedOneTakesNothing(t *testing.T) {
	l := New(1000, 4000) // 1000 bytes per second, bursts of 4000
	t0 := time.Unix(1000, 0)
	cases := []struct {
		at   time.Duration
		n    float64
		ok   bool
		wait time.Duration
	}{
		{0, 3000, true, 0},
		{0, 1500, false, 500 * time.Millisecond}, // 1000 left
		{0, 1000, true, 0},                       // the refusal took nothing
		{0, 9000, false, 4 * time.Second},        // over the burst: never fits; told when the bucket is full
		{2 * time.Second, 2000, true, 0},
	}
	for i, c := range cases {
		ok, wait := l.AllowN("key1", c.n, t0.Add(c.at))
		if ok != c.ok || wait != c.wait {
			t.Fatalf("take %d of %g: ok=%v wait=%v, want %v %v", i, c.n, ok, wait, c.ok, c.wait)
		}
	}
}
