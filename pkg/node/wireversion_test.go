package node_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herald-push/herald/internal/nodetest"
	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/internal/wait"
	"github.com/herald-push/herald/pkg/fanout"
	"github.com/herald-push/herald/pkg/node"
	"github.com/herald-push/herald/pkg/redisconn"
)

// A node more than one release newer writes frames of a wire version this
// node does not read; an operator sees each one counted in
// herald_bus_unknown_version_total.
func TestFramesOfAnUnknownWireVersionAreCountedInTheNodesMetrics(t *testing.T) {
	r := redistest.Start(t)
	n := nodetest.Start(t, node.Config{NodeID: "a", Redis: redisconn.Config{URL: r.URL()}})
	series := func() string {
		resp, err := http.Get(n.URL("/metrics"))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		for _, line := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(line, "herald_bus_unknown_version_total ") {
				return line
			}
		}
		return ""
	}
	if got := series(); got != "herald_bus_unknown_version_total 0" {
		t.Fatalf("before any: %q", got)
	}
	m := &fanout.Message{Kind: fanout.KindKeys, Origin: "newer", ID: "m1", Keys: []string{"u1"}, Data: []byte(`1`)}
	frame, _ := m.AppendWire(nil, fanout.WireV2)
	frame[5] = 3 // the version byte
	for range 2 {
		if err := r.Client().Publish(context.Background(), "herald:node:a", frame).Err(); err != nil {
			t.Fatal(err)
		}
	}
	wait.Until(t, 5*time.Second, "both frames counted", func() bool {
		return series() == "herald_bus_unknown_version_total 2"
	})
}
