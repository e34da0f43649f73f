package httpapi

import (
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/herald-push/herald/pkg/node"
)

// originAllowed is the node's one decision on browser origins, for
// WebSockets and for requests that change state: a request without Origin
// is not a browser's cross-site request (curl, a backend) and passes; a
// browser's passes when it comes from the node's own host or from one of
// the allowed origins, host patterns matched with path.Match (or
// scheme://host patterns when they name a scheme). It is the rule
// coder/websocket applies to AllowedOrigins at the upgrade, so that a page
// may post where it may connect and nowhere else.
func originAllowed(r *http.Request, patterns []string) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false // "null" (sandboxed frames, file:) among others
	}
	if strings.EqualFold(r.Host, u.Host) {
		return true
	}
	for _, p := range patterns {
		target := u.Host
		if strings.Contains(p, "://") {
			target = u.Scheme + "://" + u.Host
		}
		if ok, err := path.Match(strings.ToLower(p), strings.ToLower(target)); err == nil && ok {
			return true
		}
	}
	return false
}

// checkOrigin refuses a request that changes state (POST, DELETE) or opens
// a WebSocket or an event stream, sent by a browser page of an origin the node does not allow.
// Such a page can post text/plain to any URL without asking (a "simple"
// request): without this check a text send with ?key=, or any anonymous
// post in open mode, could be made by every site a user visits. Reads are
// left alone: the browser does not let the page see their answers. An event
// stream is a read, but one that counts against the connection limits and
// shows in presence before the browser's CORS check hides it from the page:
// refused here like a WebSocket, before anything is counted.
func (s *Server) checkOrigin(c *gin.Context) {
	if m := c.Request.Method; m != http.MethodPost && m != http.MethodDelete && c.FullPath() != "/v1/ws" && c.FullPath() != "/v1/sse" {
		return
	}
	if !originAllowed(c.Request, s.cfg.AllowedOrigins) {
		if c.FullPath() == "/v1/sse" {
			// A browser shows a page nothing of a refused WebSocket, so a
			// WebGL game asks this URL why; without CORS headers it could
			// not read that its origin is the reason. The answer tells only
			// that, and opens nothing.
			c.Header("Access-Control-Allow-Origin", c.GetHeader("Origin"))
			c.Header("Vary", "Origin")
		}
		s.fail(c, node.Errorf(node.KindForbidden, "origin_not_allowed",
			"requests from the page at %s are not allowed (same origin only, or --allowed-origins)", quoteClipped(c.GetHeader("Origin"))))
	}
}

// allowOrigin lets a page of an allowed origin read the answer to its
// request (checkOrigin already refused the others).
func (s *Server) allowOrigin(c *gin.Context) {
	if o := c.GetHeader("Origin"); o != "" && !strings.EqualFold(c.Request.Host, hostOf(o)) {
		c.Header("Access-Control-Allow-Origin", o)
		c.Header("Vary", "Origin")
	}
}

// preflightAck answers a browser's CORS preflight of POST /v1/ack: a page
// of an allowed origin may post JSON with an Authorization header; any
// other is refused like its post would be.
func (s *Server) preflightAck(c *gin.Context) {
	if c.GetHeader("Origin") == "" || !originAllowed(c.Request, s.cfg.AllowedOrigins) {
		s.fail(c, node.Errorf(node.KindForbidden, "origin_not_allowed",
			"requests from the page at %s are not allowed (same origin only, or --allowed-origins)", quoteClipped(c.GetHeader("Origin"))))
		return
	}
	h := c.Writer.Header()
	h.Set("Access-Control-Allow-Origin", c.GetHeader("Origin"))
	h.Set("Access-Control-Allow-Methods", "POST")
	h.Set("Access-Control-Allow-Headers", "Content-Type, Authorization")
	h.Set("Access-Control-Max-Age", "600")
	h.Add("Vary", "Origin")
	c.Status(http.StatusNoContent)
}

// hostOf is the host of an origin, or "" when it has none.
func hostOf(origin string) string {
	u, err := url.Parse(origin)
	if err != nil {
		return ""
	}
	return u.Host
}
