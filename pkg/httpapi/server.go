// Package httpapi is herald's HTTP and WebSocket API: a thin adapter that
// reads requests, applies the HTTP-side limits and API-key auth, calls the
// engine (pkg/node) and answers, mapping the engine's typed errors to HTTP
// in one place. The WebSocket endpoint (ws.go) is its own small adapter
// over the engine's Authorize and Admit, and its connections are hub.Sockets
// (wsconn.go) that the engine's hub writes to. The API is described by
// openapi.json, served at /v1/openapi.json.
package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-push/herald/pkg/node"
	"github.com/herald-push/herald/pkg/ratelimit"
)

// ErrServerClosed is what Serve returns after Shutdown.
var ErrServerClosed = http.ErrServerClosed

// Server serves one node's API.
type Server struct {
	node    *node.Node
	cfg     serverConfig
	log     *slog.Logger
	engine  *gin.Engine
	metrics *metrics
	reqIDs  *requestIDs

	publicRate *ratelimit.Keyed // posts to public topics per client IP and topic
	inFlight   inFlight
	// eventStreams counts the open GET /v1/sse streams.
	eventStreams atomic.Int64
	headers      *securityHeaders
	answerBufs   buffers // send answers
	bodyBufs     buffers // send and publish bodies

	mu       sync.Mutex
	srv      *http.Server
	shutdown chan struct{} // closed by Shutdown
	once     sync.Once
}

// serverConfig is what a Server reads: its own Config and the engine's, as
// the node filled it in, side by side (their fields do not overlap), so
// that s.cfg.MaxTopicsPerConn and s.cfg.AllowedOrigins read alike.
type serverConfig struct {
	Config
	engineConfig
}

// engineConfig names node.Config in serverConfig, next to Config.
type engineConfig = node.Config

// New returns the API of n configured by cfg (zero fields: DefaultConfig's),
// or an error saying what in cfg is wrong. Its Handler works on any
// http.Server (or httptest.Server); Serve runs one configured from cfg.
func New(n *node.Node, cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults(n.Config())
	if err != nil {
		return nil, err
	}
	s := &Server{
		node:       n,
		cfg:        serverConfig{Config: cfg, engineConfig: n.Config()},
		log:        n.Logger(),
		metrics:    newMetrics(n.Metrics()),
		reqIDs:     newRequestIDs(),
		publicRate: ratelimit.New(cfg.PublicRate, cfg.PublicBurst),
		shutdown:   make(chan struct{}),
	}
	s.inFlight.maxRequests, s.inFlight.maxBytes = int64(cfg.MaxRequestsInFlight), cfg.MaxBodyBytesInFlight
	n.Metrics().MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "herald_api_requests_in_flight",
			Help: "HTTP API requests being served (WebSockets, health and metrics not counted); bounded by --max-requests-in-flight.",
		}, func() float64 { return float64(s.inFlight.requests.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "herald_event_streams",
			Help: "Open Server-Sent Events streams (GET /v1/sse) on this node; herald_connections counts them too.",
		}, func() float64 { return float64(s.eventStreams.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "herald_api_body_bytes_in_flight",
			Help: "Request body bytes reserved by requests being served; bounded by --max-body-bytes-in-flight.",
		}, func() float64 { return float64(s.inFlight.bytes.Load()) }),
	)
	web, err := fs.Sub(webFiles, "web")
	if err != nil {
		return nil, err
	}
	if s.headers, err = newSecurityHeaders(web, cfg.AllowedOrigins); err != nil {
		return nil, err
	}
	if s.engine, err = s.routes(); err != nil {
		return nil, err
	}
	return s, nil
}

// Handler is the API: sends, publishes, presence, admin, the WebSocket
// endpoint, metrics, health, the OpenAPI document and the demo pages.
func (s *Server) Handler() http.Handler { return s.engine }

// Run listens on the configured address and serves until ctx ends, then
// shuts down gracefully (see Shutdown) and returns nil.
func (s *Server) Run(ctx context.Context) error {
	l, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	return s.Serve(ctx, l)
}

