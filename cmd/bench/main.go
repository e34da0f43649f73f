// Command bench drives a running herald cluster and reports what it
// measured, as JSON on stdout and a summary on stderr.
//
//	bench idle       -ws ws://127.0.0.1:8081 -n 15000 -pid <node pid>
//	bench latency    -send http://127.0.0.1:8081 -ws ws://127.0.0.1:8082 -keys 2000 -rate 5000 -duration 60s
//	bench throughput -send http://127.0.0.1:8081 -ws ws://127.0.0.1:8082 -keys 1000 -senders 64 -duration 20s
//	bench broadcast  -send http://127.0.0.1:8081 -ws ws://127.0.0.1:8081 -n 15000
//
// With -peer centrifugo (and -peer-secret, -peer-api-key) the idle, latency
// and throughput modes drive the peer instead (peer.go), for
// scripts/peer-bench.sh.
//
// One process holds at most about 19,000 sockets here (20,000 open files);
// run several bench processes, each with its own -key-prefix, to go further,
// and several nodes to hold more (docs/benchmarks.md).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: bench idle|latency|throughput|broadcast [flags]")
		os.Exit(2)
	}
	var (
		err error
		out any
	)
	ctx := context.Background()
	switch os.Args[1] {
	case "idle":
		out, err = idle(ctx, os.Args[2:])
	case "latency":
		out, err = latency(ctx, os.Args[2:])
	case "throughput":
		out, err = throughput(ctx, os.Args[2:])
	case "broadcast":
		out, err = broadcast(ctx, os.Args[2:])
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	b, _ := json.MarshalIndent(out, "", "  ")
	fmt.Println(string(b))
}

// common flags of every mode.
type common struct {
	ws, send  string
	redis     string // host:port, to read Redis's CPU time; empty: not measured
	prefix    string
	sources   int
	dialConc  int
	maxConns  int
	connected atomic.Int64

	peer, peerSecret, peerAPIKey string
	peerErrOnce                  sync.Once // says why the first refused publish was
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.ws, "ws", "ws://127.0.0.1:8080", "node (or balancer) clients connect to; several, comma-separated, are used in turn")
	fs.StringVar(&c.send, "send", "http://127.0.0.1:8080", "node sends go through")
	fs.StringVar(&c.redis, "redis", "", "host:port of the cluster's Redis, to report its CPU time per send (INFO cpu before and after)")
	fs.StringVar(&c.prefix, "key-prefix", "b", "prefix of client keys, distinct per bench process")
	fs.IntVar(&c.sources, "sources", 8, "spread clients over 127.0.0.1..127.0.0.N source addresses (28,232 ports each)")
	fs.IntVar(&c.dialConc, "dial-concurrency", 64, "connections opened at once")
	fs.StringVar(&c.peer, "peer", "", `drive the peer instead of herald: "centrifugo" (-ws and -send are then its nodes)`)
	fs.StringVar(&c.peerSecret, "peer-secret", "", "the peer's client.token.hmac_secret_key, to sign connect tokens")
	fs.StringVar(&c.peerAPIKey, "peer-api-key", "", "the peer's http_api.key, to publish")
}

// redisCPU returns Redis's used_cpu_sys + used_cpu_user in seconds, or -1
// when not measured.
func (c *common) redisCPU() float64 {
	if c.redis == "" {
		return -1
	}
	conn, err := net.DialTimeout("tcp", c.redis, 5*time.Second)
	if err != nil {
		return -1
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("INFO cpu\r\n")); err != nil {
		return -1
	}
	buf := make([]byte, 4096)
	n, _ := io.ReadAtLeast(conn, buf, 64)
	total := 0.0
	for _, line := range strings.Split(string(buf[:n]), "\r\n") {
		name, v, ok := strings.Cut(line, ":")
		if ok && (name == "used_cpu_sys" || name == "used_cpu_user") {
			f, _ := strconv.ParseFloat(v, 64)
			total += f
		}
	}
	return total
}

// microsPerSend is Redis's CPU time between two redisCPU readings per send.
func microsPerSend(before, after float64, sends int64) float64 {
	if before < 0 || after < 0 || sends == 0 {
		return 0
	}
	return math.Round((after-before)/float64(sends)*1e6*100) / 100
}

// dialer spreads connections over loopback source addresses.
func (c *common) httpClient(i int) *http.Client {
	src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%max(c.sources, 1)))}
	d := &net.Dialer{LocalAddr: src, Timeout: 10 * time.Second}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
}

