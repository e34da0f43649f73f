package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herald-push/herald/internal/apitest"
	"github.com/herald-push/herald/internal/nodetest"
	"github.com/herald-push/herald/pkg/node"
)

// syncBuffer is a bytes.Buffer safe for the listening goroutine.
type syncBuffer struct {
	ch chan string
}

// Every answer these tests receive is checked against the API's OpenAPI
// document.
func TestMain(m *testing.M) { os.Exit(apitest.Main(m)) }

func (b *syncBuffer) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimSpace(string(p)), "\n") {
		b.ch <- line
	}
	return len(p), nil
}

func TestAnOperatorListensSendsAndLooksUpPresence(t *testing.T) {
	url := nodetest.Start(t, node.Config{NodeID: "ctl"}).URL("")
	env := func(k string) string { return map[string]string{"HERALD_URL": url}[k] }

	lines := &syncBuffer{ch: make(chan string, 16)}
	ctx, cancel := context.WithCancel(context.Background())
	listening := make(chan error, 1)
	go func() { listening <- run(ctx, []string{"listen", "-key", "ops"}, env, lines, &bytes.Buffer{}) }()
	defer func() { cancel(); <-listening }()

	var presence bytes.Buffer
	for deadline := time.Now().Add(5 * time.Second); ; {
		presence.Reset()
		run(context.Background(), []string{"presence", "ops"}, env, &presence, &bytes.Buffer{})
		if strings.Contains(presence.String(), `"online": true`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("listener never online: %s", presence.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	var out bytes.Buffer
	if err := run(context.Background(), []string{"send", "-key", "ops", "-store", `{"hello":"world"}`}, env, &out, &bytes.Buffer{}); err != nil {
		t.Fatalf("send: %v\n%s", err, out.String())
	}
	select {
	case line := <-lines.ch:
		var m struct {
			Key  string
			Data map[string]string
		}
		if json.Unmarshal([]byte(line), &m) != nil || m.Key != "ops" || m.Data["hello"] != "world" {
			t.Fatalf("listen printed %q", line)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("listen printed nothing")
	}

	out.Reset()
	if err := run(context.Background(), []string{"send", "-key", "bad key", "x"}, env, &out, &bytes.Buffer{}); err == nil ||
		!strings.Contains(out.String(), "invalid_key") {
		t.Fatalf("a bad send: err=%v out=%s, want the node's invalid_key answer and a failure", err, out.String())
	}
	out.Reset()
	if err := run(context.Background(), []string{"cluster"}, env, &out, &bytes.Buffer{}); err != nil || !strings.Contains(out.String(), `"ctl"`) {
		t.Fatalf("cluster: %v %s", err, out.String())
	}
}

// An operator sends a file of items in one request and reads each item's
// answer.
func TestAnOperatorSendsABatchFromAFile(t *testing.T) {
	url := nodetest.Start(t, node.Config{NodeID: "ctl"}).URL("")
	env := func(k string) string { return map[string]string{"HERALD_URL": url}[k] }
	file := filepath.Join(t.TempDir(), "items.json")
	os.WriteFile(file, []byte(`[{"key":"u1","data":"one"},{"key":"bad key","data":2},{"topic":"board","data":"post"}]`), 0o600)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"batch", "-file", file}, env, &out, &bytes.Buffer{}); err != nil {
		t.Fatalf("batch: %v\n%s", err, out.String())
	}
	var answer struct {
		Results []struct{ Status int }
	}
	if err := json.Unmarshal(out.Bytes(), &answer); err != nil || len(answer.Results) != 3 ||
		answer.Results[0].Status != 200 || answer.Results[1].Status != 400 || answer.Results[2].Status != 200 {
		t.Fatalf("batch printed %s (%v)", out.String(), err)
	}
	if err := run(context.Background(), []string{"batch", "-file", file + ".missing"}, env, &out, &bytes.Buffer{}); err == nil {
		t.Fatal("a missing file was not an error")
	}
}

func TestAskingForHelpPrintsTheUsageAndSucceeds(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}, {"send", "-h"}, {"listen", "--help"}} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), args, func(string) string { return "" }, &out, &errOut)
		if !errors.Is(err, flag.ErrHelp) {
			t.Errorf("%v: err = %v, want the help asked for (exit 0)", args, err)
		}
		if !strings.Contains(out.String()+errOut.String(), "-url") {
			t.Errorf("%v printed no usage: %q %q", args, out.String(), errOut.String())
		}
	}
	if err := run(context.Background(), []string{"nonsense"}, func(string) string { return "" }, &bytes.Buffer{}, &bytes.Buffer{}); err == nil || errors.Is(err, flag.ErrHelp) {
		t.Errorf("an unknown command: err = %v, want a failure", err)
	}
}
