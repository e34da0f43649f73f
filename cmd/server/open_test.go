package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/internal/wait"
)

// heraldNode is a herald process started with its own environment, whose log is
// kept for the story to read.
type heraldNode struct {
	addr string
	mu   sync.Mutex
	log  bytes.Buffer
	done chan struct{}
}

func (n *heraldNode) Write(b []byte) (int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.log.Write(b)
}

func (n *heraldNode) logged() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.log.String()
}

// startHerald runs herald with env added to the test's own; ready waits for
// /readyz.
func startHerald(t *testing.T, env []string, args ...string) *heraldNode {
	t.Helper()
	n := &heraldNode{addr: freeAddr(t), done: make(chan struct{})}
	cmd := exec.Command(herald(t), append([]string{"--listen", n.addr}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = n
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(n.done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-n.done })
	return n
}

func (n *heraldNode) ready(t *testing.T) {
	t.Helper()
	wait.Until(t, 10*time.Second, "node ready", func() bool {
		select {
		case <-n.done:
			t.Fatalf("node exited: %s", n.logged())
		default:
		}
		resp, err := http.Get("http://" + n.addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// refused runs herald to its end and returns what it printed; it must exit
// with an error.
func refused(t *testing.T, env []string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, herald(t), append([]string{"--listen", freeAddr(t)}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("herald %v started and exited cleanly: %s", args, out)
	}
	if ctx.Err() != nil {
		t.Fatalf("herald %v did not refuse; it ran: %s", args, out)
	}
	return string(out)
}

// keyedArgs writes API keys and a token secret and returns the flags that
// read them.
func keyedArgs(t *testing.T) []string {
	t.Helper()
	dir := t.TempDir()
	keys := filepath.Join(dir, "api-keys.json")
	secret := filepath.Join(dir, "token-secret")
	if err := os.WriteFile(keys, []byte(`[{"name":"game","key":"game-key-0123456789abcdef","scopes":["send","presence","admin"]}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secret, []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{"--api-keys-file", keys, "--token-secret-file", secret}
}

// An operator starts a development node, without keys, on the Redis of a
// production cluster: it refuses, naming the flag that would force it; with
// that flag it starts, and the next production node to start warns about it.
func TestAnOpenNodeRefusesToJoinAnAuthenticatedCluster(t *testing.T) {
	r := redistest.Start(t)
	prod := startHerald(t, nil, append(keyedArgs(t), "--node-id", "prod-a", "--redis-url", r.URL())...)
	prod.ready(t)

	out := refused(t, nil, "--node-id", "dev", "--redis-url", r.URL())
	for _, want := range []string{"refusing to join a cluster of authenticated nodes", "prod-a", "--allow-open-join"} {
		if !strings.Contains(out, want) {
			t.Fatalf("the open node's refusal does not say %q: %s", want, out)
		}
	}
	// Nor may it pass for the authenticated node by taking its id.
	if out := refused(t, nil, "--node-id", "prod-a", "--redis-url", r.URL()); !strings.Contains(out, "refusing to join") {
		t.Fatalf("an open node with the id of an authenticated one joined: %s", out)
	}
	// Nor by taking another database number of the same Redis, whose
	// pub/sub (broadcasts, topics) is the cluster's.
	if out := refused(t, nil, "--node-id", "dev3", "--redis-url", r.URL()+"/1"); !strings.Contains(out, "cannot see") {
		t.Fatalf("an open node on another database of the authenticated cluster's Redis joined: %s", out)
	}
	// Keys without a token key are open too: anyone could connect as anyone.
	tokenless := keyedArgs(t)[:2]
	if out := refused(t, nil, append(tokenless, "--node-id", "dev2", "--redis-url", r.URL())...); !strings.Contains(out, "refusing to join") {
		t.Fatalf("a node with API keys but no token key joined: %s", out)
	}

	dev := startHerald(t, nil, "--node-id", "dev", "--redis-url", r.URL(), "--allow-open-join")
	dev.ready(t)
	prodB := startHerald(t, nil, append(keyedArgs(t), "--node-id", "prod-b", "--redis-url", r.URL())...)
	prodB.ready(t)
	if log := prodB.logged(); !strings.Contains(log, "open nodes") || !strings.Contains(log, `"dev"`) {
		t.Fatalf("the authenticated node did not warn about the open one: %s", log)
	}
	if log := prod.logged(); strings.Contains(log, "open nodes") {
		t.Fatalf("a node that started before any open one warned: %s", log)
	}
}

// Open nodes among themselves, the development cluster of the README, start
// as before.
func TestOpenNodesStillFormAClusterTogether(t *testing.T) {
	r := redistest.Start(t)
	a := startHerald(t, nil, "--node-id", "a", "--redis-url", r.URL())
	a.ready(t)
	b := startHerald(t, nil, "--node-id", "b", "--redis-url", r.URL())
	b.ready(t)
	if log := b.logged(); strings.Contains(log, "open nodes") {
		t.Fatalf("an open node warned about open nodes: %s", log)
	}
}

// A mistyped Redis URL is refused with a message that shows where the
// mistake is and never the password, from a flag or from the environment.
func TestAMalformedRedisURLIsRefusedWithoutPrintingItsPassword(t *testing.T) {
	const password = "Tr0ub4dor-and-3"
	for _, u := range []string{
		"redis://herald:" + password + "@redis:notaport/0",
		"redis://herald:" + password + "@redis:6379/zero",
		"redis://herald:" + password + "@redis:6379/0?dial_timeout=soon",
		"http://herald:" + password + "@redis:6379",
	} {
		t.Run(u[strings.LastIndexByte(u, '@')+1:], func(t *testing.T) {
			for name, run := range map[string]func() string{
				"flag":     func() string { return refused(t, nil, "--redis-url", u) },
				"variable": func() string { return refused(t, []string{"HERALD_REDIS_URL=" + u}) },
			} {
				out := run()
				if strings.Contains(out, password) || strings.Contains(out, "Tr0ub") {
					t.Fatalf("%s: the refusal prints the password: %s", name, out)
				}
				if !strings.Contains(out, "redis url is malformed") {
					t.Fatalf("%s: the refusal does not say the Redis URL is wrong: %s", name, out)
				}
			}
		})
	}
}

// In production the Redis password stays out of argv, where ps shows it:
// the URL names the server and the password comes from a variable or a
// file.
func TestTheRedisPasswordComesFromAVariableOrAFileBesideTheURL(t *testing.T) {
	r := redistest.StartWith(t, "--requirepass", "s3cret-redis-pw")
	file := filepath.Join(t.TempDir(), "redis-password")
	if err := os.WriteFile(file, []byte("s3cret-redis-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	startHerald(t, []string{"HERALD_REDIS_PASSWORD=s3cret-redis-pw"}, "--node-id", "a", "--redis-url", r.URL()).ready(t)
	startHerald(t, nil, "--node-id", "b", "--redis-url", r.URL(), "--redis-password-file", file).ready(t)

	// An open node that cannot read the cluster's nodes refuses to start
	// (see TestAnOpenNodeRefusesToJoinAnAuthenticatedCluster): a wrong
	// password says so at once.
	if out := refused(t, []string{"HERALD_REDIS_PASSWORD=not-it"}, "--node-id", "c", "--redis-url", r.URL()); !strings.Contains(out, "WRONGPASS") || strings.Contains(out, "not-it") {
		t.Fatalf("a wrong password: %s", out)
	}
	if out := refused(t, []string{"HERALD_REDIS_PASSWORD=x"}, "--redis-url", "redis://:y@127.0.0.1:1"); !strings.Contains(out, "give it once") {
		t.Fatalf("a password in both places: %s", out)
	}
}
