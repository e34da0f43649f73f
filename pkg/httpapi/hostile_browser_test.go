package httpapi_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// A poisoned anonymous post is refused; the board that was watching stays
// live and shows the next, valid post, and a board opened afterwards (which
// is replayed the history) goes live too.
func TestAPoisonedBoardPostIsRefusedAndTheBoardStaysLive(t *testing.T) {
	n := startNode(t, "solo", "", withPublicBoard)
	br := browser(t)
	board := tab(t, br)
	if err := chromedp.Run(board, chromedp.Tasks{
		chromedp.Navigate(n.URL("/")),
		chromedp.Poll(`document.querySelector("#state").textContent === "live"`, nil),
	}); err != nil {
		t.Fatalf("board never went live: %v", err)
	}
	status, out := post(t, n.URL("/v1/topics/board"), "application/json", `{"data":{"text":"poison `+"\xff"+` here"}}`)
	if status != http.StatusBadRequest || errorCode(out) != "invalid_utf8" {
		t.Fatalf("poisoned post: %d %v", status, out)
	}
	if status, out := post(t, n.URL("/v1/topics/board"), "application/json", `{"data":{"text":"benches by the lake","name":"Ada"}}`); status != http.StatusOK {
		t.Fatalf("valid post: %d %v", status, out)
	}
	for name, ctx := range map[string]any{"the watching board": board, "a board opened afterwards": nil} {
		c := board
		if ctx == nil {
			c = tab(t, br)
			if err := chromedp.Run(c, chromedp.Navigate(n.URL("/"))); err != nil {
				t.Fatal(err)
			}
		}
		var shown, state string
		if err := chromedp.Run(c, chromedp.Tasks{
			chromedp.Poll(`document.querySelector("#board li") !== null && document.querySelector("#state").textContent === "live"`, nil),
			chromedp.Text("#board", &shown),
			chromedp.Text("#state", &state),
		}); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !strings.Contains(shown, "benches by the lake") || strings.Contains(shown, "poison") || state != "live" {
			t.Fatalf("%s shows %q, state %q", name, shown, state)
		}
	}
}

// A page on another site makes the requests a cross-site attacker can make
// without asking (no-cors: text/plain bodies) against a node in open mode.
// The connected client gets nothing; the node counts the refusals.
func TestACrossSitePageCannotSendThroughANodeInOpenMode(t *testing.T) {
	n := startNode(t, "solo", "", withPublicBoard)
	victim := dial(t, n, "key=u1&topics=board")
	api := "http://" + n.Addr
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><title>cute cats</title><script>
const api = %q;
const shots = [
  [api + "/v1/send", '{"key":"u1","data":"x"}'],
  [api + "/v1/send?key=u1", "x"],
  [api + "/v1/batch", '{"items":[{"key":"u1","data":"x"}]}'],
  [api + "/v1/topics/board", '{"data":{"text":"spam"}}'],
];
Promise.allSettled(shots.map(([url, body]) => fetch(url, {method: "POST", mode: "no-cors", body})))
  .then(() => { document.title = "done"; });
</script>`, api)
	}))
	t.Cleanup(evil.Close)

	page := tab(t, browser(t))
	var title string
	if err := chromedp.Run(page, chromedp.Tasks{
		chromedp.Navigate(evil.URL),
		chromedp.Poll(`document.title === "done"`, nil),
		chromedp.Title(&title),
	}); err != nil {
		t.Fatalf("the cross-site page: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	series := `herald_rejected_requests_total{code="origin_not_allowed"}`
	for metricLine(t, n, series) != series+" 4" {
		if time.Now().After(deadline) {
			t.Fatalf("refusals counted: %q, want 4", metricLine(t, n, series))
		}
		time.Sleep(20 * time.Millisecond)
	}
	victim.nothing(200 * time.Millisecond)
}
