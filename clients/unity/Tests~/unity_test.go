// Package unity_test builds the C# client with Mono's mcs and runs its test
// program against real herald nodes on a real Redis. Unity ignores folders
// whose names end in "~", so nothing here ships in the package.
package unity_test

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/internal/wait"
)

const tokenSecret = "unity-test-secret-unity-test-secret-0123"

// TestCSharpClient compiles Runtime/ (Unity layer included: it compiles to
// nothing outside Unity), the console sample and the test program with
// mcs -langversion:6, starts nodes as processes (so that one can be killed
// with SIGKILL and one stopped with SIGSTOP), and runs the test program
// under mono. It prints "N passed, M failed"; any failure fails this test.
func TestCSharpClient(t *testing.T) {
	for _, tool := range []string{"mcs", "mono"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found (make test installs mono-mcs and mono-devel): %v", tool, err)
		}
	}
	out := t.TempDir()
	lib := filepath.Join(out, "Herald.dll")
	runtime, _ := filepath.Glob("../Runtime/*/*.cs")
	mcs(t, append([]string{"-target:library", "-out:" + lib}, runtime...)...)
	mcs(t, "-out:"+filepath.Join(out, "ConsoleSample.exe"), "-r:"+lib, "../Samples~/Console/Program.cs")
	// The Unity layer and the ItemPush sample, against stubs of UnityEngine.
	unityLayer := filepath.Join(out, "UnityLayerTests.exe")
	samples, _ := filepath.Glob("../Samples~/ItemPush/*.cs")
	mcs(t, append(append([]string{"-define:UNITY_5_3_OR_NEWER", "-out:" + unityLayer, "UnityStubs.cs", "UnityLayerTests.cs"}, runtime...), samples...)...)
	tests := filepath.Join(out, "HeraldTests.exe")
	mcs(t, "-out:"+tests, "-r:"+lib, "HeraldTests.cs", "FrameTests.cs", "NodeTests.cs", "TickTests.cs")

	r := redistest.Start(t)
	bin := buildHerald(t)
	a := startNode(t, bin, "--node-id", "a", "--redis-url", r.URL(), "--drain-window", "100ms")
	b := startNode(t, bin, "--node-id", "b", "--redis-url", r.URL())
	k := startNode(t, bin, "--node-id", "k", "--redis-url", r.URL(), "--presence-ttl", "2s")
	p := startNode(t, bin, "--node-id", "p", "--redis-url", r.URL())
	l := startNode(t, bin, "--node-id", "l", "--redis-url", r.URL(), "--max-conns-per-key", "1")
	s := startNode(t, bin, "--node-id", "s", "--redis-url", r.URL(), "--env", "HERALD_TOKEN_SECRET="+tokenSecret)
	fake := fakeServer(t)

	cmd := exec.Command("mono", "--debug", tests)
	cmd.Env = append(os.Environ(),
		"HERALD_A="+a.url, "HERALD_B="+b.url,
		"HERALD_K="+k.url, "HERALD_K_PID="+strconv.Itoa(k.cmd.Process.Pid),
		"HERALD_P="+p.url, "HERALD_P_PID="+strconv.Itoa(p.cmd.Process.Pid),
		"HERALD_L="+l.url,
		"HERALD_S="+s.url, "HERALD_SECRET="+tokenSecret,
		"HERALD_FAKE="+fake)
	// A paused node must not outlive the test stopped.
	t.Cleanup(func() { p.cmd.Process.Signal(syscall.SIGCONT) })
	output, err := cmd.CombinedOutput()
	t.Log("\n" + string(output))
	summary := regexp.MustCompile(`(\d+) passed, (\d+) failed`).FindStringSubmatch(string(output))
	switch {
	case summary == nil:
		t.Fatalf("the C# test program printed no summary: %v", err)
	case summary[2] != "0" || err != nil:
		t.Fatalf("C# tests: %s passed, %s failed (%v)", summary[1], summary[2], err)
	}
	if n, _ := strconv.Atoi(summary[1]); n < 44 {
		t.Fatalf("only %d C# tests ran", n)
	}

	unity := exec.Command("mono", "--debug", unityLayer)
	unity.Env = append(os.Environ(), "HERALD_A="+a.url)
	output, err = unity.CombinedOutput()
	t.Log("\n" + string(output))
	layer := regexp.MustCompile(`unity layer: (\d+) passed, (\d+) failed`).FindStringSubmatch(string(output))
	if err != nil || layer == nil || layer[2] != "0" {
		t.Fatalf("Unity layer: %v", err)
	}
	if n, _ := strconv.Atoi(layer[1]); n < 5 {
		t.Fatalf("only %d Unity layer tests ran", n)
	}

	// The console sample, as a developer would run it.
	sample := exec.Command("mono", filepath.Join(out, "ConsoleSample.exe"), "ws"+strings.TrimPrefix(a.url, "http"), "player-1")
	var printed lockedBuffer
	sample.Stdout = &printed
	if err := sample.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sample.Process.Kill(); sample.Wait() }()
	wait.Until(t, 10*time.Second, "the sample to connect", func() bool { return strings.Contains(printed.String(), "connected to") })
	resp, err := http.Post(a.url+"/v1/send?key=player-1", "text/plain", strings.NewReader("Sword x1"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	wait.Until(t, 10*time.Second, "the sample to print the message", func() bool { return strings.Contains(printed.String(), `"Sword x1"`) })
}

// TestCoreStartsNoThreadsOrTimers reads the core's source: under WebGL
// there are no threads, and Task timers and blocking waits never fire, so
// nothing in Runtime/Core but the ClientWebSocket transport (Transport.cs
// and HandshakeAnswer.cs, which never run there) may use them; the one Result read is of the token Task
// after IsCompleted. The tick tests check the same at run time.
func TestCoreStartsNoThreadsOrTimers(t *testing.T) {
	banned := regexp.MustCompile(`Task\.Run|Task\.Delay|Task\.Factory|CancelAfter|new Thread\b|ThreadPool|\bTimer\b|\.Wait\(|\.Result\b|ContinueWith|\bawait\b|SynchronizationContext`)
	files, _ := filepath.Glob("../Runtime/Core/*.cs")
	if len(files) == 0 {
		t.Fatal("no core sources found")
	}
	for _, f := range files {
		if name := filepath.Base(f); name == "Transport.cs" || name == "HandshakeAnswer.cs" {
			continue // the ClientWebSocket transport's, which never runs under WebGL
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			code := line
			if c := strings.Index(code, "//"); c >= 0 {
				code = code[:c]
			}
			if m := banned.FindString(code); m != "" && !strings.Contains(code, "done.Result") {
				t.Errorf("%s:%d uses %s: %s", filepath.Base(f), i+1, m, strings.TrimSpace(line))
			}
		}
	}
}

// lockedBuffer collects a child's output while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func mcs(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command("mcs", append([]string{"-langversion:6", "-warnaserror+", "-nowarn:1591"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mcs %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func buildHerald(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "herald")
	if out, err := exec.Command("go", "build", "-o", bin, "../../../cmd/server").CombinedOutput(); err != nil {
		t.Fatalf("build herald: %v\n%s", err, out)
	}
	return bin
}

