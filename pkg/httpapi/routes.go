package httpapi

import (
	"crypto/rand"
	"embed"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	heraldjs "github.com/herald-push/herald/clients/js"
	"github.com/herald-push/herald/pkg/auth"
	"github.com/herald-push/herald/pkg/node"
)

//go:embed web
var webFiles embed.FS

func (s *Server) routes() (*gin.Engine, error) {
	r := gin.New()
	r.HandleMethodNotAllowed = true
	// gin trusts every proxy by default; herald trusts only the configured
	// ones, and only their X-Forwarded-For.
	r.ForwardedByClientIP = true
	r.RemoteIPHeaders = []string{"X-Forwarded-For"}
	if err := r.SetTrustedProxies(s.cfg.TrustedProxies); err != nil {
		return nil, fmt.Errorf("trusted proxies: %w", err)
	}
	r.Use(gin.CustomRecoveryWithWriter(io.Discard, func(c *gin.Context, err any) {
		s.fail(c, fmt.Errorf("handler panicked: %v", err))
	}), s.logRequests, s.headers.common)
	r.NoRoute(func(c *gin.Context) { s.fail(c, node.Errorf(node.KindNotFound, "not_found", "no such endpoint")) })
	r.NoMethod(func(c *gin.Context) {
		c.AbortWithStatusJSON(http.StatusMethodNotAllowed, apiError{Error: errorDetail{Code: "method_not_allowed", Message: "method not allowed here"}})
		s.metrics.rejected.WithLabelValues("method_not_allowed").Inc()
	})

	r.Use(s.checkHost()) // first of the handlers below: a Host not allowed gets nothing else
	// WebSockets and event streams have caps of their own (--max-conns and
	// the like); every other API request counts against
	// --max-requests-in-flight.
	r.GET("/v1/ws", s.checkOrigin, s.handleWebSocket)
	r.GET("/v1/sse", s.checkOrigin, s.handleEvents)
	// An event stream's page acks by POST with a JSON body: from another
	// origin the browser asks first (a CORS preflight).
	r.OPTIONS("/v1/ack", s.preflightAck)
	v1 := r.Group("/v1", s.limitRequests, s.checkOrigin)
	v1.POST("/send", s.require(auth.ScopeSend), s.handleSend)
	v1.POST("/topics/:topic", s.handlePublish) // public topics: see handlePublish
	v1.POST("/broadcast", s.require(auth.ScopeBroadcast), s.handleBroadcast)
	v1.POST("/batch", s.handleBatch)            // each item checks its own scope
	v1.POST("/ack", s.allowOrigin, s.handleAck) // a client's credentials, as it connects: see node.Ack
	v1.GET("/presence/:key", s.require(auth.ScopePresence), s.handlePresence)
	v1.GET("/cluster", s.require(auth.ScopeAdmin), s.handleCluster)
	v1.DELETE("/connections/:key", s.require(auth.ScopeAdmin), s.handleDisconnect)
	v1.GET("/openapi.json", func(c *gin.Context) { c.Data(http.StatusOK, "application/json", openapiJSON) })

	// The JavaScript client, so a page can import it from any node.
	// Public code: any page may import it (a module script from another
	// origin is fetched with CORS).
	v1.GET("/herald.js", func(c *gin.Context) {
		c.Header("Access-Control-Allow-Origin", "*")
		c.Data(http.StatusOK, "text/javascript; charset=utf-8", heraldjs.Source)
	})
	v1.GET("/herald.d.ts", func(c *gin.Context) { c.Data(http.StatusOK, "application/typescript; charset=utf-8", heraldjs.Types) })

	r.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	r.GET("/readyz", s.handleReady)
	r.GET("/metrics", gin.WrapH(promhttp.HandlerFor(s.node.Metrics(), promhttp.HandlerOpts{})))

	web, _ := fs.Sub(webFiles, "web")
	r.GET("/", s.headers.page, func(c *gin.Context) { c.FileFromFS("/", http.FS(web)) })
	// The console page is static; the API calls it makes need an API key
	// with the admin, presence and send scopes once keys are configured.
	r.GET("/console", s.headers.page, func(c *gin.Context) { c.FileFromFS("console.html", http.FS(web)) })
	return r, nil
}

// require answers 401 or 403 unless the request carries an API key holding
// scope. Without configured keys the API is open.
func (s *Server) require(scope auth.Scope) gin.HandlerFunc {
	return func(c *gin.Context) {
		if s.cfg.APIKeys == nil {
			return
		}
		caller, err := s.caller(c)
		if err != nil {
			s.fail(c, err)
			return
		}
		if !caller.Can(scope) {
			s.fail(c, node.Errorf(node.KindForbidden, "forbidden", "api key %q lacks the %s scope", caller.Name(), scope))
			return
		}
		c.Set(callerNameKey, caller.Name())
	}
}

// callerNameKey holds the authenticated API key's name in a gin.Context.
const callerNameKey = "herald.caller"

// caller authenticates the request's API key.
func (s *Server) caller(c *gin.Context) (auth.Caller, error) {
	key, ok := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
	if !ok || key == "" {
		return auth.Caller{}, node.Errorf(node.KindUnauthenticated, "missing_api_key", "send an API key as Authorization: Bearer <key>")
	}
	caller, ok := s.cfg.APIKeys.Authenticate(key)
	if !ok {
		return auth.Caller{}, node.Errorf(node.KindUnauthenticated, "invalid_api_key", "unknown API key")
	}
	return caller, nil
}

// logRequests logs each request at debug level with a request id, taken from
// X-Request-ID or made up, and echoes the id back. Query strings are left
// out: they may carry credentials.
func (s *Server) logRequests(c *gin.Context) {
	// The header's canonical name, used as the map key directly: Get and
	// Set with "X-Request-ID" would canonicalize it, an allocation each.
	var id string
	if v := c.Request.Header[requestIDHeader]; len(v) > 0 {
		id = v[0]
	}
	if id == "" || len(id) > 128 {
		id = s.reqIDs.next()
	}
	c.Writer.Header()[requestIDHeader] = []string{id}
	start := time.Now()
	c.Next()
	// Checked first: the arguments alone cost every request allocations.
	if s.log.Enabled(c.Request.Context(), slog.LevelDebug) {
		s.log.Debug("request", "request_id", id, "method", c.Request.Method, "path", c.Request.URL.Path,
			"status", c.Writer.Status(), "duration", time.Since(start))
	}
}

// requestIDHeader is X-Request-ID as net/http keys it.
const requestIDHeader = "X-Request-Id"

// requestIDs makes request ids for logs: a random prefix and a counter.
type requestIDs struct {
	prefix string
	seq    atomic.Uint64
}

func newRequestIDs() *requestIDs {
	return &requestIDs{prefix: strconv.FormatInt(time.Now().UnixMilli(), 36) + "-" + rand.Text()[:6] + "-"}
}

func (r *requestIDs) next() string { return r.prefix + strconv.FormatUint(r.seq.Add(1), 36) }
