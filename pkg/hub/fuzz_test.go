package hub

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// FuzzClientFrames writes arbitrary bytes, as a client would after the
// handshake, into a real served connection. Whatever the bytes, the server
// must not panic, must end or keep the connection cleanly, and must forget
// it once the client hangs up.
func FuzzClientFrames(f *testing.F) {
	// A masked text frame "hi", a ping, a close, an oversized length, an
	// unmasked frame, a reserved opcode, a fragmented message, garbage.
	for _, seed := range [][]byte{
		{0x81, 0x82, 1, 2, 3, 4, 'h' ^ 1, 'i' ^ 2},
		{0x89, 0x80, 0, 0, 0, 0},
		{0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8},
		{0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4},
		{0x81, 0x02, 'h', 'i'},
		{0x83, 0x80, 0, 0, 0, 0},
		{0x01, 0x81, 0, 0, 0, 0, 'a', 0x80, 0x81, 0, 0, 0, 0, 'b'},
		[]byte("GET / HTTP/1.1\r\n\r\n"),
	} {
		f.Add(seed)
	}
	h := New(Options{QueueMessages: 16, QueueBytes: 1 << 16})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := h.Add("fuzz", nil, nil, false)
		if err != nil {
			return
		}
		hj := &outHijacker{ResponseWriter: w}
		ws, err := websocket.Accept(hj, r, nil)
		if err != nil {
			h.Remove(c)
			return
		}
		h.Serve(context.Background(), c, ws, ServeOptions{PingInterval: time.Hour, WriteTimeout: time.Second, ReadLimit: 64, Out: hj.out}, func(End) {})
	}))
	f.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")

	f.Fuzz(func(t *testing.T, frames []byte) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("handshake: %v %v", resp, err)
		}
		conn.Write(frames) // the server may already have closed on bad input
		h.SendKey("fuzz", Delivery{ID: "m1", TS: 1, Data: []byte(`1`)})
		conn.Close()
		deadline := time.Now().Add(5 * time.Second)
		for h.Len() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("connection still registered after the client hung up (frames %x)", frames)
			}
			time.Sleep(time.Millisecond)
		}
	})
}
