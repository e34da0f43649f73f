package js_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
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
// two real nodes on a real Redis, a node that checks tokens, and a real HTTP
// proxy in front of the first node that refuses WebSocket upgrades.
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

	noUpgrade := httptest.NewServer(refusingUpgrades(t, a))
	t.Cleanup(noUpgrade.Close)

	cmd := exec.Command("node", "--experimental-websocket", "--experimental-eventsource", "--test", "test/")
	cmd.Env = append(os.Environ(), "HERALD_A="+a, "HERALD_B="+b, "HERALD_SECURED="+secured, "HERALD_NO_UPGRADE="+noUpgrade.URL)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	t.Log(out.String())
	if err != nil {
		t.Fatalf("node --test: %v", err)
	}
}

// refusingUpgrades is a reverse proxy to target that answers every request
// asking for an Upgrade 403, as proxies that do not pass WebSockets do;
// everything else, event streams included (it flushes them as they come),
// it passes on.
func refusingUpgrades(t *testing.T, target string) http.Handler {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "" {
			http.Error(w, "upgrades are not allowed here", http.StatusForbidden)
			return
		}
		proxy.ServeHTTP(w, r)
	})
}