// conn is one benchmark client.
type conn struct {
	ws   *websocket.Conn
	key  string
	peer bool

	pending [][]byte // the peer's publications read but not yet returned
}

// next returns the next message pushed to cn: herald's frame, or the
// peer's publication.
func (cn *conn) next(ctx context.Context) ([]byte, error) {
	if cn.peer {
		return cn.nextPeer(ctx)
	}
	_, b, err := cn.ws.Read(ctx)
	return b, err
}

// dialAll opens n clients with keys prefix-0..n-1 (and topics, if any),
// n at most dialConc at a time, and returns them with the connect rate.
func (c *common) dialAll(ctx context.Context, n int, topics string) ([]*conn, float64, error) {
	urls := strings.Split(c.ws, ",")
	conns := make([]*conn, n)
	var firstErr atomic.Value
	sem := make(chan struct{}, c.dialConc)
	var wg sync.WaitGroup
	clients := make([]*http.Client, max(c.sources, 1))
	for i := range clients {
		clients[i] = c.httpClient(i)
	}
	start := time.Now()
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			key := c.prefix + "-" + strconv.Itoa(i)
			u := urls[i%len(urls)] + "/v1/ws?key=" + key
			if topics != "" {
				u += "&topics=" + topics
			}
			dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			var ws *websocket.Conn
			var err error
			if c.peer != "" {
				ws, err = c.dialPeer(dctx, urls[i%len(urls)], key, clients[i%len(clients)])
			} else {
				ws, _, err = websocket.Dial(dctx, u, &websocket.DialOptions{HTTPClient: clients[i%len(clients)]})
			}
			if err != nil {
				firstErr.CompareAndSwap(nil, fmt.Errorf("dial %s: %w", key, err))
				return
			}
			ws.SetReadLimit(1 << 20)
			conns[i] = &conn{ws: ws, key: key, peer: c.peer != ""}
			c.connected.Add(1)
		})
	}
	wg.Wait()
	rate := float64(n) / time.Since(start).Seconds()
	if err, _ := firstErr.Load().(error); err != nil {
		return conns, rate, err
	}
	return conns, rate, nil
}

func closeAll(conns []*conn) {
	for _, c := range conns {
		if c != nil {
			c.ws.CloseNow()
		}
	}
}

func rssKiB(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		}
	}
	return 0, errors.New("no VmRSS")
}

// cpuSeconds is this process's user+system CPU time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// --- idle ------------------------------------------------------------------

type idleResult struct {
	Connections      int     `json:"connections"`
	ConnectPerSecond float64 `json:"connect_per_second"`
	RSSBeforeKiB     int64   `json:"server_rss_before_kib"`
	RSSAfterKiB      int64   `json:"server_rss_after_kib"`
	KiBPerConnection float64 `json:"server_kib_per_connection"`
}

func idle(ctx context.Context, args []string) (any, error) {
	var c common
	fs := flag.NewFlagSet("idle", flag.ExitOnError)
	c.register(fs)
	n := fs.Int("n", 10000, "connections to open")
	pid := fs.Int("pid", 0, "server process id, to read its RSS")
	settle := fs.Duration("settle", 5*time.Second, "wait before reading the RSS")
	hold := fs.Duration("hold", 0, "keep the connections open this long after measuring")
	fs.Parse(args)
	if err := c.checkPeer("idle", nil); err != nil {
		return nil, err
	}
	var before int64
	if *pid != 0 {
		before, _ = rssKiB(*pid)
	}
	conns, rate, err := c.dialAll(ctx, *n, "")
	defer closeAll(conns)
	if err != nil {
		return nil, err
	}
	// Drain whatever the server sends (pings need a reader; the peer's
	// must be answered).
	for _, cn := range conns {
		if cn.peer {
			go func() {
				for {
					if _, err := cn.next(ctx); err != nil {
						return
					}
				}
			}()
			continue
		}
		cn.ws.CloseRead(ctx)
	}
	time.Sleep(*settle)
	res := idleResult{Connections: *n, ConnectPerSecond: math.Round(rate), RSSBeforeKiB: before}
	if *pid != 0 {
		after, err := rssKiB(*pid)
		if err != nil {
			return nil, err
		}
		res.RSSAfterKiB = after
		res.KiBPerConnection = math.Round(float64(after-before)/float64(*n)*100) / 100
	}
	fmt.Fprintf(os.Stderr, "idle: %d connections at %.0f/s; server RSS %d -> %d KiB: %.2f KiB per connection\n",
		*n, rate, res.RSSBeforeKiB, res.RSSAfterKiB, res.KiBPerConnection)
	time.Sleep(*hold)
	return res, nil
}

