package httpapi

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/coder/websocket"
)

// countingConn counts the writes, so system calls, a connection makes.
type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// sizedHijacker gives coder/websocket a writer of the size under test.
type sizedHijacker struct {
	http.ResponseWriter
	size   int
	writes *atomic.Int64
}

func (w sizedHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := w.ResponseWriter.(http.Hijacker).Hijack()
	if err != nil {
		return nil, nil, err
	}
	cc := countingConn{conn, w.writes}
	return cc, bufio.NewReadWriter(brw.Reader, bufio.NewWriterSize(cc, w.size)), nil
}

// BenchmarkFrameWrites measures the trade of a write buffer between
// coder/websocket and the socket: writes (system calls) per frame, and time
// per frame, for frames of the sizes herald sends, with the writer sizes one
// might choose. It chose the 2 KiB writer herald had before frames were
// gathered by hub.Out; now only control frames are written this way.
//
//	go test -run '^$' -bench FrameWrites ./pkg/httpapi
func BenchmarkFrameWrites(b *testing.B) {
	for _, writer := range []int{512, 2048, 4096} {
		for _, frame := range []int{100, 1000, 3000, 16000} {
			b.Run(fmt.Sprintf("writer=%d/frame=%d", writer, frame), func(b *testing.B) {
				var writes atomic.Int64
				ready := make(chan *websocket.Conn, 1)
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					ws, err := websocket.Accept(sizedHijacker{w, writer, &writes}, r, nil)
					if err != nil {
						return
					}
					ready <- ws
				}))
				defer srv.Close()
				client, _, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
				if err != nil {
					b.Fatal(err)
				}
				defer client.CloseNow()
				client.SetReadLimit(1 << 20)
				go func() {
					for {
						if _, _, err := client.Read(context.Background()); err != nil {
							return
						}
					}
				}()
				ws := <-ready
				defer ws.CloseNow()
				msg := []byte(strings.Repeat("x", frame))
				writes.Store(0)
				b.SetBytes(int64(frame))
				for b.Loop() {
					if err := ws.Write(context.Background(), websocket.MessageText, msg); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(writes.Load())/float64(b.N), "writes/frame")
			})
		}
	}
}
