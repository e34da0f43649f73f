package httpapi

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io/fs"
	"regexp"
	"strings"

	"github.com/gin-gonic/gin"
)

// securityHeaders are the headers every answer carries, and those of the
// demo pages. The values are built once: a header set per request would
// cost an allocation each.
type securityHeaders struct {
	nosniff  []string
	referrer []string
	csp      []string // of the pages
}

// newSecurityHeaders builds the pages' Content-Security-Policy from the
// pages themselves: their inline scripts and styles are allowed by hash,
// nothing else inline is (no handlers, no style attributes, no eval), and
// scripts, fetches and WebSockets go to the node only. frame-ancestors
// lets the node's own pages and the allowed origins frame them, no one
// else (clickjacking the board's form).
func newSecurityHeaders(web fs.FS, allowedOrigins []string) (*securityHeaders, error) {
	var scripts, styles []string
	for _, name := range []string{"index.html", "console.html"} {
		page, err := fs.ReadFile(web, name)
		if err != nil {
			return nil, fmt.Errorf("page %s: %w", name, err)
		}
		scripts = append(scripts, inlineHashes(page, "script")...)
		styles = append(styles, inlineHashes(page, "style")...)
	}
	ancestors := []string{"'self'"}
	for _, o := range allowedOrigins {
		if cspSource.MatchString(o) {
			ancestors = append(ancestors, o)
		}
	}
	csp := "default-src 'none'; script-src 'self' " + strings.Join(scripts, " ") +
		"; style-src " + strings.Join(styles, " ") +
		"; connect-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors " +
		strings.Join(ancestors, " ")
	return &securityHeaders{nosniff: []string{"nosniff"}, referrer: []string{"no-referrer"}, csp: []string{csp}}, nil
}

// cspSource is an allowed origin that is also a CSP host source; a
// path.Match pattern CSP cannot say ("board-?.example") is left out of
// frame-ancestors, which only makes it stricter.
var cspSource = regexp.MustCompile(`^([a-z][a-z0-9+.-]*://)?(\*\.)?[A-Za-z0-9.-]+(:[0-9]+|:\*)?$`)

// inlineHashes returns the CSP hash source of each inline <tag> element's
// content in page.
func inlineHashes(page []byte, tag string) []string {
	var out []string
	open, end := []byte("<"+tag), []byte("</"+tag+">")
	for {
		i := bytes.Index(page, open)
		if i < 0 {
			return out
		}
		page = page[i:]
		gt := bytes.IndexByte(page, '>')
		if gt < 0 {
			return out
		}
		page = page[gt+1:]
		j := bytes.Index(page, end)
		if j < 0 {
			return out
		}
		sum := sha256.Sum256(page[:j])
		out = append(out, "'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'")
		page = page[j:]
	}
}

// common sets what every answer carries: browsers must not guess a type
// (an error's JSON read as HTML), and no address leaks in a Referer.
func (h *securityHeaders) common(c *gin.Context) {
	hd := c.Writer.Header()
	hd["X-Content-Type-Options"] = h.nosniff
	hd["Referrer-Policy"] = h.referrer
}

// page sets a page's Content-Security-Policy.
func (h *securityHeaders) page(c *gin.Context) {
	c.Writer.Header()["Content-Security-Policy"] = h.csp
}
