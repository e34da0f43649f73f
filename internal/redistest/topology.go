package redistest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a Redis Cluster of child processes: three masters with one
// replica each, on free loopback ports, with a short node timeout so that a
// failover takes about two seconds.
type Cluster struct {
	t       testing.TB
	Servers []*Server
}

// StartCluster creates the cluster with redis-cli --cluster create and
// waits until every slot is served and every replica is in sync. It is
// stopped when the test ends.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	need(t, "redis-cli")
	c := &Cluster{t: t}
	var addrs []string
	for range 6 {
		bus := freePort(t)
		s := StartWith(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "1000", "--cluster-port", strconv.Itoa(bus),
			// A replica takes over however far behind it is: the tests kill
			// masters under load.
			"--cluster-replica-validity-factor", "0")
		c.Servers = append(c.Servers, s)
		addrs = append(addrs, s.Addr())
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitHealthy(30 * time.Second)
	return c
}

// Addrs are the host:port of every server, the --redis-cluster-addrs value.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Servers))
	for i, s := range c.Servers {
		out[i] = s.Addr()
	}
	return out
}

// Client returns a cluster client closed at the end of the test.
func (c *Cluster) Client() *redis.ClusterClient {
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), MaxRedirects: 16})
	c.t.Cleanup(func() { cc.Close() })
	return cc
}

// FlushAll empties every master.
func (c *Cluster) FlushAll(ctx context.Context) error {
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	defer cc.Close()
	return cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return m.FlushAll(ctx).Err() })
}

// MasterFor returns the server that is master of key's slot now.
func (c *Cluster) MasterFor(key string) *Server {
	c.t.Helper()
	ctx := context.Background()
	for _, s := range c.Servers {
		if !s.Running() {
			continue
		}
		cl := redis.NewClient(&redis.Options{Addr: s.Addr()})
		slot, err := cl.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			cl.Close()
			continue
		}
		slots, err := cl.ClusterSlots(ctx).Result()
		cl.Close()
		if err != nil {
			continue
		}
		for _, r := range slots {
			if int64(r.Start) <= slot && slot <= int64(r.End) && len(r.Nodes) > 0 {
				for _, s2 := range c.Servers {
					if s2.Addr() == r.Nodes[0].Addr {
						return s2
					}
				}
			}
		}
	}
	c.t.Fatalf("no master serves %s", key)
	return nil
}

// WaitHealthy waits until every running server says the cluster is ok,
// every slot has a master and every master has an in-sync replica.
func (c *Cluster) WaitHealthy(within time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	var why string
	for time.Now().Before(deadline) {
		if why = c.unhealthy(); why == "" {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("cluster not healthy within %v: %s", within, why)
}

func (c *Cluster) unhealthy() string {
	ctx := context.Background()
	masters, synced := 0, 0
	for _, s := range c.Servers {
		if !s.Running() {
			return "a server is down"
		}
		cl := redis.NewClient(&redis.Options{Addr: s.Addr()})
		info, err := cl.ClusterInfo(ctx).Result()
		repl, err2 := cl.Info(ctx, "replication").Result()
		cl.Close()
		if err != nil || err2 != nil {
			return fmt.Sprintf("%s: %v %v", s.Addr(), err, err2)
		}
		if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_slots_ok:16384") {
			return s.Addr() + " says the cluster is not ok"
		}
		switch {
		case strings.Contains(repl, "role:master"):
			masters++
		case strings.Contains(repl, "master_link_status:up"):
			synced++
		}
	}
	if masters != 3 || synced != 3 {
		return fmt.Sprintf("%d masters and %d synced replicas", masters, synced)
	}
	return ""
}

// Sentinel is one Redis master with one replica, watched by three
// sentinels (quorum 2) that fail it over about two seconds after it dies.
type Sentinel struct {
	t         testing.TB
	Master    *Server // the master at the start; after a failover, a replica
	Replica   *Server
	Sentinels []*Server
}

// MasterName is the name the sentinels monitor the master under.
const MasterName = "herald"

// StartSentinel starts the master, the replica and the sentinels, and waits
// until the sentinels know the replica and each other.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	need(t, "redis-sentinel")
	sn := &Sentinel{t: t, Master: Start(t)}
	sn.Replica = StartWith(t, "--replicaof", "127.0.0.1", strconv.Itoa(sn.Master.Port))
	for range 3 {
		s := &Server{t: t, Port: freePort(t), dir: t.TempDir(), sentinel: true}
		conf := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\n"+
			"sentinel monitor %s 127.0.0.1 %d 2\n"+
			"sentinel down-after-milliseconds %s 1000\n"+
			"sentinel failover-timeout %s 4000\n"+
			"sentinel parallel-syncs %s 1\n",
			s.Port, s.dir, MasterName, sn.Master.Port, MasterName, MasterName, MasterName)
		if err := os.WriteFile(filepath.Join(s.dir, "sentinel.conf"), []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := s.start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Kill() })
		sn.Sentinels = append(sn.Sentinels, s)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		why := sn.unsettled()
		if why == "" {
			return sn
		}
		if time.Now().After(deadline) {
			t.Fatalf("sentinels not settled within 30s: %s", why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Addrs are the sentinels' host:port, the --redis-sentinel-addrs value.
func (sn *Sentinel) Addrs() []string {
	var out []string
	for _, s := range sn.Sentinels {
		out = append(out, s.Addr())
	}
	return out
}

// CurrentMaster returns the server the sentinels name as master now.
func (sn *Sentinel) CurrentMaster() *Server {
	sn.t.Helper()
	for _, s := range sn.Sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr()})
		addr, err := c.GetMasterAddrByName(context.Background(), MasterName).Result()
		c.Close()
		if err == nil && len(addr) == 2 {
			for _, srv := range []*Server{sn.Master, sn.Replica} {
				if strconv.Itoa(srv.Port) == addr[1] {
					return srv
				}
			}
		}
	}
	sn.t.Fatal("no sentinel names a master")
	return nil
}

func (sn *Sentinel) unsettled() string {
	ctx := context.Background()
	for _, s := range sn.Sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr()})
		peers, err := c.Sentinels(ctx, MasterName).Result()
		replicas, err2 := c.Replicas(ctx, MasterName).Result()
		c.Close()
		if err != nil || err2 != nil {
			return fmt.Sprintf("%s: %v %v", s.Addr(), err, err2)
		}
		if len(peers) != 2 || len(replicas) != 1 {
			return fmt.Sprintf("%s knows %d sentinels and %d replicas", s.Addr(), len(peers), len(replicas))
		}
	}
	return ""
}

func need(t testing.TB, tool string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		t.Fatalf("%s not found (make test installs it): %v", tool, err)
	}
}
