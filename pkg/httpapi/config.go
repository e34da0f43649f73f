package httpapi

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"path"
	"strings"
	"time"

	"github.com/herald-push/herald/pkg/node"
)

// Config is what the HTTP adapter alone reads: where and how it serves,
// who may reach it from a browser or through a proxy, and the limits of
// HTTP requests. The engine's settings (queues, message and key limits,
// tokens and API keys, storage) are node.Config's. cmd/server fills both
// from flags and HERALD_* variables, whose defaults are DefaultConfig's
// and node.DefaultConfig's.
//
// A zero number or duration means the field's default from DefaultConfig;
// a nil list means none.
type Config struct {
	// Listen is the address Run serves on (default 127.0.0.1:8080).
	Listen string
	// Insecure allows listening beyond loopback while the engine runs
	// without API keys or tokens (node.Config.Open). Without it New
	// refuses such a configuration.
	Insecure bool

	// TLSCertFile and TLSKeyFile serve HTTPS and WSS when both are set.
	TLSCertFile string
	TLSKeyFile  string
	// The http.Server's timeouts and header limit. WebSockets are exempt
	// from the read and write timeouts once upgraded.
	HTTPReadHeaderTimeout time.Duration
	HTTPReadTimeout       time.Duration
	HTTPWriteTimeout      time.Duration
	HTTPIdleTimeout       time.Duration
	MaxHeaderBytes        int

	// MaxBatch bounds the items of one POST /v1/batch.
	MaxBatch int
	// MaxRequestsInFlight bounds the HTTP API requests (not WebSockets,
	// health or metrics) served at once, and MaxBodyBytesInFlight the
	// bytes their bodies may hold together (0: four maximal batch bodies,
	// see BatchBodyLimit); over either the answer is 503 overloaded.
	// Negative: no bound.
	MaxRequestsInFlight  int
	MaxBodyBytesInFlight int64

	// PublicTopics may be posted to without an API key, each post limited
	// to PublicMaxMessageBytes and, per client IP and topic, to PublicRate
	// posts per second in bursts of PublicBurst.
	PublicTopics          []string
	PublicMaxMessageBytes int
	PublicRate            float64
	PublicBurst           int
	// TrustedProxies are the CIDRs or IPs whose X-Forwarded-For is believed
	// when finding a client's IP. Empty: the peer address is the client.
	TrustedProxies []string
	// AllowedOrigins are the browser origins (host patterns, as in
	// path.Match) allowed to call the API and open WebSockets besides the
	// node's own. Empty: same origin only.
	AllowedOrigins []string
	// AllowedHosts are the host names (matched without the port,
	// case-insensitively; "*.example.com" for subdomains) the API answers
	// to; "*" is any. Empty: any when the engine has API keys and tokens,
	// and for an open engine only the loopback names and the listen and
	// advertise hosts, so that a page on a rebound DNS name cannot reach an
	// open node.
	AllowedHosts []string
}

// DefaultConfig is the configuration of the HTTP adapter run without
// flags: the one place where its defaults are written.
func DefaultConfig() Config {
	return Config{
		Listen:                "127.0.0.1:8080",
		HTTPReadHeaderTimeout: 5 * time.Second,
		HTTPReadTimeout:       30 * time.Second,
		HTTPWriteTimeout:      30 * time.Second,
		HTTPIdleTimeout:       120 * time.Second,
		MaxHeaderBytes:        16 << 10,
		MaxBatch:              1000,
		// Far more than a node answers at once when Redis is well (a send
		// takes about a millisecond), few enough that their goroutines and
		// buffers stay within tens of megabytes.
		MaxRequestsInFlight:   1024,
		PublicMaxMessageBytes: 2048,
		PublicRate:            0.2,
		PublicBurst:           5,
	}
}

// BatchBodyLimit is the largest body of a POST /v1/batch: MaxBatch items
// of a quarter of the engine's largest message each, plus their envelopes.
func (c Config) BatchBodyLimit(maxMessageBytes int) int64 {
	return int64(c.MaxBatch) * int64(maxMessageBytes/4+2048)
}

