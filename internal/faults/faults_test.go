package faults

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herald-push/herald/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// echo serves lines back to whoever connects, until the test ends.
func echo(t *testing.T, addr string) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

// roundTrip writes a line and reads it back, or fails after within.
func roundTrip(t *testing.T, c net.Conn, r *bufio.Reader, line string, within time.Duration) (time.Duration, error) {
	t.Helper()
	start := time.Now()
	c.SetDeadline(start.Add(within))
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return 0, err
	}
	got, err := r.ReadString('\n')
	if err != nil {
		return 0, err
	}
	if strings.TrimSpace(got) != line {
		t.Fatalf("echoed %q, want %q", got, line)
	}
	return time.Since(start), nil
}

func TestALinkDelaysEachWayAndKeepsTheStreamInOrder(t *testing.T) {
	l := NewLink(t, echo(t, "127.0.0.1:0"))
	l.SetDelay(150*time.Millisecond, 100*time.Millisecond)
	c, err := net.Dial("tcp", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	took, err := roundTrip(t, c, r, "hello", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if took < 250*time.Millisecond {
		t.Fatalf("a round trip took %v, want at least the 250ms of both delays", took)
	}
	// Many writes in a row arrive whole and in order: the delay holds
	// bytes, it does not serialize round trips.
	var want strings.Builder
	for i := range 200 {
		want.WriteString(strings.Repeat(string(rune('a'+i%26)), 100) + "\n")
	}
	start := time.Now()
	go io.WriteString(c, want.String())
	got := make([]byte, want.Len())
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(r, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != want.String() {
		t.Fatal("the stream arrived altered")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("200 pipelined lines took %v over a 250ms round trip", took)
	}
}

func TestACutLinkHangsWithoutClosingAndHealResumesIt(t *testing.T) {
	l := NewLink(t, echo(t, "127.0.0.1:0"))
	c, err := net.Dial("tcp", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if _, err := roundTrip(t, c, r, "before", 2*time.Second); err != nil {
		t.Fatal(err)
	}
	l.Cut()
	if _, err := roundTrip(t, c, r, "during", 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("a round trip over a cut link ended with %v, want a timeout (a hang)", err)
	}
	l.Heal()
	// What was written during the cut arrives after the heal.
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if got, err := r.ReadString('\n'); err != nil || got != "during\n" {
		t.Fatalf("after the heal read %q, %v; want the line held by the cut", got, err)
	}
}

// A client whose command's reply is held sees it time out, as if it never
// ran; Redis ran it all the same. Another connection goes on meanwhile,
// and once released the link holds nothing more.
func TestACommandWhoseReplyTheLinkHoldsTimesOutYetRan(t *testing.T) {
	r := redistest.Start(t)
	l := NewLink(t, r.Addr())
	// No retries: a retry would run the command a second time.
	c := redis.NewClient(&redis.Options{Addr: l.Addr(), ReadTimeout: 300 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	ctx := t.Context()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}

	l.HoldRepliesAfter("held:counter")
	err := c.Incr(ctx, "held:counter").Err()
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("INCR whose reply is held ended with %v, want a timeout", err)
	}
	if got, err := r.Client().Get(ctx, "held:counter").Result(); err != nil || got != "1" {
		t.Fatalf("Redis holds held:counter = %q (%v), want the 1 the unanswered INCR stored", got, err)
	}
	// A connection that never sent the pattern is not held.
	other := redis.NewClient(&redis.Options{Addr: l.Addr(), MaxRetries: -1})
	defer other.Close()
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := other.Ping(pctx).Err(); err != nil {
		t.Fatalf("a PING on another connection while a reply is held: %v", err)
	}

	l.ReleaseReplies()
	if got, err := c.Incr(ctx, "held:counter").Result(); err != nil || got != 2 {
		t.Fatalf("INCR after the release: %d, %v; want 2", got, err)
	}
}

func TestANamespacedProcessIsCutOffFromOneHostPortOnly(t *testing.T) {
	n := NewNetns(t)
	cut := echo(t, n.HostAddr(0))
	kept := echo(t, n.HostAddr(0))
	port := func(addr string) int {
		_, p, _ := net.SplitHostPort(addr)
		n, _ := strconv.Atoi(p)
		return n
	}
	reach := func(addr string) bool {
		// bash's /dev/tcp inside the namespace: a connect and one line.
		cmd := n.Command("timeout", "1", "bash", "-c", "exec 3<>/dev/tcp/"+strings.Replace(addr, ":", "/", 1)+"; echo hi >&3; head -n1 <&3")
		out, err := cmd.Output()
		return err == nil && strings.TrimSpace(string(out)) == "hi"
	}
	if !reach(cut) || !reach(kept) {
		t.Fatal("the namespace cannot reach the host before any cut")
	}
	n.Cut(port(cut))
	if reach(cut) {
		t.Fatal("the cut port still answers")
	}
	if !reach(kept) {
		t.Fatal("a port that was not cut stopped answering")
	}
	n.Heal(port(cut))
	if !reach(cut) {
		t.Fatal("the port does not answer after the heal")
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
