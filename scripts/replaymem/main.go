// replaymem fills u1's inbox on a node, opens N WebSocket connections with
// since=0-0 that never read, and prints the node's RSS before and after.
package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

func rss(pid string) int {
	b, _ := os.ReadFile("/proc/" + pid + "/status")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			n, _ := strconv.Atoi(f[1])
			return n / 1024
		}
	}
	return -1
}

func main() {
	addr, pid := os.Args[1], os.Args[2]
	conns, _ := strconv.Atoi(os.Args[3])
	if os.Args[4] == "fill" {
		data := `"` + strings.Repeat("x", 60<<10) + `"`
		for i := 0; i < 300; i++ { // 300 x 60 KB = 18 MB
			resp, err := http.Post("http://"+addr+"/v1/send", "application/json", strings.NewReader(`{"key":"u1","store":true,"data":`+data+`}`))
			if err != nil || resp.StatusCode != 200 {
				fmt.Println("send", i, err, resp.Status)
				os.Exit(1)
			}
			resp.Body.Close()
		}
	}
	time.Sleep(2 * time.Second)
	before := rss(pid)
	var hold []net.Conn
	for i := 0; i < conns; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			panic(err)
		}
		// A small receive buffer: the client stops reading at once.
		c.(*net.TCPConn).SetReadBuffer(4096)
		fmt.Fprintf(c, "GET /v1/ws?key=u1&since=0-0 HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", addr)
		br := bufio.NewReader(c)
		line, _ := br.ReadString('\n')
		if !strings.Contains(line, "101") {
			fmt.Println("upgrade:", line)
			os.Exit(1)
		}
		hold = append(hold, c) // never read again
	}
	peak := before
	for i := 0; i < 20; i++ {
		time.Sleep(500 * time.Millisecond)
		peak = max(peak, rss(pid))
	}
	fmt.Printf("conns=%d rss_before=%dMB rss_peak=%dMB growth=%dMB\n", conns, before, peak, peak-before)
}
