package httpapi_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/herald-push/herald/internal/browsertest"
	"github.com/herald-push/herald/internal/nodetest"
	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/pkg/node"
	"github.com/herald-push/herald/pkg/redisconn"
)

// browser starts headless Chromium for the test, with extra options (flags) if
// given.
func browser(t *testing.T, extra ...chromedp.ExecAllocatorOption) context.Context {
	return browsertest.Start(t, extra...)
}

// tab opens a new tab of the browser, with a deadline for everything in it.
func tab(t *testing.T, browser context.Context) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser)
	ctx, cancelTimeout := context.WithTimeout(ctx, 30*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancel() })
	return ctx
}

func TestTheBoardShowsASuggestionPostedFromTheFormThroughAnotherNode(t *testing.T) {
	r := redistest.Start(t)
	a := startNode(t, "a", r.URL())
	b := startNode(t, "b", r.URL())
	br := browser(t)

	board := tab(t, br)
	if err := chromedp.Run(board, chromedp.Tasks{
		chromedp.Navigate(a.URL("/")),
		chromedp.Poll(`document.querySelector("#state").textContent === "live"`, nil),
	}); err != nil {
		t.Fatalf("board on node a never went live: %v", err)
	}

	form := tab(t, br)
	var status string
	if err := chromedp.Run(form, chromedp.Tasks{
		chromedp.Navigate(b.URL("/")),
		chromedp.SendKeys("#name", "Ada"),
		chromedp.SendKeys("#text", "Fix the fountain on Main Street"),
		chromedp.Click("#submit"),
		chromedp.Poll(`document.querySelector("#formStatus").textContent === "posted"`, nil),
		chromedp.Text("#formStatus", &status),
	}); err != nil {
		t.Fatalf("posting from the form on node b: %v (status %q)", err, status)
	}

	var shown string
	if err := chromedp.Run(board, chromedp.Tasks{
		chromedp.Poll(`document.querySelector("#board li") !== null`, nil),
		chromedp.Text("#board li", &shown),
	}); err != nil {
		t.Fatalf("the suggestion never appeared on the board: %v", err)
	}
	if !strings.Contains(shown, "Fix the fountain on Main Street") || !strings.Contains(shown, "Ada") {
		t.Fatalf("board shows %q", shown)
	}
}

func TestTheConsoleListsEveryNodeAndTailsATopic(t *testing.T) {
	r := redistest.Start(t)
	a := startNode(t, "a", r.URL())
	startNode(t, "b", r.URL())
	startNode(t, "c", r.URL())
	console := tab(t, browser(t))

	var nodes string
	if err := chromedp.Run(console, chromedp.Tasks{
		chromedp.Navigate(a.URL("/console")),
		chromedp.Poll(`document.querySelectorAll("#nodes tr").length === 3`, nil),
		chromedp.Evaluate(`[...document.querySelectorAll("#nodes tr")].map(r => r.dataset.node).join(",")`, &nodes),
		chromedp.Click(`#tailForm button`),
		chromedp.Poll(`document.querySelector("#tailState").textContent === "open"`, nil),
	}); err != nil {
		t.Fatalf("console: %v (nodes %q)", err, nodes)
	}
	if nodes != "a,b,c" {
		t.Fatalf("console lists %q, want a,b,c", nodes)
	}
	post(t, a.URL("/v1/topics/board"), "text/plain", "seen in the console")
	var tail string
	if err := chromedp.Run(console, chromedp.Tasks{
		chromedp.Poll(`document.querySelector("#tail div") !== null`, nil),
		chromedp.Text("#tail div", &tail),
	}); err != nil || !strings.Contains(tail, "seen in the console") {
		t.Fatalf("the console's tail shows %q (%v)", tail, err)
	}
}

func TestABoardWhoseNodeRestartsReconnectsAndShowsWhatWasPostedMeanwhile(t *testing.T) {
	r := redistest.Start(t)
	a := startNode(t, "a", r.URL(), withHistory)
	b := startNode(t, "b", r.URL(), withHistory)
	board := tab(t, browser(t))
	if err := chromedp.Run(board,
		chromedp.Navigate(a.URL("/")),
		chromedp.Poll(`document.querySelector("#state").textContent === "live"`, nil),
	); err != nil {
		t.Fatalf("board never went live: %v", err)
	}

	a.stop() // a rolling restart: the board loses its node
	if err := chromedp.Run(board,
		chromedp.Poll(`document.querySelector("#state").textContent !== "live"`, nil),
	); err != nil {
		t.Fatalf("the board did not notice its node stopping: %v", err)
	}
	post(t, b.URL("/v1/topics/board"), "application/json", `{"data":{"text":"posted while the board was away","name":"Ada"}}`)
	restarted := nodetest.StartAt(t, a.Addr, node.Config{NodeID: "a", Redis: redisconn.Config{URL: r.URL()}, Storage: node.Storage{HistoryTopics: []string{"board"}}})
	_ = restarted

	var shown string
	if err := chromedp.Run(board,
		chromedp.Poll(`document.querySelector("#state").textContent === "live" && document.querySelector("#board li") !== null`, nil),
		chromedp.Text("#board li", &shown),
	); err != nil {
		t.Fatalf("the board never showed the post made while it was away: %v", err)
	}
	if !strings.Contains(shown, "posted while the board was away") {
		t.Fatalf("board shows %q", shown)
	}
}
