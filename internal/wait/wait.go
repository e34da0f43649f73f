// Package wait polls for conditions in tests, so that no test sleeps and hopes.
package wait

import (
	"testing"
	"time"
)

// Until polls cond every 20ms until it holds, failing t if it does not
// within the given time.
func Until(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
