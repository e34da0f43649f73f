// Package redistest starts real redis-server processes for tests.
package redistest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is a redis-server child process on a free loopback port.
type Server struct {
	t    testing.TB
	Port int
	dir  string
	args []string
	cmd  *exec.Cmd
	// exited is closed once cmd has ended; out holds what it printed.
	exited chan struct{}
	out    *bytes.Buffer
	// sentinel runs redis-server in sentinel mode on dir/sentinel.conf.
	sentinel bool
}

// Start runs redis-server on a free port and stops it when the test ends. A
// missing redis-server fails the test: the README's test command installs it.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWith(t)
}

// StartWith is Start with extra redis-server arguments, such as
// "--requirepass", "secret".
func StartWith(t testing.TB, args ...string) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server not found (make test installs it): %v", err)
	}
	s := &Server{t: t, Port: freePort(t), dir: t.TempDir(), args: args}
	// A free port is free only until someone else binds it: tests of other
	// packages, running at the same time, open thousands of connections
	// from ephemeral ports. A server that lost its port starts again on
	// new ones.
	for attempt := 1; ; attempt++ {
		err := s.start()
		if err == nil {
			break
		}
		if !errors.Is(err, errPortTaken) || attempt == 3 {
			t.Fatal(err)
		}
		s.Port = freePort(t)
		if i := slices.Index(s.args, "--cluster-port"); i >= 0 && i+1 < len(s.args) {
			s.args[i+1] = strconv.Itoa(freePort(t))
		}
	}
	t.Cleanup(func() { s.Kill() })
	return s
}

// errPortTaken: redis-server could not bind a port it was given.
var errPortTaken = errors.New("a port redis-server was given is taken")

// Addr is host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// URL is the redis:// URL herald's --redis flag takes.
func (s *Server) URL() string { return "redis://" + s.Addr() }

// UsedMemory returns the server's used_memory (INFO memory), in bytes: what
// a test measures a write's cost to Redis with.
func (s *Server) UsedMemory(t testing.TB) int64 {
	t.Helper()
	info, err := s.Client().Info(context.Background(), "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no used_memory in INFO memory:\n%s", info)
	return 0
}

// Client returns a go-redis client closed at the end of the test.
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	s.t.Cleanup(func() { c.Close() })
	return c
}

func (s *Server) start() error {
	s.t.Helper()
	s.cmd = exec.Command("redis-server", append([]string{
		"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir}, s.args...)...)
	if s.sentinel {
		// Sentinels rewrite their config file: each has its own.
		s.cmd = exec.Command("redis-server", filepath.Join(s.dir, "sentinel.conf"), "--sentinel")
	}
	s.out = new(bytes.Buffer)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	cmd, exited := s.cmd, make(chan struct{})
	s.exited = exited
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited: // its output is complete once Wait returned
			s.cmd = nil
			if strings.Contains(s.out.String(), "Address already in use") {
				return fmt.Errorf("redis-server on port %d: %w:\n%s", s.Port, errPortTaken, s.out)
			}
			return fmt.Errorf("redis-server on port %d exited:\n%s", s.Port, s.out)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		// An auth error means the server is up and wants a password.
		if err == nil || strings.Contains(err.Error(), "NOAUTH") {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on port %d did not answer: %w", s.Port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Pause stops the process without ending it (SIGSTOP): clients' commands
// hang as they would behind a network partition. Resume undoes it.
func (s *Server) Pause() { _ = s.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume continues a paused server (SIGCONT).
func (s *Server) Resume() { _ = s.cmd.Process.Signal(syscall.SIGCONT) }

// Running reports whether the process is up (not killed).
func (s *Server) Running() bool { return s.cmd != nil }

// Kill stops the server abruptly, as a crash would.
func (s *Server) Kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// Restart starts the server again on the same port, empty of data but with
// the files of its directory (a cluster node keeps its identity).
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	if err := s.start(); err != nil {
		s.t.Fatal(err)
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
