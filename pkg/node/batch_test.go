package node_test

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/pkg/httpapi"
	"github.com/herald-push/herald/pkg/inbox"
	"github.com/herald-push/herald/pkg/node"
	"github.com/herald-push/herald/pkg/redisconn"
)

// A Go program embedding the engine hands it a batch, and a backend posts
// the same batch to the engine's HTTP API: both get the same answers, item
// by item and in order — the same sends routed, the same errors, the same
// repeat of an Idempotency-Key answered with the first item's result —
// because the engine, not the adapter, decides how a batch runs.
func TestABatchFromGoIsAnsweredAsTheSameBatchOverHTTP(t *testing.T) {
	r := redistest.Start(t)
	n, err := node.New(node.Config{NodeID: "a", Redis: redisconn.Config{URL: r.URL()}, Storage: node.Storage{HistoryTopics: []string{"board"}}})
	if err != nil {
		t.Fatal(err)
	}
	api, err := httpapi.New(n, httpapi.Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(func() { srv.Close(); api.Shutdown(context.Background()) })
	a := &testNode{ID: "a", Addr: strings.TrimPrefix(srv.URL, "http://")}
	waitReady(t, a)
	b := startNode(t, "b", r.URL(), withHistory)
	u1, u2 := dial(t, a, "key=u1"), dial(t, b, "key=u2&topics=board")

	// Each item as the engine takes it and as JSON; run is "go" or "http",
	// so that the two runs' Idempotency-Keys differ.
	type item struct {
		engine func(run string) node.BatchItem
		json   func(run string) string
	}
	data := func(s string) []byte { return []byte(s) }
	items := []item{
		{func(string) node.BatchItem {
			return node.BatchItem{Send: &node.SendRequest{Keys: []string{"u1"}, Data: data(`{"gold":5}`)}}
		},
			func(string) string { return `{"key":"u1","data":{"gold":5}}` }},
		{func(string) node.BatchItem {
			return node.BatchItem{Send: &node.SendRequest{Keys: []string{"u2", "nobody"}, Data: data(`"hi"`), Store: true}}
		}, func(string) string { return `{"keys":["u2","nobody"],"data":"hi","store":true}` }},
		{func(string) node.BatchItem {
			return node.BatchItem{Send: &node.SendRequest{Keys: []string{"bad key"}, Data: data(`1`)}}
		},
			func(string) string { return `{"key":"bad key","data":1}` }},
		{func(string) node.BatchItem {
			return node.BatchItem{Publish: &node.PublishRequest{Topic: "board", Data: data(`"post"`)}}
		},
			func(string) string { return `{"topic":"board","data":"post"}` }},
		{func(string) node.BatchItem {
			return node.BatchItem{Broadcast: &node.PublishRequest{Data: data(`"all"`)}}
		},
			func(string) string { return `{"broadcast":true,"data":"all"}` }},
		{func(string) node.BatchItem {
			return node.BatchItem{Send: &node.SendRequest{Keys: []string{"u1"}, Data: data(`"` + strings.Repeat("x", 70<<10) + `"`)}}
		}, func(string) string { return `{"key":"u1","data":"` + strings.Repeat("x", 70<<10) + `"}` }},
		{func(run string) node.BatchItem {
			return node.BatchItem{Send: &node.SendRequest{Keys: []string{"u1"}, Data: data(`"order"`), Store: true, Wait: inbox.WaitDelivered, IdempotencyKey: run + "-order"}}
		}, func(run string) string {
			return `{"key":"u1","data":"order","store":true,"wait":"delivered","idempotency_key":"` + run + `-order"}`
		}},
		{func(run string) node.BatchItem {
			return node.BatchItem{Send: &node.SendRequest{Keys: []string{"u1"}, Data: data(`"order"`), Store: true, Wait: inbox.WaitDelivered, IdempotencyKey: run + "-order"}}
		}, func(run string) string {
			return `{"key":"u1","data":"order","store":true,"wait":"delivered","idempotency_key":"` + run + `-order"}`
		}},
		{func(run string) node.BatchItem {
			return node.BatchItem{Publish: &node.PublishRequest{Topic: "board", Data: data(`"again"`), IdempotencyKey: run + "-post"}}
		}, func(run string) string {
			return `{"topic":"board","data":"again","idempotency_key":"` + run + `-post"}`
		}},
		{func(run string) node.BatchItem {
			return node.BatchItem{Publish: &node.PublishRequest{Topic: "board", Data: data(`"again"`), IdempotencyKey: run + "-post"}}
		}, func(run string) string {
			return `{"topic":"board","data":"again","idempotency_key":"` + run + `-post"}`
		}},
	}

	// answer is what an item's answer says, whichever way it came.
	type answer struct {
		code            string // "" for a success
		online, offline string
		statuses        string // of a stored send's keys
		nodes           int
		id              string
	}
	fromGo := func(res node.BatchResult) answer {
		if res.Err != nil {
			return answer{code: node.AsError(res.Err).Code}
		}
		if res.Send.ID != "" {
			var st []string
			for _, k := range slices.Sorted(maps.Keys(res.Send.Results)) {
				st = append(st, k+"="+res.Send.Results[k].Status.String())
			}
			return answer{online: fmt.Sprint(res.Send.Online), offline: fmt.Sprint(res.Send.Offline), statuses: strings.Join(st, ","), id: res.Send.ID}
		}
		return answer{nodes: res.Publish.Nodes, id: res.Publish.ID}
	}
	fromHTTP := func(v any) answer {
		m := v.(map[string]any)
		if e, ok := m["error"].(map[string]any); ok {
			return answer{code: e["code"].(string)}
		}
		res := m["result"].(map[string]any)
		if _, ok := res["online"]; ok {
			var st []string
			rs, _ := res["results"].(map[string]any)
			for _, k := range slices.Sorted(maps.Keys(rs)) {
				st = append(st, k+"="+rs[k].(map[string]any)["status"].(string))
			}
			return answer{online: fmt.Sprint(strs(res["online"])), offline: fmt.Sprint(strs(res["offline"])), statuses: strings.Join(st, ","), id: res["id"].(string)}
		}
		return answer{nodes: int(res["nodes"].(float64)), id: res["id"].(string)}
	}

	batch := make([]node.BatchItem, len(items))
	for i, it := range items {
		batch[i] = it.engine("go")
	}
	var viaGo []answer
	for _, res := range n.Batch(context.Background(), batch) {
		viaGo = append(viaGo, fromGo(res))
	}
	var bodies []string
	for _, it := range items {
		bodies = append(bodies, it.json("http"))
	}
	status, out := post(t, a.URL("/v1/batch"), "application/json", `{"items":[`+strings.Join(bodies, ",")+`]}`)
	if status != http.StatusOK {
		t.Fatalf("the HTTP batch: %d %v", status, out)
	}
	results, _ := out["results"].([]any)
	if len(viaGo) != len(items) || len(results) != len(items) {
		t.Fatalf("%d answers from Go and %d over HTTP for %d items", len(viaGo), len(results), len(items))
	}
	for i := range items {
		g, h := viaGo[i], fromHTTP(results[i])
		if (g.id == "") != (h.id == "") {
			t.Errorf("item %d: from Go %+v, over HTTP %+v: one has an id, the other not", i, g, h)
		}
		g.id, h.id = "", ""
		if g != h {
			t.Errorf("item %d: from Go %+v, over HTTP %+v", i, g, h)
		}
	}
	wantCodes := []string{"", "", "invalid_key", "", "", "message_too_large", "", "", "", ""}
	for i, w := range wantCodes {
		if viaGo[i].code != w {
			t.Errorf("item %d from Go: %+v, want code %q", i, viaGo[i], w)
		}
	}
	if viaGo[1].online != "[u2]" || viaGo[1].offline != "[nobody]" || viaGo[1].statuses != "nobody=stored,u2=stored" && viaGo[1].statuses != "nobody=stored,u2=delivered" {
		t.Errorf("the stored send: %+v", viaGo[1])
	}
	if viaGo[6].statuses != "u1=delivered" {
		t.Errorf("the send waiting for delivery: %+v, want u1 delivered", viaGo[6])
	}
	for name, it := range map[string]node.BatchItem{
		"nothing":        {},
		"send and topic": {Send: batch[0].Send, Publish: batch[3].Publish},
	} {
		res := n.Batch(context.Background(), []node.BatchItem{it})
		if e := node.AsError(res[0].Err); res[0].Err == nil || e.Code != "invalid_request" {
			t.Errorf("an item of %s: %v, want invalid_request", name, res[0].Err)
		}
	}
	// A repeat of an Idempotency-Key, in the same batch, is answered with
	// the first item's result: run after it, not alongside.
	goResults := n.Batch(context.Background(), batch[6:8])
	if goResults[0].Err != nil || !goResults[0].Send.Replayed || !goResults[1].Send.Replayed || goResults[0].Send.ID != goResults[1].Send.ID {
		t.Errorf("the repeated sends again: %+v", goResults)
	}
	for _, pair := range [][2]int{{6, 7}, {8, 9}} {
		if viaGo[pair[0]].id != viaGo[pair[1]].id {
			t.Errorf("items %d and %d share an Idempotency-Key but were carried out apart: %q and %q", pair[0], pair[1], viaGo[pair[0]].id, viaGo[pair[1]].id)
		}
	}

	// Each run reached u1 with its plain send, the broadcast and the stored
	// order once, and u2 with its send, the post, the broadcast and the
	// repeated post once.
	got := map[string]int{}
	for range 2 * 3 {
		got["u1 "+string(u1.next().Data)]++
	}
	for range 2 * 4 {
		got["u2 "+string(u2.next().Data)]++
	}
	for _, d := range []string{`u1 {"gold":5}`, `u1 "all"`, `u1 "order"`, `u2 "hi"`, `u2 "post"`, `u2 "all"`, `u2 "again"`} {
		if got[d] != 2 {
			t.Errorf("%s arrived %d times over the two runs, want twice (all: %v)", d, got[d], got)
		}
	}
	u1.nothing(200 * time.Millisecond)
	u2.nothing(200 * time.Millisecond)
}
