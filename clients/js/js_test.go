package js_test

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/pkg/auth"
	"github.com/herald-push/herald/pkg/node"
)

func startNode(t *testing.T, cfg node.Config) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = l.Addr().String()
	n, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Serve(ctx, l); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	url := "http://" + l.Addr().String()
	for range 300 {
		if resp, err := http.Get(url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return url
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("node not ready")
	return ""
}

// TestJavaScriptClient runs clients/js/test with Node's test runner against
// two real nodes on a real Redis and a node that checks tokens.
func TestJavaScriptClient(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node not found (make test installs it): %v", err)
	}
	gin.SetMode(gin.ReleaseMode)
	r := redistest.Start(t)
	a := startNode(t, node.Config{NodeID: "a", RedisURL: r.URL(), DrainWindow: 10 * time.Millisecond})
	b := startNode(t, node.Config{NodeID: "b", RedisURL: r.URL()})
	v, err := auth.NewVerifier(auth.TokenConfig{HS256Secret: []byte("js-test-secret-js-test-secret-js-test")})
	if err != nil {
		t.Fatal(err)
	}
	secured := startNode(t, node.Config{NodeID: "s", Tokens: v})

	cmd := exec.Command("node", "--experimental-websocket", "--test", "test/")
	cmd.Env = append(os.Environ(), "HERALD_A="+a, "HERALD_B="+b, "HERALD_SECURED="+secured)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	t.Log(out.String())
	if err != nil {
		t.Fatalf("node --test: %v", err)
	}
}
