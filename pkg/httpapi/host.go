package httpapi

import (
	"net"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
)

// checkHost refuses, before anything else runs, a request whose Host is not
// one the node answers to. Without it a page on any DNS name that an
// attacker rebinds to the node's address is same-origin with the node: the
// browser sends its Origin and Host alike, so the origin check passes, and
// the page reads the API and opens WebSockets (DNS rebinding).
//
// /healthz, /readyz and /metrics are exempt: kubelets probe and Prometheus
// scrapes by pod IP, and none of the three acts or tells anything a
// rebinding page could use against a client.
func (s *Server) checkHost() gin.HandlerFunc {
	hosts := allowedHosts(s.cfg)
	if hosts == nil {
		return func(*gin.Context) {}
	}
	return func(c *gin.Context) {
		switch c.Request.URL.Path {
		case "/healthz", "/readyz", "/metrics":
			return
		}
		if hosts.allow(c.Request.Host) {
			return
		}
		s.metrics.rejected.WithLabelValues("host_not_allowed").Inc()
		c.AbortWithStatusJSON(http.StatusMisdirectedRequest, apiError{Error: errorDetail{
			Code:    "host_not_allowed",
			Message: "this node does not answer to host " + quoteClipped(c.Request.Host) + "; see --allowed-hosts",
		}})
	}
}

// hostList is a list of host names and *.suffix patterns, matched without
// the port and case-insensitively.
type hostList []string

// allowedHosts returns the hosts cfg allows, or nil when any host is. The
// default depends on the mode: an open node is reachable by anyone who can
// make a browser talk to it, so it answers only to the loopback names and
// its own addresses; a node with API keys and tokens refuses strangers by
// their credentials, whatever name they used, so it answers to any.
func allowedHosts(cfg serverConfig) hostList {
	if len(cfg.AllowedHosts) > 0 {
		var hl hostList
		for _, h := range cfg.AllowedHosts {
			if h == "*" {
				return nil
			}
			hl = append(hl, strings.ToLower(strings.TrimSuffix(h, ".")))
		}
		return hl
	}
	if !cfg.Open() {
		return nil
	}
	hl := hostList{"localhost", "*.localhost", "127.0.0.1", "::1"}
	for _, addr := range []string{cfg.Listen, cfg.AdvertiseAddr} {
		if h, _, err := net.SplitHostPort(addr); err == nil && h != "" {
			if ip := net.ParseIP(h); ip == nil || !ip.IsUnspecified() {
				hl = append(hl, strings.ToLower(h))
			}
		}
	}
	return hl
}

func (hl hostList) allow(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(host, ".")
	if host == "" {
		return false
	}
	for _, p := range hl {
		if suffix, ok := strings.CutPrefix(p, "*"); ok {
			// "*.localhost" matches "a.localhost" and "a.b.localhost".
			if len(host) > len(suffix) && strings.EqualFold(host[len(host)-len(suffix):], suffix) {
				return true
			}
			continue
		}
		if strings.EqualFold(host, p) {
			return true
		}
	}
	return false
}
