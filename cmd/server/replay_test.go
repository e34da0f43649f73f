package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/herald-push/herald/internal/wait"
)

// An operator sets how many of the board's newest posts a new screen is
// shown, on the command line or in the environment. 0 shows it nothing
// from before it connected; a negative count is a mistake, refused at
// start with a message naming the setting, not taken as another "none".
func TestHistoryReplayZeroShowsNothingAndANegativeCountIsRefused(t *testing.T) {
	const want = "--history-replay (HERALD_HISTORY_REPLAY) must be 0 (none) or more, got -1"
	for name, out := range map[string]string{
		"flag":     refused(t, nil, "--history-replay", "-1"),
		"variable": refused(t, []string{"HERALD_HISTORY_REPLAY=-1"}),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("%s -1: the refusal does not say %q: %s", name, want, out)
		}
	}

	for _, tc := range []struct {
		name  string
		env   []string
		args  []string
		shown []string // the old posts a new subscriber gets
	}{
		{"the default", nil, nil, []string{`"bench"`, `"fountain"`}},
		{"flag 0", nil, []string{"--history-replay", "0"}, nil},
		{"variable 0", []string{"HERALD_HISTORY_REPLAY=0"}, nil, nil},
		{"flag 1", nil, []string{"--history-replay", "1"}, []string{`"fountain"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := freeAddr(t)
			cmd := execHerald(t, append([]string{"--listen", addr}, tc.args...)...)
			cmd.Env = append(os.Environ(), tc.env...)
			p := launch(t, addr, cmd)
			wait.Until(t, 10*time.Second, "node ready", func() bool { return status(p, "/readyz") == http.StatusOK })
			for _, text := range []string{"bench", "fountain"} {
				postText(t, p, "/v1/topics/board", text)
			}
			ws := connect(t, p, "key=screen&topics=board")
			// One reader for the connection: a Read whose context ends
			// closes the WebSocket, so absence is waited for here instead.
			frames := make(chan []byte, 16)
			go func() {
				defer close(frames)
				for {
					_, b, err := ws.Read(context.Background())
					if err != nil {
						return
					}
					frames <- b
				}
			}()
			var got []string
		old:
			for {
				select {
				case b, ok := <-frames:
					if !ok {
						t.Fatal("the connection ended")
					}
					got = append(got, dataOf(t, b))
				case <-time.After(500 * time.Millisecond):
					break old // nothing more from before
				}
			}
			if strings.Join(got, ",") != strings.Join(tc.shown, ",") {
				t.Fatalf("a new subscriber was shown %v, want %v", got, tc.shown)
			}
			postText(t, p, "/v1/topics/board", "fresh")
			select {
			case b := <-frames:
				if dataOf(t, b) != `"fresh"` {
					t.Fatalf("the live post: %s, want \"fresh\"", b)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the live post did not arrive")
			}
		})
	}
}

// postText posts text to path on p and requires 200.
func postText(t *testing.T, p *process, path, text string) {
	t.Helper()
	resp, err := http.Post("http://"+p.addr+path, "text/plain", strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("post %q to %s: %d", text, path, resp.StatusCode)
	}
}

// dataOf is a frame's data, as JSON text.
func dataOf(t *testing.T, frame []byte) string {
	t.Helper()
	var f struct{ Data json.RawMessage }
	if err := json.Unmarshal(frame, &f); err != nil {
		t.Fatalf("frame %s: %v", frame, err)
	}
	return string(f.Data)
}