// Serve serves on l, with TLS when the config names a certificate, until
// ctx ends or Shutdown is called. When ctx ends Serve shuts down gracefully
// itself and returns nil; after a Shutdown it returns ErrServerClosed once
// that Shutdown has finished. Any other error of the listener is returned
// after a shutdown too.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	select {
	case <-s.shutdown:
		l.Close()
		return ErrServerClosed
	default:
	}
	srv := &http.Server{
		Handler:           s.engine,
		ReadHeaderTimeout: s.cfg.HTTPReadHeaderTimeout,
		ReadTimeout:       s.cfg.HTTPReadTimeout,
		WriteTimeout:      s.cfg.HTTPWriteTimeout,
		IdleTimeout:       s.cfg.HTTPIdleTimeout,
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	serveErr := make(chan error, 1)
	tls := s.cfg.TLSCertFile != ""
	go func() {
		if tls {
			serveErr <- srv.ServeTLS(l, s.cfg.TLSCertFile, s.cfg.TLSKeyFile)
		} else {
			serveErr <- srv.Serve(l)
		}
	}()
	s.log.Info("node serving", "addr", l.Addr().String(), "tls", tls, "redis", s.cfg.Redis.Topology().String())
	if s.cfg.Open() {
		s.log.Warn("OPEN DEVELOPMENT MODE: without API keys anyone who reaches this node may send, " +
			"and without a token key any client may claim any key; do not expose it")
	}
	var err error
	select {
	case <-ctx.Done():
	case <-s.shutdown:
		<-serveErr
		<-s.stopped()
		return ErrServerClosed
	case err = <-serveErr:
		err = fmt.Errorf("serve: %w", err)
	}
	// The drain, then the requests in flight (a send waits up to MaxWait),
	// then their Redis steps.
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.DrainWindow+s.cfg.MaxWait+10*time.Second)
	defer cancel()
	_ = s.Shutdown(sctx)
	return err
}

// Shutdown stops the node's API gracefully, in three steps. First it
// drains the node (node.Node.Drain): /readyz turns 503 and new WebSockets
// are refused at once, open ones are closed with 1012 spread over the drain
// window, and the node leaves presence; sends and the rest of the API keep
// answering meanwhile and reach the connections that remain. Then it shuts
// the HTTP server down (http.Server.Shutdown): the listener closes and
// requests in flight finish, a send waiting for an ack included, with Redis
// still there to store and record their answers. Last it closes the node
// (node.Node.Close): its background work stops and its Redis clients
// close. Serve returns ErrServerClosed once Shutdown is done. If ctx ends
// first, the steps left are hurried (connections closed at once, requests
// in flight cut off) and ctx's error is returned. Shutdown does not close
// connections it did not accept: with the Handler mounted on a server of
// your own, call the node's Drain, shut your server down, then call
// Shutdown.
func (s *Server) Shutdown(ctx context.Context) error {
	first := false
	s.once.Do(func() {
		first = true
		close(s.shutdown)
	})
	if !first {
		select {
		case <-s.stopped():
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	err := s.node.Drain(ctx)
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	if srv != nil {
		if serr := srv.Shutdown(ctx); serr != nil && !errors.Is(serr, http.ErrServerClosed) {
			s.log.Warn("requests still in flight at the end of the shutdown; cutting them off", "err", serr)
			_ = srv.Close()
			err = errors.Join(err, serr)
		}
	}
	// Not joined: after a hurried drain it repeats the drain's ctx error.
	if cerr := s.node.Close(ctx); cerr != nil && err == nil {
		err = cerr
	}
	return err
}

// stopped is closed once the node has stopped.
func (s *Server) stopped() <-chan struct{} { return s.node.Stopped() }

// metrics are the API's own: requests refused, by code, and the time to
// answer a send.
type metrics struct {
	rejected     *prometheus.CounterVec   // code
	sendDuration *prometheus.HistogramVec // kind
	// The kinds' series, looked up once: WithLabelValues hashes its labels
	// and takes a lock on every call.
	sendSeconds, topicSeconds, broadcastSeconds, batchSeconds prometheus.Observer
}

func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_rejected_requests_total",
			Help: "Requests answered with an error, by error code.",
		}, []string{"code"}),
		sendDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "herald_send_duration_seconds",
			Help:    "Time from a send request's arrival to its answer, by kind.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}, []string{"kind"}),
	}
	// Series exist at 0 from the start, so that rates and dashboards show 0
	// rather than "no data" before the first event.
	m.sendSeconds = m.sendDuration.WithLabelValues("send")
	m.topicSeconds = m.sendDuration.WithLabelValues("topic")
	m.broadcastSeconds = m.sendDuration.WithLabelValues("broadcast")
	m.batchSeconds = m.sendDuration.WithLabelValues("batch")
	for _, code := range []string{"invalid_json", "unknown_field", "missing_data", "missing_key", "invalid_key",
		"message_too_large", "missing_api_key", "invalid_api_key", "missing_token", "invalid_token", "forbidden",
		"rate_limited", "too_many_connections", "unavailable", "invalid_utf8", "duplicate_field", "unsupported_media_type",
		"origin_not_allowed", "overloaded", "storage_full"} {
		m.rejected.WithLabelValues(code)
	}
	reg.MustRegister(m.rejected, m.sendDuration)
	return m
}
