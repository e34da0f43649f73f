package httpapi_test

import (
	"bytes"
	"net/http"
	"strconv"
	"testing"

	"github.com/herald-push/herald/pkg/node"
)

// discardWriter is the least a handler can write to: what is left is the
// handler path's own cost.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return len(p), nil
}
func (w *discardWriter) WriteHeader(code int) { w.status = code }

// BenchmarkSendHandler is POST /v1/send through the whole handler chain
// (gin, host, origin and in-flight checks, body read and parse, the node's
// send, the JSON answer) on a single node with in-process stores, to a key
// no one holds: the HTTP side's allocations and CPU per send, without the
// network or Redis.
//
//	go test -run '^$' -bench SendHandler -benchmem ./pkg/httpapi
func BenchmarkSendHandler(b *testing.B) {
	api := newAPI(b, node.Config{NodeID: "a"})
	h := api.Handler()
	req, err := http.NewRequest(http.MethodPost, "http://127.0.0.1/v1/send", nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.RemoteAddr = "127.0.0.1:40000"
	w := &discardWriter{h: http.Header{}}
	bodies := make([][]byte, 1000)
	for i := range bodies {
		bodies[i] = []byte(`{"key":"player-` + strconv.Itoa(i) + `","data":` + strconv.Itoa(i) + `}`)
	}
	var body bytes.Reader
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		raw := bodies[i%len(bodies)]
		body.Reset(raw)
		r := *req
		r.Body = readCloser{&body}
		r.ContentLength = int64(len(raw))
		clear(w.h)
		w.status = 0
		h.ServeHTTP(w, &r)
		if w.status != http.StatusOK {
			b.Fatalf("status %d", w.status)
		}
	}
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }
