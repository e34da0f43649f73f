package httpapi_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/herald-push/herald/pkg/node"
)

// A client that sends its first frame in the same packet as its handshake
// (before the 101 came back) is understood: the bytes net/http read ahead
// survive the switch to the connection's smaller buffers.
func TestAFrameSentWithTheHandshakeIsNotLost(t *testing.T) {
	api := newAPI(t, node.Config{NodeID: "a"})
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(func() { srv.Close(); api.Shutdown(context.Background()) })

	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	ping := []byte(`{"type":"ping"}`)
	frame := []byte{0x81, 0x80 | byte(len(ping)), 1, 2, 3, 4} // text, masked with 1 2 3 4
	for i, b := range ping {
		frame = append(frame, b^byte(1+i%4))
	}
	handshake := "GET /v1/ws?key=u1 HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := conn.Write(append([]byte(handshake), frame...)); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	resp, err := http.ReadResponse(r, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	head := make([]byte, 2)
	if _, err := r.Read(head); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, head[1]&0x7f)
	if _, err := io.ReadFull(r, body); err != nil {
		t.Fatal(err)
	}
	if string(body) != `{"type":"pong"}` {
		t.Fatalf("answer to the early ping: %q", body)
	}
}
