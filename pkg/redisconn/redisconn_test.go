package redisconn_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/internal/wait"
	"github.com/herald-push/herald/pkg/redisconn"
)

func TestAConfigNamesOneTopologyOrSaysWhatIsWrong(t *testing.T) {
	tests := []struct {
		name    string
		cfg     redisconn.Config
		want    redisconn.Topology
		wantErr string
	}{
		{"nothing: a single node", redisconn.Config{}, redisconn.None, ""},
		{"a URL", redisconn.Config{URL: "redis://r:6379"}, redisconn.Single, ""},
		{"a cluster", redisconn.Config{ClusterAddrs: []string{"a:1", "b:2"}, Password: "p", TLS: true}, redisconn.Cluster, ""},
		{"sentinels", redisconn.Config{SentinelAddrs: []string{"s:26379"}, MasterName: "m", MinReplicas: 1}, redisconn.Sentinel, ""},
		{"two topologies", redisconn.Config{URL: "redis://r:6379", ClusterAddrs: []string{"a:1"}}, redisconn.Cluster, "exactly one of"},
		{"sentinels without a master name", redisconn.Config{SentinelAddrs: []string{"s:1"}}, redisconn.Sentinel, "needs --redis-master-name"},
		{"a master name alone", redisconn.Config{MasterName: "m"}, redisconn.None, "goes with --redis-sentinel-addrs"},
		{"a password beside a URL without one", redisconn.Config{URL: "redis://r:6379", Password: "p"}, redisconn.Single, ""},
		{"a password beside a URL with one", redisconn.Config{URL: "redis://:q@r:6379", Password: "p"}, redisconn.Single, "give it once"},
		{"a user beside a URL", redisconn.Config{URL: "redis://r:6379", Username: "u"}, redisconn.Single, "in the URL"},
		{"an address without a port", redisconn.Config{ClusterAddrs: []string{"a"}}, redisconn.Cluster, "not host:port"},
		{"replicas without Redis", redisconn.Config{MinReplicas: 1}, redisconn.None, "needs Redis"},
		{"a replica timeout too long", redisconn.Config{URL: "redis://r:1", ReplicaTimeout: 2 * time.Second}, redisconn.Single, "between 0 and 1s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.cfg.Topology(); got != tc.want {
				t.Errorf("topology = %v, want %v", got, tc.want)
			}
			err := tc.cfg.Validate()
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("validate = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestAWriteIsConfirmedOnlyWhenEnoughReplicasHaveIt(t *testing.T) {
	master := redistest.Start(t)
	rdb := master.Client()
	repl := redisconn.Replication{Min: 1, Timeout: 100 * time.Millisecond}
	set := func(p redis.Pipeliner) { p.Set(t.Context(), "k", "v", 0) }

	err := repl.Write(t.Context(), rdb, "k", set)
	if !errors.Is(err, redisconn.ErrNotReplicated) {
		t.Fatalf("write with no replica: %v, want ErrNotReplicated", err)
	}
	if v, _ := rdb.Get(t.Context(), "k").Result(); v != "v" {
		t.Fatalf("the master does not hold the write: %q", v)
	}
	redistest.StartWith(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port))
	wait.Until(t, 10*time.Second, "a write confirmed by the replica", func() bool {
		return repl.Write(t.Context(), rdb, "k", set) == nil
	})
}

func TestTheEpochChangesWhenRedisRestarts(t *testing.T) {
	r := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr()})
	t.Cleanup(func() { rdb.Close() })
	before, err := redisconn.Epoch(t.Context(), rdb)
	if err != nil || before == "" {
		t.Fatalf("epoch: %q %v", before, err)
	}
	if again, _ := redisconn.Epoch(t.Context(), rdb); again != before {
		t.Fatalf("epoch moved without a restart: %q, then %q", before, again)
	}
	r.Restart()
	var after string
	wait.Until(t, 5*time.Second, "epoch readable again", func() bool {
		after, err = redisconn.Epoch(t.Context(), rdb)
		return err == nil
	})
	if after == before {
		t.Fatalf("epoch %q unchanged across a restart", after)
	}
}

// However a Redis URL is mistyped, herald's refusal of it never shows its
// password, nor the URL, where a password hides from any redaction.
func TestAMalformedRedisURLIsRefusedWithoutItsPassword(t *testing.T) {
	for _, u := range []string{
		"redis://herald:s3cret@redis:notaport/0",
		"redis://herald:s3cret@redis:6379/notadb",
		"http://herald:s3cret@redis:6379",
		"redis://herald:s3cr%zzet@redis:6379",
		"redis://herald:s3 cret@re dis:6379",
		"redis://herald:s3cret@redis:6379/0?dial_timeout=soon",
		"redis:/herald:s3cret@redis:6379",   // the password read as a database number
		"redis:///herald:s3cret@redis:6379", // likewise
		"redis//herald:s3cret@redis:6379",   // no scheme
		"redis:herald:s3cret@redis:6379",    // no host: it would dial localhost:6379
		"redis://herald:s3cret@:6379",       // likewise
		"s3cret",                            // a password where the URL goes
	} {
		_, err := redisconn.New(redisconn.Config{URL: u})
		if err == nil {
			t.Errorf("%q: accepted", u)
			continue
		}
		if strings.Contains(err.Error(), "s3") || !strings.Contains(err.Error(), "redis url") {
			t.Errorf("%q: error %q", u, err)
		}
	}
}
