// Package browsertest starts headless Chromium (Debian's package) for tests
// that check what a real browser does: the board, the console, the
// JavaScript client's fallbacks, the Unity client's WebGL transport.
package browsertest

import (
	"context"
	"os/exec"
	"testing"

	"github.com/chromedp/chromedp"
)

// Start starts the browser for the test, with extra options (flags) if
// given, and stops it when the test ends. It fails the test when no
// Chromium is installed: make deps installs it.
func Start(t testing.TB, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	var path string
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		t.Fatal("chromium not found (make test installs it)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.Flag("headless", true), chromedp.Flag("disable-gpu", true))
	opts = append(opts, extra...)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	if err := chromedp.Run(ctx, chromedp.Tasks{}); err != nil { // start the browser now
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}
