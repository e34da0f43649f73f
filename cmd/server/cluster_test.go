package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/herald-push/herald/internal/wait"
	"github.com/herald-push/herald/pkg/client"
)

// freeRange finds n consecutive free loopback ports.
func freeRange(t *testing.T, n int) int {
	t.Helper()
	for base := 21000 + os.Getpid()%2000*4; base < 60000; base += n + 7 {
		ok := true
		for p := base; p < base+n && ok; p++ {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				ok = false
				continue
			}
			l.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free port range")
	return 0
}

// localCluster runs scripts/cluster.sh: Redis, three nodes, haproxy.
type localCluster struct {
	dir      string
	balancer string
	env      []string
}

// startLocalCluster runs the script with Redis as topology (single,
// cluster or sentinel).
func startLocalCluster(t *testing.T, topology string) *localCluster {
	t.Helper()
	if _, err := exec.LookPath("haproxy"); err != nil {
		t.Fatalf("haproxy not found (make test installs it): %v", err)
	}
	base := freeRange(t, 16) // balancer, three nodes, up to 12 Redis ports
	lc := &localCluster{dir: t.TempDir(), balancer: "127.0.0.1:" + strconv.Itoa(base)}
	lc.env = append(os.Environ(), "CLUSTER_DIR="+lc.dir, "CLUSTER_PORT="+strconv.Itoa(base),
		"CLUSTER_REDIS="+topology, "CLUSTER_REDIS_PORT="+strconv.Itoa(base+4), "HERALD_BIN="+herald(t))
	t.Cleanup(func() {
		if out, err := lc.script("down"); err != nil {
			t.Errorf("cluster down: %v\n%s", err, out)
		}
	})
	if out, err := lc.script("up"); err != nil {
		t.Fatalf("cluster up: %v\n%s", err, out)
	}
	return lc
}

func (lc *localCluster) script(arg string) ([]byte, error) {
	cmd := exec.Command("scripts/cluster.sh", arg)
	cmd.Dir = filepath.Join("..", "..")
	cmd.Env = lc.env
	return cmd.CombinedOutput()
}

// perNode reads the connections of each live node through the balancer.
func (lc *localCluster) perNode(t *testing.T) map[string]int {
	t.Helper()
	resp, err := http.Get("http://" + lc.balancer + "/v1/cluster")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var out struct {
		Nodes []struct {
			ID          string
			Connections int
		}
	}
	json.NewDecoder(resp.Body).Decode(&out)
	m := map[string]int{}
	for _, n := range out.Nodes {
		m[n.ID] = n.Connections
	}
	return m
}

// board is a bulletin-board client behind the balancer.
type board struct {
	mu  sync.Mutex
	got []string
}

func (b *board) has(text string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, g := range b.got {
		if g == text {
			return true
		}
	}
	return false
}

func TestABalancedClusterSpreadsBoardsReachesThemAllAndSurvivesAKilledNode(t *testing.T) {
	for _, topology := range []string{"single", "cluster", "sentinel"} {
		t.Run(topology, func(t *testing.T) { balancedClusterStory(t, topology) })
	}
}

func balancedClusterStory(t *testing.T, topology string) {
	lc := startLocalCluster(t, topology)
	const boards = 12
	var bs []*board
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for i := range boards {
		b := &board{}
		bs = append(bs, b)
		c, err := client.New(client.Config{URLs: []string{"ws://" + lc.balancer}, Key: "screen-" + strconv.Itoa(i),
			Topics: []string{"board"}, MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			c.Run(ctx, func(m client.Message) {
				var text string
				json.Unmarshal(m.Data, &text)
				b.mu.Lock()
				b.got = append(b.got, text)
				b.mu.Unlock()
			})
		})
	}
	wait.Until(t, 10*time.Second, "every board connected", func() bool {
		total := 0
		for _, n := range lc.perNode(t) {
			total += n
		}
		return total == boards
	})
	// Each node's count is its info as of its last heartbeat: a read can
	// catch one node's count behind the others', so the spread is judged
	// over a few heartbeats, not on one read.
	var spread map[string]int
	deadline := time.Now().Add(12 * time.Second)
	for {
		spread = lc.perNode(t)
		everyNode := len(spread) == 3
		for _, n := range spread {
			everyNode = everyNode && n > 0
		}
		if everyNode || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("boards per node through the balancer: %v", spread)
	for id, n := range spread {
		if n == 0 {
			t.Errorf("node %s got no board: the balancer did not spread them", id)
		}
	}

	post := func(text string) {
		t.Helper()
		resp, err := http.Post("http://"+lc.balancer+"/v1/topics/board", "text/plain", strings.NewReader(text))
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("post %q: %v %v", text, resp, err)
		}
		resp.Body.Close()
	}
	everyBoardHas := func(text string) {
		t.Helper()
		wait.Until(t, 10*time.Second, "every board shows "+text, func() bool {
			for _, b := range bs {
				if !b.has(text) {
					return false
				}
			}
			return true
		})
	}
	post("more benches in the park")
	everyBoardHas("more benches in the park")

	// Kill the busiest node; its boards come back through the balancer.
	victim, most := "", -1
	for id, n := range spread {
		if n > most {
			victim, most = id, n
		}
	}
	pid, err := os.ReadFile(filepath.Join(lc.dir, victim+".pid"))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(strings.TrimSpace(string(pid)))
	if err := syscall.Kill(p, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed %s holding %d boards", victim, most)
	wait.Until(t, 20*time.Second, "the boards of the killed node reconnected elsewhere", func() bool {
		// The dead node stays listed, with its last count, until its
		// presence TTL runs out; count the live ones.
		total := 0
		for id, n := range lc.perNode(t) {
			if id != victim {
				total += n
			}
		}
		return total == boards
	})
	t.Logf("boards per node after the kill: %v", lc.perNode(t))
	post("fix the fountain")
	everyBoardHas("fix the fountain")
}
