package redistest

import (
	"errors"
	"net"
	"testing"
)

// A client connection of another test took the port, as its ephemeral
// source port, between freePort and redis-server's bind: start says so,
// and StartWith then tries new ports.
func TestAServerWhosePortWasTakenSaysSo(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := freePort(t)
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}}
	conn, err := d.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	s := &Server{t: t, Port: port, dir: t.TempDir()}
	if err := s.start(); !errors.Is(err, errPortTaken) {
		t.Fatalf("start on a taken port: %v, want errPortTaken", err)
	}
	if s.Running() {
		t.Fatal("the server counts as running after it exited")
	}
	if srv := Start(t); !srv.Running() {
		t.Fatal("Start returned a server that is not running")
	}
}
