package js_test

import (
	"bytes"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/herald-push/herald/internal/nodetest"
	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/pkg/auth"
	"github.com/herald-push/herald/pkg/node"
	"github.com/herald-push/herald/pkg/redisconn"
)

// TestJavaScriptClient runs clients/js/test with Node's test runner against
// two real nodes on a real Redis and a node that checks tokens.
func TestJavaScriptClient(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node not found (make test installs it): %v", err)
	}
	r := redistest.Start(t)
	a := nodetest.Start(t, node.Config{NodeID: "a", Redis: redisconn.Config{URL: r.URL()}, Liveness: node.Liveness{DrainWindow: 10 * time.Millisecond}}).URL("")
	b := nodetest.Start(t, node.Config{NodeID: "b", Redis: redisconn.Config{URL: r.URL()}}).URL("")
	v, err := auth.NewVerifier(auth.TokenConfig{HS256Secret: []byte("js-test-secret-js-test-secret-js-test")})
	if err != nil {
		t.Fatal(err)
	}
	secured := nodetest.Start(t, node.Config{NodeID: "s", Security: node.Security{Tokens: v}}).URL("")

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
