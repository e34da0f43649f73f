package httpapi_test

import (
	"net/http"

	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/herald-push/herald/internal/wait"
)

// A request naming a host the node does not answer to gets 421 before
// anything else; probes and scrapes by IP still work.
func TestOnlyAllowedHostsReachTheAPI(t *testing.T) {
	open := startNode(t, "open", "")
	keyed := startNode(t, "keyed", "", secured(t))
	pinned := startNode(t, "pinned", "", secured(t), func(c *testConfig) { c.AllowedHosts = []string{"push.example", "*.city.example"} })
	anyHost := startNode(t, "any", "", func(c *testConfig) { c.AllowedHosts = []string{"*"} })
	port := func(n *testNode) string { return n.Addr[strings.LastIndexByte(n.Addr, ':'):] }

	tests := []struct {
		name   string
		n      *testNode
		host   string // "" keeps the node's own address
		path   string
		status int
	}{
		{"open node, its own address", open, "", "/v1/cluster", 200},
		{"open node, localhost", open, "localhost" + port(open), "/v1/cluster", 200},
		{"open node, LOCALHOST without port", open, "LOCALHOST", "/v1/cluster", 200},
		{"open node, a name under localhost", open, "board.localhost" + port(open), "/v1/cluster", 200},
		{"open node, [::1]", open, "[::1]" + port(open), "/v1/cluster", 200},
		{"open node, a rebinding name", open, "rebind.test" + port(open), "/v1/cluster", 421},
		{"open node, a rebinding name posting", open, "rebind.test" + port(open), "/v1/send?key=u1", 421},
		{"open node, a rebinding name opening a socket", open, "rebind.test" + port(open), "/v1/ws?key=u1", 421},
		{"open node, a rebinding name on the board page", open, "rebind.test" + port(open), "/", 421},
		{"open node, localhost.rebind.test", open, "localhost.rebind.test", "/v1/cluster", 421},
		{"open node, kubelet probe by pod IP", open, "10.1.2.3:8080", "/healthz", 200},
		{"open node, readiness probe by pod IP", open, "10.1.2.3:8080", "/readyz", 200},
		{"open node, scrape by pod IP", open, "10.1.2.3:8080", "/metrics", 200},
		{"keyed node, any name", keyed, "push.example", "/healthz", 200},
		{"keyed node, any name reaches auth", keyed, "rebind.test", "/v1/cluster", 401},
		{"pinned node, its name", pinned, "PUSH.example:443", "/v1/openapi.json", 200},
		{"pinned node, a subdomain", pinned, "north.city.example", "/v1/openapi.json", 200},
		{"pinned node, the bare parent of a subdomain pattern", pinned, "city.example", "/v1/openapi.json", 421},
		{"pinned node, another name", pinned, "rebind.test", "/v1/openapi.json", 421},
		{"pinned node, scrape by IP", pinned, "10.1.2.3", "/metrics", 200},
		{"open node allowing any host", anyHost, "rebind.test", "/v1/cluster", 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			method := http.MethodGet
			if strings.HasPrefix(tc.path, "/v1/send") {
				method = http.MethodPost
			}
			req, _ := http.NewRequest(method, tc.n.URL(tc.path), strings.NewReader("hello"))
			if tc.host != "" {
				req.Host = tc.host
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			out := decode(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("Host %q %s: %d %v, want %d", tc.host, tc.path, resp.StatusCode, out, tc.status)
			}
			if tc.status == 421 && errorCode(out) != "host_not_allowed" {
				t.Fatalf("421 with %v, want host_not_allowed", out)
			}
		})
	}
}

// DNS rebinding, played in a real browser: a page on rebind.test, a name
// the attacker points at the node's address, tries to read the cluster and
// open a socket, and gets neither; the same page on localhost gets both.
func TestAPageOnARebindingNameCannotReachAnOpenNode(t *testing.T) {
	n := startNode(t, "a", "")
	port := n.Addr[strings.LastIndexByte(n.Addr, ':')+1:]
	br := browser(t, chromedp.Flag("host-resolver-rules", "MAP rebind.test 127.0.0.1"))
	const attempt = `(async () => {
		const r = await fetch("/v1/cluster");
		const ws = await new Promise((done) => {
			const w = new WebSocket(location.origin.replace("http", "ws") + "/v1/ws?key=u1");
			w.onopen = () => { w.close(); done("open"); };
			w.onerror = () => done("refused");
		});
		return r.status + " " + ws;
	})()`
	for _, tc := range []struct{ origin, want string }{
		{"http://rebind.test:" + port, "421 refused"},
		{"http://localhost:" + port, "200 open"},
	} {
		t.Run(tc.origin, func(t *testing.T) {
			page := tab(t, br)
			var got string
			if err := chromedp.Run(page,
				chromedp.Navigate(tc.origin+"/"),
				chromedp.Evaluate(attempt, &got, func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) }),
			); err != nil {
				t.Fatalf("page on %s: %v", tc.origin, err)
			}
			if got != tc.want {
				t.Fatalf("page on %s: fetch and socket %q, want %q", tc.origin, got, tc.want)
			}
		})
	}
	// Nothing of the rebinding page's attempt is left connected.
	wait.Until(t, 5*time.Second, "u1 offline", func() bool { return presenceOf(t, n, "u1")["online"] == false })
}