type process struct {
	url string
	cmd *exec.Cmd
}

// startNode runs a herald process on a free port; "--env", "K=V" pairs set
// its environment instead of becoming flags.
func startNode(t *testing.T, bin string, args ...string) *process {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	var flags, env []string
	for i := 0; i < len(args); i++ {
		if args[i] == "--env" {
			env = append(env, args[i+1])
			i++
			continue
		}
		flags = append(flags, args[i])
	}
	cmd := exec.Command(bin, append([]string{"--listen", addr, "--log-level", "error"}, flags...)...)
	cmd.Env = append(os.Environ(), env...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var logs sync.WaitGroup
	logs.Go(func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			t.Log(sc.Text())
		}
	})
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGCONT)
		cmd.Process.Kill()
		cmd.Wait()
		logs.Wait()
	})
	p := &process{url: "http://" + addr, cmd: cmd}
	wait.Until(t, 10*time.Second, "node "+addr+" ready", func() bool {
		resp, err := http.Get(p.url + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

// fakeServer is a WebSocket server that sends what no herald node would:
// malformed and hostile frames, then one good message.
func fakeServer(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer ws.CloseNow()
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		for _, frame := range []string{
			`{"id":"1-0","key":"u1","data":`,     // cut short
			`not json at all`,                    // not JSON
			`[1,2,3]`,                            // not an object
			`{"id":"m1","key":"u1"}`,             // no data
			strings.Repeat("[", 100000),          // nested without end
			`{"id":"2-0","key":"u1","data":1,}`,  // trailing comma
			"{\"id\":\"3-0\",\"data\":\"\x01\"}", // control character in a string
			`{"id":"5-0","key":"u1","data":{"after":"the junk"},"ts":5}`,
		} {
			if err := ws.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
				return
			}
		}
		ws.Read(ctx) // hold the connection until the client leaves
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}
