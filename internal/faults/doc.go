// Package faults makes the faults a real network makes, for tests: a node
// cut off from Redis inside its own network namespace (packets dropped, so
// TCP hangs instead of resetting), a lossy link, a link that delays every
// byte or holds back the answer to a command that ran, and a process
// stalled with SIGSTOP.
//
// Namespaces and iptables need root; a test that needs them calls
// RequireNetns, which skips it, naming what is missing, where they are not
// available. make deps installs iptables so CI never skips.
package faults
