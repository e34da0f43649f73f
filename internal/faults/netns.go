package faults

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Netns is a network namespace joined to the host by a veth pair: a process
// run in it (Command) reaches the host at HostIP, and the host reaches it at
// NodeIP. Faults apply inside the namespace only, to the packets between it
// and one host port, so nothing else on the machine is touched.
type Netns struct {
	t      testing.TB
	Name   string
	HostIP string // the host's end of the veth pair
	NodeIP string // the namespace's end

	mu    sync.Mutex
	rules map[int][][]string // iptables rules in force, per host port
}

// RequireNetns skips t, saying why, unless this process may create network
// namespaces and run iptables in them.
func RequireNetns(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("fault test needs root (network namespaces and iptables): not root")
	}
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("fault test needs %s (make deps installs iptables): %v", tool, err)
		}
	}
	name := "hfprobe" + randomHex(t, 4)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Skipf("fault test needs network namespaces: ip netns add is not permitted here: %v: %s", err, out)
	}
	defer exec.Command("ip", "netns", "del", name).Run()
	if out, err := exec.Command("ip", "netns", "exec", name, "iptables", "-L", "-n").CombinedOutput(); err != nil {
		t.Skipf("fault test needs iptables inside a network namespace: %v: %s", err, out)
	}
}

// NewNetns creates a namespace with its veth pair and deletes both when the
// test ends, whatever happened. Deleting the namespace drops its iptables
// rules with it.
func NewNetns(t testing.TB) *Netns {
	t.Helper()
	RequireNetns(t)
	id := randomHex(t, 3)
	n := &Netns{t: t, Name: "herald-fault-" + id, rules: map[int][][]string{}}
	hostIf, nsIf := "hfh"+id, "hfn"+id // interface names are at most 15 bytes
	n.HostIP, n.NodeIP = freeSubnet(t)
	t.Cleanup(func() {
		// The host end goes with its peer; deleting it too covers a
		// namespace that was never made.
		_ = exec.Command("ip", "netns", "del", n.Name).Run()
		_ = exec.Command("ip", "link", "del", hostIf).Run()
	})
	steps := [][]string{
		{"ip", "netns", "add", n.Name},
		{"ip", "link", "add", hostIf, "type", "veth", "peer", "name", nsIf},
		{"ip", "link", "set", nsIf, "netns", n.Name},
		{"ip", "addr", "add", n.HostIP + "/30", "dev", hostIf},
		{"ip", "link", "set", hostIf, "up"},
		{"ip", "netns", "exec", n.Name, "ip", "addr", "add", n.NodeIP + "/30", "dev", nsIf},
		{"ip", "netns", "exec", n.Name, "ip", "link", "set", nsIf, "up"},
		{"ip", "netns", "exec", n.Name, "ip", "link", "set", "lo", "up"},
	}
	for _, s := range steps {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(s, " "), err, out)
		}
	}
	return n
}

// Command is exec.Command run inside the namespace. ip netns exec execs
// name, so the process's pid is name's: signals reach it directly.
func (n *Netns) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// RedisArgs are the redis-server arguments (for redistest.StartWith) that
// let the namespace reach it: it listens on loopback and on the host's end
// of the veth pair. Protected mode would refuse the namespace's connections
// to a server without a password.
func (n *Netns) RedisArgs() []string {
	return []string{"--bind", "127.0.0.1", n.HostIP, "--protected-mode", "no"}
}

// HostAddr is the host's port as the namespace reaches it.
func (n *Netns) HostAddr(port int) string {
	return net.JoinHostPort(n.HostIP, strconv.Itoa(port))
}

// Cut drops every packet between the namespace and the host's port, both
// ways: connections hang (nothing resets them) and new ones never connect.
func (n *Netns) Cut(port int) {
	n.t.Helper()
	p := strconv.Itoa(port)
	n.add(port, []string{"OUTPUT", "-d", n.HostIP, "-p", "tcp", "--dport", p, "-j", "DROP"})
	n.add(port, []string{"INPUT", "-s", n.HostIP, "-p", "tcp", "--sport", p, "-j", "DROP"})
}

// Loss drops each packet between the namespace and the host's port with
// probability p, each way independently. TCP retransmits what was lost,
// late.
func (n *Netns) Loss(port int, p float64) {
	n.t.Helper()
	prob := strconv.FormatFloat(p, 'f', -1, 64)
	ps := strconv.Itoa(port)
	n.add(port, []string{"OUTPUT", "-d", n.HostIP, "-p", "tcp", "--dport", ps,
		"-m", "statistic", "--mode", "random", "--probability", prob, "-j", "DROP"})
	n.add(port, []string{"INPUT", "-s", n.HostIP, "-p", "tcp", "--sport", ps,
		"-m", "statistic", "--mode", "random", "--probability", prob, "-j", "DROP"})
}

// Heal removes every Cut and Loss on the host's port: connections that did
// not time out meanwhile resume where they were.
func (n *Netns) Heal(port int) {
	n.t.Helper()
	n.mu.Lock()
	rules := n.rules[port]
	delete(n.rules, port)
	n.mu.Unlock()
	for _, r := range rules {
		n.iptables(append([]string{"-D"}, r...))
	}
}

func (n *Netns) add(port int, rule []string) {
	n.t.Helper()
	n.iptables(append([]string{"-I"}, rule...))
	n.mu.Lock()
	n.rules[port] = append(n.rules[port], rule)
	n.mu.Unlock()
}

func (n *Netns) iptables(args []string) {
	n.t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.Name, "iptables", "-w"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		n.t.Fatalf("iptables %s in %s: %v: %s", strings.Join(args, " "), n.Name, err, out)
	}
}

// freeSubnet picks a /30 of 10.200.0.0/16 that no interface of the host
// uses, so parallel tests (and other test binaries) do not collide.
func freeSubnet(t testing.TB) (host, node string) {
	t.Helper()
	for range 100 {
		b := make([]byte, 2)
		if _, err := rand.Read(b); err != nil {
			t.Fatal(err)
		}
		base := (int(b[0])<<8 | int(b[1])) &^ 3
		host = fmt.Sprintf("10.200.%d.%d", base>>8, base&0xff+1)
		node = fmt.Sprintf("10.200.%d.%d", base>>8, base&0xff+2)
		if !inUse(t, host) && !inUse(t, node) {
			return host, node
		}
	}
	t.Fatal("no free /30 in 10.200.0.0/16")
	return "", ""
}

func inUse(t testing.TB, ip string) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if p, ok := a.(*net.IPNet); ok && p.IP.String() == ip {
			return true
		}
	}
	return false
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
