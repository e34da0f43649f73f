package httpapi

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
)

// Buffer sizes of an upgraded connection. net/http hands a hijacker a 4 KiB
// reader and a fresh 4 KiB writer, and coder/websocket keeps both for the
// connection's life: 8 KiB of an idle connection's ~20. Clients send almost
// nothing (acks, pongs), so the reader needs little. The writer flushes into
// the socket's wsOut, which gathers the hub's frames in a buffer shared
// between connections and writes them in one system call, so the writer itself only
// needs to hold a control frame (at most 127 bytes: pings, pongs, the close)
// in one write; docs/benchmarks.md has the measurements.
const (
	wsReadBuffer  = 256
	wsWriteBuffer = 128
)

// leanHijacker hands coder/websocket smaller buffers than net/http's at the
// hijack, its writer flushing into the socket's wsOut. Bytes the client sent
// after its handshake, which net/http's reader may hold already, are carried
// over.
type leanHijacker struct {
	http.ResponseWriter           // gin's, in herald's handler
	sock                *wsSocket // set by Hijack
}

// WriteHeaderNow has gin write the 101 before the hijack: coder/websocket
// asks for it by this name, and gin would otherwise write it only once the
// handler returns, after frames sent on the hijacked connection.
func (w *leanHijacker) WriteHeaderNow() {
	if g, ok := w.ResponseWriter.(interface{ WriteHeaderNow() }); ok {
		g.WriteHeaderNow()
	}
}

func (w *leanHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("the response cannot be hijacked")
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	if err := brw.Writer.Flush(); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("flush before the hijack: %w", err)
	}
	var src io.Reader = conn
	early, _ := brw.Reader.Peek(brw.Reader.Buffered())
	if len(early) > 0 {
		src = io.MultiReader(bytes.NewReader(bytes.Clone(early)), conn)
	}
	br := bufio.NewReaderSize(src, max(wsReadBuffer, len(early)))
	if len(early) > 0 {
		// Buffer them now: coder/websocket keeps what is buffered and
		// points the reader at the connection itself.
		if _, err := br.Peek(len(early)); err != nil {
			conn.Close()
			return nil, nil, err
		}
	}
	w.sock = newWSSocket(conn)
	return conn, bufio.NewReadWriter(br, bufio.NewWriterSize(&w.sock.out, wsWriteBuffer)), nil
}
