package faults

import (
	"os"
	"syscall"
	"testing"
)

// Stall stops p with SIGSTOP, as a long GC pause, a frozen VM or a stuck
// host would: its sockets stay open and nothing answers. The returned
// resume continues it (SIGCONT); it runs at the end of the test too, so a
// stalled process can be killed and waited for.
func Stall(t testing.TB, p *os.Process) (resume func()) {
	t.Helper()
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP %d: %v", p.Pid, err)
	}
	resume = func() { _ = p.Signal(syscall.SIGCONT) }
	t.Cleanup(resume)
	return resume
}
