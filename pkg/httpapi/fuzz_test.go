package httpapi

import (
	"encoding/json"
	"testing"

	"github.com/herald-push/herald/pkg/node"
	"github.com/herald-push/herald/pkg/protocol"
)

// FuzzSendBody feeds arbitrary bodies, content types and ?key= values through
// the send decoder and key validation. Whatever comes in, a request is either
// refused with a *node.Error or yields valid JSON data within the limit and
// 1..max valid, distinct keys.
func FuzzSendBody(f *testing.F) {
	f.Add([]byte(`{"key":"u1","data":{"gold":5}}`), "application/json", "", false)
	f.Add([]byte(`{"keys":["u1","u2","u1"],"data":"hi"}`), "application/json; charset=utf-8", "", false)
	f.Add([]byte(`hello`), "text/plain", "u1", true)
	f.Add([]byte(`{"key":"u1","data":1}`), "application/x-www-form-urlencoded", "", false)
	f.Add([]byte(`{"key":"u1","data":1,"x":2}`), "application/json", "", false)
	f.Add([]byte("\xff\xfe"), "text/plain", "u1", true)
	f.Add([]byte(`{"key":"u1","data":`), "application/vnd.api+json", "", false)
	const maxData, maxKeys = 1024, 8
	f.Fuzz(func(t *testing.T, body []byte, contentType, queryKey string, hasQueryKey bool) {
		p, err := parsePayload(body, contentType, queryKey, hasQueryKey, true, maxData)
		if err != nil {
			if _, ok := err.(*node.Error); !ok {
				t.Fatalf("error %T %v is not a *node.Error", err, err)
			}
			return
		}
		if !json.Valid(p.Data) || len(p.Data) > maxData {
			t.Fatalf("accepted data %q", p.Data)
		}
		keys, err := p.keys()
		if err != nil {
			return
		}
		if keys, err = node.CheckKeys(keys, maxKeys); err != nil {
			return
		}
		if len(keys) == 0 || len(keys) > maxKeys {
			t.Fatalf("accepted %d keys", len(keys))
		}
		seen := map[string]bool{}
		for _, k := range keys {
			if !protocol.ValidName(k) || seen[k] {
				t.Fatalf("accepted key %q (seen before: %v)", k, seen[k])
			}
			seen[k] = true
		}
		// What is accepted must make a valid frame.
		if frame := protocol.AppendFrame(nil, protocol.KindKey, "m1", keys[0], p.Data, 1); !json.Valid(frame) {
			t.Fatalf("frame %s is not JSON", frame)
		}
	})
}