// withDefaults fills c's zero fields from DefaultConfig, for the engine
// whose configuration (defaults filled in) is engine, and checks the
// result.
func (c Config) withDefaults(engine node.Config) (Config, error) {
	d := DefaultConfig()
	setZero := func(p *time.Duration, def time.Duration) {
		if *p == 0 {
			*p = def
		}
	}
	setZero(&c.HTTPReadHeaderTimeout, d.HTTPReadHeaderTimeout)
	setZero(&c.HTTPReadTimeout, d.HTTPReadTimeout)
	setZero(&c.HTTPWriteTimeout, d.HTTPWriteTimeout)
	setZero(&c.HTTPIdleTimeout, d.HTTPIdleTimeout)
	for _, f := range []struct{ p, def *int }{
		{&c.MaxHeaderBytes, &d.MaxHeaderBytes}, {&c.MaxBatch, &d.MaxBatch},
		{&c.MaxRequestsInFlight, &d.MaxRequestsInFlight}, {&c.PublicMaxMessageBytes, &d.PublicMaxMessageBytes},
		{&c.PublicBurst, &d.PublicBurst},
	} {
		if *f.p == 0 {
			*f.p = *f.def
		}
	}
	if c.Listen == "" {
		c.Listen = d.Listen
	}
	if c.PublicRate == 0 {
		c.PublicRate = d.PublicRate
	}
	if c.MaxBodyBytesInFlight == 0 {
		// A handful of maximal batches at once; they are what costs memory.
		c.MaxBodyBytesInFlight = 4 * c.BatchBodyLimit(engine.MaxMessageBytes)
	}
	return c, c.Validate(engine)
}

// Validate checks c for serving the engine configured by engine. New calls
// it; cmd/server calls it before it starts the engine, so that a
// configuration the HTTP adapter refuses never joins the cluster. Zero
// fields count as their defaults.
func (c Config) Validate(engine node.Config) error {
	var errs []error
	if c.Listen == "" {
		c.Listen = DefaultConfig().Listen
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, errors.New("TLS needs both a certificate and a key file"))
	} else if c.TLSCertFile != "" {
		// Loaded here, not first by the listener: a node whose files are
		// missing or do not match would join the cluster, then drain.
		if _, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile); err != nil {
			errs = append(errs, fmt.Errorf("TLS certificate and key: %w", err))
		}
	}
	for _, p := range c.AllowedOrigins {
		if err := checkPattern(p, true); err != nil {
			errs = append(errs, fmt.Errorf("allowed origin %q: %w", p, err))
		}
	}
	for _, p := range c.AllowedHosts {
		if err := checkPattern(p, false); err != nil {
			errs = append(errs, fmt.Errorf("allowed host %q: %w", p, err))
		}
	}
	if engine.Open() && !c.Insecure && !loopback(c.Listen) {
		errs = append(errs, fmt.Errorf("refusing to listen on %s without authentication: configure API keys and a token key, "+
			"listen on 127.0.0.1, or pass --insecure to accept the risk", c.Listen))
	}
	for name, d := range map[string]time.Duration{
		"HTTP read header timeout": c.HTTPReadHeaderTimeout, "HTTP read timeout": c.HTTPReadTimeout,
		"HTTP write timeout": c.HTTPWriteTimeout, "HTTP idle timeout": c.HTTPIdleTimeout,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, got %v", name, d))
		}
	}
	if c.MaxHeaderBytes < 0 || c.MaxBatch < 0 {
		errs = append(errs, fmt.Errorf("max header bytes and max batch must be positive, got %d and %d", c.MaxHeaderBytes, c.MaxBatch))
	}
	maxWait := engine.MaxWait
	if maxWait == 0 {
		maxWait = node.DefaultConfig().MaxWait
	}
	writeTimeout := c.HTTPWriteTimeout
	if writeTimeout == 0 {
		writeTimeout = DefaultConfig().HTTPWriteTimeout
	}
	if maxWait >= writeTimeout {
		errs = append(errs, fmt.Errorf("max wait %v must be shorter than the HTTP write timeout %v", maxWait, writeTimeout))
	}
	if c.PublicRate < 0 || c.PublicMaxMessageBytes < 0 || c.PublicBurst < 0 {
		errs = append(errs, errors.New("public topic limits must be positive"))
	}
	return errors.Join(errs...)
}

// loopback reports whether addr only listens on the loopback interface.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkPattern refuses an origin or host pattern that can never match what
// it is compared with (originAllowed, hostList.allow), which would silently
// lock out the pages or names an operator meant to let in: an empty one,
// one with spaces, a path or a malformed path.Match pattern; a host pattern
// naming a scheme; an origin pattern naming another scheme than http(s).
func checkPattern(p string, origin bool) error {
	host := p
	if scheme, rest, ok := strings.Cut(p, "://"); ok {
		if !origin {
			return errors.New("a host names no scheme")
		}
		if scheme != "http" && scheme != "https" {
			return errors.New("a page's origin is http:// or https://")
		}
		host = rest
	}
	switch {
	case host == "":
		return errors.New("empty")
	case strings.ContainsAny(host, " \t/#"):
		return errors.New("a host pattern holds no spaces, path or fragment")
	}
	if _, err := path.Match(strings.ToLower(p), ""); err != nil {
		return fmt.Errorf("not a valid pattern: %w", err)
	}
	return nil
}
