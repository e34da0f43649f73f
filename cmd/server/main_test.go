package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/herald-push/herald/internal/apitest"
	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/internal/wait"
	"github.com/herald-push/herald/pkg/protocol"
	"github.com/herald-push/herald/pkg/redisconn"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := apitest.Main(m)
	if binPath != "" && buildErr == nil {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// herald builds the server binary once per test run.
func herald(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "herald-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "herald")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = err
			binPath = string(out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build: %v\n%s", buildErr, binPath)
	}
	return binPath
}

// process is a herald node running as its own process.
type process struct {
	addr string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, once done is closed
}

func startProcess(t *testing.T, args ...string) *process {
	t.Helper()
	return startProcessAt(t, freeAddr(t), args...)
}

// startProcessAt runs a node on addr, for restarts on the same address.
func startProcessAt(t *testing.T, addr string, args ...string) *process {
	t.Helper()
	p := launch(t, addr, exec.Command(herald(t), append([]string{"--listen", addr}, args...)...))
	wait.Until(t, 10*time.Second, "node ready", func() bool { return status(p, "/readyz") == http.StatusOK })
	return p
}

// launch starts cmd, a node that listens on addr, without waiting for it to
// turn ready: a fault test may run it in a network namespace, or expect it
// to take its time.
func launch(t *testing.T, addr string, cmd *exec.Cmd) *process {
	t.Helper()
	cmd.Stderr = &logWriter{t: t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{addr: addr, cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-p.done })
	return p
}

// logWriter sends a child's log lines to the test log.
type logWriter struct {
	t  *testing.T
	mu sync.Mutex
}

func (w *logWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func status(p *process, path string) int {
	resp, err := http.Get("http://" + p.addr + path)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func online(t *testing.T, p *process, key string) bool {
	t.Helper()
	resp, err := http.Get("http://" + p.addr + "/v1/presence/" + key)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Online bool }
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("presence: %s", b)
	}
	return out.Online
}

func connect(t *testing.T, p *process, query string) *websocket.Conn {
	t.Helper()
	ws, _, err := websocket.Dial(context.Background(), "ws://"+p.addr+"/v1/ws?"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	return ws
}

func TestKilledNodeKeysGoOfflineWithinTheTTL(t *testing.T) {
	r := redistest.Start(t)
	const ttl = 2 * time.Second
	a := startProcess(t, "--node-id", "a", "--redis-url", r.URL(), "--presence-ttl", ttl.String())
	b := startProcess(t, "--node-id", "b", "--redis-url", r.URL(), "--presence-ttl", ttl.String())
	connect(t, b, "key=u1")
	if !online(t, a, "u1") {
		t.Fatal("u1 not online before the kill")
	}

	if err := b.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	// The last heartbeat came at most ttl/3 before the kill, so the entry
	// must lapse within the TTL; the slack is for a loaded CI machine.
	wait.Until(t, ttl+2*time.Second, "u1 offline after b was killed", func() bool { return !online(t, a, "u1") })
	t.Logf("u1 read offline %v after kill -9 (ttl %v)", time.Since(killed).Round(10*time.Millisecond), ttl)
}

func TestSIGTERMClosesClientsWith1012ClearsPresenceAndExitsZero(t *testing.T) {
	r := redistest.Start(t)
	a := startProcess(t, "--node-id", "a", "--redis-url", r.URL())
	b := startProcess(t, "--node-id", "b", "--redis-url", r.URL(), "--drain-window", "500ms")
	ws := connect(t, b, "key=u1")

	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_, _, err := ws.Read(context.Background())
	if code := protocol.CloseCode(websocket.CloseStatus(err)); code != protocol.CloseServiceRestart {
		t.Errorf("client closed with %d (%v), want 1012", code, err)
	}
	select {
	case <-b.done:
		if b.err != nil {
			t.Fatalf("b exited with %v, want status 0", b.err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("b did not exit within 15s of SIGTERM")
	}
	if online(t, a, "u1") {
		t.Fatal("u1 still online after b exited")
	}
}

func TestConfigComesFromFlagsThenEnvironmentThenDefaults(t *testing.T) {
	env := map[string]string{
		"HERALD_REDIS_URL":    "redis://env:6379",
		"HERALD_NODE_ID":      "from-env",
		"HERALD_PRESENCE_TTL": "30s",
		"HERALD_QUEUE_BYTES":  "2048",
	}
	cfg, _, _, err := parseConfig([]string{"--node-id", "from-flag", "--read-limit", "100"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"flag beats env", cfg.NodeID, "from-flag"},
		{"env beats default", cfg.Redis.URL, "redis://env:6379"},
		{"env duration", cfg.PresenceTTL, 30 * time.Second},
		{"env integer", cfg.QueueBytes, 2048},
		{"flag integer", cfg.ReadLimit, int64(100)},
		{"default listen", cfg.Listen, "127.0.0.1:8080"},
		{"default ping", cfg.PingInterval, 25 * time.Second},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestRedisClusterAndSentinelSettingsComeFromFlagsAndVariables(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "redis-password")
	os.WriteFile(pwFile, []byte("from-file\n"), 0o600)
	env := map[string]string{
		"HERALD_REDIS_CLUSTER_ADDRS":     "10.0.0.1:6379, 10.0.0.2:6379",
		"HERALD_REDIS_MIN_REPLICAS":      "1",
		"HERALD_REDIS_SENTINEL_PASSWORD": "sentinel-secret",
		"HERALD_REDIS_USERNAME":          "herald",
	}
	cfg, _, _, err := parseConfig([]string{"--redis-password-file", pwFile, "--redis-tls"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Redis
	if r.Topology() != redisconn.Cluster || len(r.ClusterAddrs) != 2 || r.ClusterAddrs[1] != "10.0.0.2:6379" {
		t.Errorf("cluster addrs = %q (%v)", r.ClusterAddrs, r.Topology())
	}
	if r.Username != "herald" || r.Password != "from-file" || r.SentinelPassword != "sentinel-secret" || !r.TLS || r.MinReplicas != 1 {
		t.Errorf("redis config = %+v", r)
	}
	if r.ReplicaTimeout != 500*time.Millisecond {
		t.Errorf("default replica timeout = %v", r.ReplicaTimeout)
	}
	cfg, _, _, err = parseConfig([]string{"--redis-sentinel-addrs", "s1:26379,s2:26379,s3:26379", "--redis-master-name", "herald"},
		func(k string) string { return map[string]string{"HERALD_REDIS_PASSWORD": "from-env"}[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Redis.Topology() != redisconn.Sentinel || len(cfg.Redis.SentinelAddrs) != 3 || cfg.Redis.Password != "from-env" {
		t.Errorf("sentinel config = %+v", cfg.Redis)
	}
}

func TestAuthMaterialComesFromFilesOrVariables(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	os.WriteFile(secretFile, []byte("a-secret-of-at-least-32-bytes-long\n"), 0o600)
	env := map[string]string{
		"HERALD_API_KEYS": `[{"name":"game","key":"game-key-0123456789abcdef","scopes":["send"]}]`,
	}
	cfg, _, _, err := parseConfig([]string{"--token-secret-file", secretFile, "--listen", ":8080", "--public-topics", "board, news"},
		func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.APIKeys == nil || cfg.Tokens == nil || cfg.Open() {
		t.Fatal("keys or token verifier not loaded")
	}
	if _, ok := cfg.APIKeys.Authenticate("game-key-0123456789abcdef"); !ok {
		t.Error("the key from HERALD_API_KEYS does not authenticate")
	}
	if len(cfg.PublicTopics) != 2 || cfg.PublicTopics[1] != "news" {
		t.Errorf("public topics = %q", cfg.PublicTopics)
	}
}

func TestBadConfigIsRefusedWithAClearMessage(t *testing.T) {
	tests := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--presence-ttl", "soon"}, nil, "presence-ttl"},
		{nil, map[string]string{"HERALD_QUEUE_MESSAGES": "many"}, "HERALD_QUEUE_MESSAGES"},
		{[]string{"--log-level", "loud"}, nil, "log level"},
		{[]string{"extra"}, nil, "unexpected arguments"},
		{[]string{"--node-id", "bad id", "--listen", "127.0.0.1:0"}, nil, "node id"},
		{[]string{"--redis-url", "http://x", "--listen", "127.0.0.1:0"}, nil, "redis url"},
		{[]string{"--listen", "0.0.0.0:0"}, nil, "refusing to listen on 0.0.0.0:0 without authentication"},
		{nil, map[string]string{"HERALD_API_KEYS": `[{"name":"a","key":"short","scopes":["send"]}]`}, "shorter than"},
		{nil, map[string]string{"HERALD_TOKEN_SECRET": "short"}, "token secret"},
		{[]string{"--api-keys-file", "/nonexistent"}, nil, "api keys"},
		{[]string{"--token-public-key-file", "/nonexistent"}, nil, "token keys"},
		{[]string{"--redis-url", "redis://a:1", "--redis-cluster-addrs", "b:1"}, nil, "exactly one of --redis-url, --redis-cluster-addrs and --redis-sentinel-addrs"},
		{[]string{"--redis-cluster-addrs", "b:1", "--redis-sentinel-addrs", "c:1", "--redis-master-name", "m"}, nil, "exactly one of"},
		{[]string{"--redis-sentinel-addrs", "c:1"}, nil, "needs --redis-master-name"},
		{[]string{"--redis-master-name", "m"}, nil, "goes with --redis-sentinel-addrs"},
		{[]string{"--redis-cluster-addrs", "nohostport"}, nil, `"nohostport" is not host:port`},
		{[]string{"--redis-url", "redis://a:1", "--redis-tls"}, nil, "put the credentials in the URL"},
		{[]string{"--redis-min-replicas", "1"}, nil, "--redis-min-replicas needs Redis"},
		{[]string{"--redis-min-replicas", "-1", "--redis-url", "redis://a:1"}, nil, "min replicas must be 0 or more"},
		{[]string{"--redis-replica-timeout", "5s", "--redis-url", "redis://a:1"}, nil, "replica timeout must be between 0 and 1s"},
		{[]string{"--redis-cluster-addrs", "a:1", "--redis-password-file", "/nonexistent"}, nil, "redis password"},
	}
	for _, tc := range tests {
		err := run(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run(%v, %v) = %v, want an error about %q", tc.args, tc.env, err, tc.want)
		}
	}
}

// execHerald is the command that runs the herald binary with args.
func execHerald(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	return exec.Command(herald(t), args...)
}