// --- latency ---------------------------------------------------------------

type latencyResult struct {
	Keys       int     `json:"keys"`
	Rate       int     `json:"rate"`
	Seconds    float64 `json:"seconds"`
	Sent       int64   `json:"sent"`
	Accepted   int64   `json:"accepted"`
	HTTPErrors int64   `json:"http_errors"`
	Received   int64   `json:"received"`
	// Lost counts accepted sends that never arrived. A send whose answer
	// failed (a timeout, a refused connection) may still arrive: those
	// are counted in ReceivedUnanswered, not against Lost.
	Lost               int64              `json:"lost"`
	ReceivedUnanswered int64              `json:"received_unanswered,omitempty"`
	Duplicates         int64              `json:"duplicates"`
	LatencyMS          map[string]float64 `json:"latency_ms"`
	MaxLagMS           float64            `json:"max_schedule_lag_ms"`
	BenchCPUShare      float64            `json:"bench_cpu_cores"`
	// RedisMicrosPerSend is Redis's CPU time (INFO cpu) per accepted send.
	RedisMicrosPerSend float64 `json:"redis_cpu_us_per_send,omitempty"`
}

// message data: when the send was due (unix ns) and its sequence number.
type stamp struct {
	T int64 `json:"t"`
	S int64 `json:"s"`
}

// receiver collects stamped frames from every connection.
type receiver struct {
	mu        sync.Mutex
	latencies []float64 // ms, measured from the send's due time
	seen      map[int64]bool
	dups      int64
	frames    atomic.Int64
}

func (r *receiver) run(ctx context.Context, conns []*conn) {
	for _, cn := range conns {
		go func() {
			var f struct{ Data stamp }
			for {
				b, err := cn.next(ctx)
				if err != nil {
					return
				}
				now := time.Now().UnixNano()
				r.frames.Add(1)
				if json.Unmarshal(b, &f) != nil {
					continue
				}
				r.mu.Lock()
				if r.seen[f.Data.S] {
					r.dups++
				} else {
					r.seen[f.Data.S] = true
					r.latencies = append(r.latencies, float64(now-f.Data.T)/1e6)
				}
				r.mu.Unlock()
			}
		}()
	}
}

func percentiles(v []float64) map[string]float64 {
	if len(v) == 0 {
		return nil
	}
	slices.Sort(v)
	at := func(p float64) float64 {
		i := int(math.Ceil(p/100*float64(len(v)))) - 1
		return math.Round(v[max(i, 0)]*1000) / 1000
	}
	return map[string]float64{"p50": at(50), "p90": at(90), "p99": at(99), "p99.9": at(99.9), "max": at(100)}
}

