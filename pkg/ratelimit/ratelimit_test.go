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
