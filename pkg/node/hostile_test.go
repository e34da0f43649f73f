package node_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/internal/wait"
	"github.com/herald-push/herald/pkg/fanout"
)

// A message arriving from the bus whose data is not valid text (a foreign
// or older publisher on herald's channels) is dropped and counted, and the
// connection it was for stays open and gets what comes next.
func TestABusMessageWhoseDataIsNotTextIsDroppedCountedAndNeverWritten(t *testing.T) {
	r := redistest.Start(t)
	a := startNode(t, "a", r.URL())
	cl := dial(t, a, "key=u1")
	// Each would be pasted into the client's frame as it is: a bad byte
	// closes a browser with 1007, the others break the frame or forge its
	// fields (another id, another key).
	bad := []*fanout.Message{
		{Kind: fanout.KindKeys, ID: "m1", Data: []byte(`"` + "\xff" + `"`)},
		{Kind: fanout.KindKeys, ID: "m2", Data: []byte(`1,"id":"9999999999999-0","key":"victim"`)},
		{Kind: fanout.KindKeys, ID: "m3", Data: []byte(`{"unterminated`)},
		{Kind: fanout.KindKeys, ID: `x","id":"9999999999999-0`, Data: []byte(`"injected"`)},
		{Kind: fanout.KindKeys, ID: "bad\xffid", Data: []byte(`"ok"`)},
		{Kind: fanout.KindBroadcast, ID: "m6", Data: []byte(`{"broken`)},
	}
	for _, m := range bad {
		m.Origin, m.TS = "intruder", 1
		if m.Kind == fanout.KindKeys {
			m.Keys = []string{"u1"}
		}
		payload, _ := m.AppendBinary(nil)
		channel := "herald:node:a"
		if m.Kind == fanout.KindBroadcast {
			channel = "herald:broadcast"
		}
		if n, err := r.Client().Publish(context.Background(), channel, payload).Result(); err != nil || n != 1 {
			t.Fatalf("publish %q to %s: %d %v", m.ID, channel, n, err)
		}
	}
	want := fmt.Sprintf(`herald_drops_total{reason="invalid_text"} %d`, len(bad))
	wait.Until(t, 5*time.Second, "every bad bus message dropped and counted", func() bool {
		return metricLine(t, a, `herald_drops_total{reason="invalid_text"}`) == want
	})
	marker := sendJSON(t, a, `{"key":"u1","data":"after"}`)
	if f := cl.next(); f.ID != marker["id"] {
		t.Fatalf("the client's first frame is %+v, want the one sent after", f)
	}
}