func latency(ctx context.Context, args []string) (any, error) {
	var c common
	fs := flag.NewFlagSet("latency", flag.ExitOnError)
	c.register(fs)
	keys := fs.Int("keys", 2000, "connected keys")
	rate := fs.Int("rate", 5000, "sends per second, open loop")
	dur := fs.Duration("duration", 60*time.Second, "how long to send")
	grace := fs.Duration("grace", 3*time.Second, "wait for late frames after the last send")
	store := fs.Bool("store", false, `store each send ("store":true), as a purchase would be`)
	fs.Parse(args)
	if err := c.checkPeer("latency", map[string]bool{"-store": *store}); err != nil {
		return nil, err
	}
	storeField := ""
	if *store {
		storeField = `,"store":true`
	}

	conns, _, err := c.dialAll(ctx, *keys, "")
	defer closeAll(conns)
	if err != nil {
		return nil, err
	}
	rcv := &receiver{seen: map[int64]bool{}}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rcv.run(rctx, conns)

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512, MaxConnsPerHost: 0}, Timeout: 10 * time.Second}
	var sent, accepted, httpErrs atomic.Int64
	var maxLag atomic.Int64
	interval := time.Second / time.Duration(*rate)
	total := int64(*rate) * int64(dur.Seconds())
	answered := make([]atomic.Bool, total) // by sequence number: answered 200
	cpu0, redis0 := cpuSeconds(), c.redisCPU()
	start := time.Now()
	var wg sync.WaitGroup
	// Open loop: send i is due at start+i*interval, whatever earlier sends
	// did; latency is measured from the due time, so a stalled sender
	// shows up as latency instead of hiding (no coordinated omission).
	for i := range total {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		} else if lag := -d; lag > time.Duration(maxLag.Load()) {
			maxLag.Store(int64(lag))
		}
		key := conns[i%int64(len(conns))].key
		wg.Go(func() {
			sent.Add(1)
			if c.peer != "" {
				if err := c.publishPeer(client, new(bytes.Buffer), key, fmt.Sprintf(`{"t":%d,"s":%d}`, due.UnixNano(), i)); err != nil {
					httpErrs.Add(1)
					return
				}
				accepted.Add(1)
				answered[i].Store(true)
				return
			}
			body := fmt.Sprintf(`{"key":%q,"data":{"t":%d,"s":%d}%s}`, key, due.UnixNano(), i, storeField)
			resp, err := client.Post(c.send+"/v1/send", "application/json", strings.NewReader(body))
			if err != nil {
				httpErrs.Add(1)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				httpErrs.Add(1)
				return
			}
			accepted.Add(1)
			answered[i].Store(true)
		})
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	cpu, redis1 := cpuSeconds()-cpu0, c.redisCPU()
	time.Sleep(*grace)
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	res := latencyResult{
		Keys: *keys, Rate: *rate, Seconds: math.Round(elapsed*10) / 10,
		Sent: sent.Load(), Accepted: accepted.Load(), HTTPErrors: httpErrs.Load(),
		Received: int64(len(rcv.latencies)), Duplicates: rcv.dups,
		LatencyMS: percentiles(rcv.latencies), MaxLagMS: float64(maxLag.Load()) / 1e6,
		BenchCPUShare:      math.Round(cpu/elapsed*100) / 100,
		RedisMicrosPerSend: microsPerSend(redis0, redis1, accepted.Load()),
	}
	for i := range answered {
		switch got := rcv.seen[int64(i)]; {
		case answered[i].Load() && !got:
			res.Lost++
		case !answered[i].Load() && got:
			res.ReceivedUnanswered++
		}
	}
	fmt.Fprintf(os.Stderr, "latency: %d sends/s to %d keys for %.0fs: accepted %d, received %d, lost %d, dup %d, http errors %d (%d of them arrived all the same); ms %v; schedule lag max %.1fms; bench used %.2f cores; Redis %.2f µs CPU per send\n",
		*rate, *keys, elapsed, res.Accepted, res.Received, res.Lost, res.Duplicates, res.HTTPErrors, res.ReceivedUnanswered, res.LatencyMS, res.MaxLagMS, res.BenchCPUShare, res.RedisMicrosPerSend)
	return res, nil
}

// --- throughput ------------------------------------------------------------

type throughputResult struct {
	Keys             int     `json:"keys"`
	KeysPerSend      int     `json:"keys_per_send"`
	Senders          int     `json:"senders"`
	Seconds          float64 `json:"seconds"`
	SendsPerSecond   float64 `json:"sends_per_second"`
	DeliveriesPerSec float64 `json:"deliveries_per_second"`
	HTTPErrors       int64   `json:"http_errors"`
	BenchCPUCores    float64 `json:"bench_cpu_cores"`
	Batch            int     `json:"batch,omitempty"`
	// RedisMicrosPerSend is Redis's CPU time (INFO cpu) per accepted send.
	RedisMicrosPerSend float64 `json:"redis_cpu_us_per_send,omitempty"`
}

func throughput(ctx context.Context, args []string) (any, error) {
	var c common
	fs := flag.NewFlagSet("throughput", flag.ExitOnError)
	c.register(fs)
	keys := fs.Int("keys", 1000, "connected keys")
	perSend := fs.Int("keys-per-send", 1, "keys named in each send (a multi-key send when > 1)")
	senders := fs.Int("senders", 64, "concurrent closed-loop senders")
	dur := fs.Duration("duration", 20*time.Second, "how long to send")
	batch := fs.Int("batch", 0, "send through POST /v1/batch, this many single-key sends per request")
	fs.Parse(args)
	if err := c.checkPeer("throughput", map[string]bool{"-batch": *batch > 0, "-keys-per-send > 1": *perSend != 1}); err != nil {
		return nil, err
	}

	conns, _, err := c.dialAll(ctx, *keys, "")
	defer closeAll(conns)
	if err != nil {
		return nil, err
	}
	var frames atomic.Int64
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, cn := range conns {
		go func() {
			for {
				if _, err := cn.next(rctx); err != nil {
					return
				}
				frames.Add(1)
			}
		}()
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *senders}, Timeout: 10 * time.Second}
	var ok, errs atomic.Int64
	deadline := time.Now().Add(*dur)
	cpu0, redis0 := cpuSeconds(), c.redisCPU()
	start := time.Now()
	var wg sync.WaitGroup
	for s := range *senders {
		wg.Go(func() {
			var body bytes.Buffer
			for i := s; time.Now().Before(deadline); i += *senders {
				body.Reset()
				if c.peer != "" {
					if err := c.publishPeer(client, &body, conns[i%len(conns)].key, strconv.Itoa(i)); err != nil {
						errs.Add(1)
					} else {
						ok.Add(1)
					}
					continue
				}
				if *batch > 0 {
					ok.Add(sendBatch(client, c.send, &body, conns, i*(*batch), *batch, &errs))
					continue
				}
				if *perSend == 1 {
					fmt.Fprintf(&body, `{"key":%q,"data":%d}`, conns[i%len(conns)].key, i)
				} else {
					body.WriteString(`{"keys":[`)
					for k := range *perSend {
						if k > 0 {
							body.WriteByte(',')
						}
						fmt.Fprintf(&body, "%q", conns[(i+k)%len(conns)].key)
					}
					fmt.Fprintf(&body, `],"data":%d}`, i)
				}
				resp, err := client.Post(c.send+"/v1/send", "application/json", &body)
				if err != nil {
					errs.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					ok.Add(1)
				} else {
					errs.Add(1)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	redis1 := c.redisCPU()
	time.Sleep(time.Second) // let the last frames land
	res := throughputResult{
		Batch: *batch, RedisMicrosPerSend: microsPerSend(redis0, redis1, ok.Load()),
		Keys: *keys, KeysPerSend: *perSend, Senders: *senders, Seconds: math.Round(elapsed*10) / 10,
		SendsPerSecond:   math.Round(float64(ok.Load()) / elapsed),
		DeliveriesPerSec: math.Round(float64(frames.Load()) / elapsed),
		HTTPErrors:       errs.Load(),
		BenchCPUCores:    math.Round((cpuSeconds()-cpu0)/elapsed*100) / 100,
	}
	fmt.Fprintf(os.Stderr, "throughput: %.0f sends/s, %.0f deliveries/s (%d keys per send, batch %d, %d senders, %d errors, bench %.2f cores, Redis %.2f µs CPU per send)\n",
		res.SendsPerSecond, res.DeliveriesPerSec, *perSend, *batch, *senders, res.HTTPErrors, res.BenchCPUCores, res.RedisMicrosPerSend)
	return res, nil
}

// sendBatch posts n single-key sends starting at key index first as one
// POST /v1/batch and returns how many items were answered 200.
func sendBatch(client *http.Client, node string, body *bytes.Buffer, conns []*conn, first, n int, errs *atomic.Int64) int64 {
	body.WriteString(`{"items":[`)
	for k := range n {
		if k > 0 {
			body.WriteByte(',')
		}
		fmt.Fprintf(body, `{"key":%q,"data":%d}`, conns[(first+k)%len(conns)].key, first+k)
	}
	body.WriteString(`]}`)
	resp, err := client.Post(node+"/v1/batch", "application/json", body)
	if err != nil {
		errs.Add(1)
		return 0
	}
	defer resp.Body.Close()
	var answer struct {
		Results []struct{ Status int }
	}
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&answer) != nil {
		errs.Add(1)
		return 0
	}
	var ok int64
	for _, r := range answer.Results {
		if r.Status == 200 {
			ok++
		} else {
			errs.Add(1)
		}
	}
	return ok
}

// --- broadcast -------------------------------------------------------------

type broadcastResult struct {
	Subscribers   int     `json:"subscribers"`
	Rounds        int     `json:"rounds"`
	Received      int64   `json:"received"` // over all rounds
	FirstMS       float64 `json:"first_ms"` // medians over the rounds
	LastMS        float64 `json:"last_ms"`
	NodeMS        float64 `json:"node_last_write_ms,omitempty"`
	BenchCPUCores float64 `json:"bench_cpu_cores_during_fanout"`
}

// fanoutSum reads the subscribers' node's herald_fanout_seconds for topics:
// its sum and count.
func fanoutSum(metricsURL string) (sum, count float64, err error) {
	resp, err := http.Get(metricsURL)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case `herald_fanout_seconds_sum{kind="topic"}`:
			sum = v
		case `herald_fanout_seconds_count{kind="topic"}`:
			count = v
		}
	}
	return sum, count, nil
}

// fanoutRound is one message's arrival at every subscriber.
type fanoutRound struct {
	start       time.Time
	got         atomic.Int64
	first, last atomic.Int64 // ns after start
	done        chan struct{}
}

func (r *fanoutRound) arrived(n int64) {
	at := time.Since(r.start).Nanoseconds()
	r.first.CompareAndSwap(0, at)
	for {
		cur := r.last.Load()
		if at <= cur || r.last.CompareAndSwap(cur, at) {
			break
		}
	}
	if r.got.Add(1) == n {
		close(r.done)
	}
}

func broadcast(ctx context.Context, args []string) (any, error) {
	var c common
	fs := flag.NewFlagSet("broadcast", flag.ExitOnError)
	c.register(fs)
	n := fs.Int("n", 10000, "subscribers of the topic")
	rounds := fs.Int("rounds", 1, "messages posted, one after another; the figures are medians over them")
	topic := fs.String("topic", "bench", "topic")
	metrics := fs.String("metrics", "", "the subscribers' node's /metrics URL, to read its own fan-out time")
	fs.Parse(args)
	if c.peer != "" {
		return nil, errors.New("broadcast with -peer: not built; the peer is driven in idle, latency and throughput")
	}
	conns, _, err := c.dialAll(ctx, *n, *topic)
	defer closeAll(conns)
	if err != nil {
		return nil, err
	}
	rs := make([]*fanoutRound, *rounds)
	for i := range rs {
		rs[i] = &fanoutRound{done: make(chan struct{})}
	}
	for _, cn := range conns {
		go func() {
			for _, r := range rs {
				if _, _, err := cn.ws.Read(ctx); err != nil {
					return
				}
				r.arrived(int64(*n))
			}
		}()
	}
	time.Sleep(time.Second)
	res := broadcastResult{Subscribers: *n, Rounds: *rounds}
	var firsts, lasts, nodes []float64
	var cpu, elapsed float64
	for _, r := range rs {
		var sum0, count0 float64
		if *metrics != "" {
			if sum0, count0, err = fanoutSum(*metrics); err != nil {
				return nil, err
			}
		}
		cpu0 := cpuSeconds()
		r.start = time.Now()
		resp, err := http.Post(c.send+"/v1/topics/"+*topic, "text/plain", strings.NewReader("fan out"))
		if err != nil {
			return nil, err
		}
		resp.Body.Close()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
		}
		elapsed += time.Since(r.start).Seconds()
		cpu += cpuSeconds() - cpu0
		res.Received += r.got.Load()
		firsts = append(firsts, float64(r.first.Load())/1e6)
		lasts = append(lasts, float64(r.last.Load())/1e6)
		if *metrics != "" {
			sum1, count1, err := fanoutSum(*metrics)
			if err != nil {
				return nil, err
			}
			if count1 > count0 {
				nodes = append(nodes, math.Round((sum1-sum0)/(count1-count0)*1e6)/1e3)
			}
		}
		time.Sleep(200 * time.Millisecond) // let the last round's reads settle
	}
	res.FirstMS, res.LastMS = median(firsts), median(lasts)
	if len(nodes) > 0 {
		res.NodeMS = median(nodes)
	}
	res.BenchCPUCores = math.Round(cpu/elapsed*100) / 100
	fmt.Fprintf(os.Stderr, "broadcast: %d of %d copies arrived over %d rounds; median round: first after %.2fms, last after %.2fms (bench used %.2f cores meanwhile); inside the node, last write %.2fms after arrival (per round: %v)\n",
		res.Received, *n**rounds, *rounds, res.FirstMS, res.LastMS, res.BenchCPUCores, res.NodeMS, nodes)
	return res, nil
}

// median of v (sorted in place); zero when empty.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	return v[len(v)/2]
}
