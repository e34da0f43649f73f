// Package apitest holds herald's HTTP answers to its OpenAPI document: every
// response an API test receives through the default HTTP client is validated
// against pkg/httpapi's openapi.json, so the document cannot drift from the
// code.
package apitest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/paths"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"

	"github.com/herald-push/herald/pkg/httpapi"
)

// Checker is an http.RoundTripper that validates each response it carries
// and records what does not match the document.
type Checker struct {
	base  http.RoundTripper
	v     validator.Validator
	model *v3.Document

	mu       sync.Mutex
	checked  int
	failures []string
}

// NewChecker loads the API's document, which must itself be valid OpenAPI
// 3.1, and returns a Checker over base.
func NewChecker(base http.RoundTripper) (*Checker, error) {
	doc, err := libopenapi.NewDocument(httpapi.OpenAPI())
	if err != nil {
		return nil, fmt.Errorf("openapi.json: %w", err)
	}
	if v := doc.GetVersion(); !strings.HasPrefix(v, "3.1") {
		return nil, fmt.Errorf("openapi.json is OpenAPI %s, want 3.1", v)
	}
	v, errs := validator.NewValidator(doc)
	if len(errs) > 0 {
		return nil, fmt.Errorf("openapi.json: %v", errs)
	}
	if ok, verrs := v.ValidateDocument(); !ok {
		msgs := make([]string, len(verrs))
		for i, e := range verrs {
			msgs[i] = e.Error()
		}
		return nil, fmt.Errorf("openapi.json is not a valid OpenAPI document: %s", strings.Join(msgs, "; "))
	}
	model, err := doc.BuildV3Model()
	if err != nil {
		return nil, fmt.Errorf("openapi.json: %w", err)
	}
	return &Checker{base: base, v: v, model: &model.Model}, nil
}

// RoundTrip carries req and validates the response.
func (c *Checker) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	if problem := c.Check(req, resp); problem != "" {
		c.mu.Lock()
		c.failures = append(c.failures, problem)
		c.mu.Unlock()
	}
	return resp, nil
}

// Check validates one response, leaving its body readable, and returns what
// is wrong with it ("" when nothing is).
func (c *Checker) Check(req *http.Request, resp *http.Response) string {
	if strings.HasPrefix(req.URL.Path, "/debug/") {
		return "" // the private pprof listener is not the API
	}
	c.mu.Lock()
	c.checked++
	c.mu.Unlock()
	where := fmt.Sprintf("%s %s → %d", req.Method, req.URL.Path, resp.StatusCode)
	if resp.StatusCode == http.StatusSwitchingProtocols {
		if req.URL.Path != "/v1/ws" {
			return where + ": an upgrade the document does not describe"
		}
		return "" // the body is the WebSocket now: nothing to read
	}
	if resp.StatusCode == http.StatusOK && strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		// An event stream lasts as long as the connection: reading it
		// here would never end. Its events are checked by the tests that
		// read them.
		if req.URL.Path != "/v1/sse" {
			return where + ": an event stream the document does not describe"
		}
		return ""
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return where + ": reading the body: " + err.Error()
	}
	if resp.Header.Get("X-Request-ID") == "" {
		// Every answer of herald's router carries one: this one came from
		// something in front of it (a load balancer's own 503, net/http's
		// answer to plain HTTP on a TLS port), not from the API.
		return ""
	}
	// The validator reads the body it is given; hand it a copy.
	check := *resp
	check.Body = io.NopCloser(bytes.NewReader(body))
	if _, errs, _ := paths.FindPath(req, c.model, nil); errs != nil {
		// Not an operation of the document: only the router's own error
		// answers may come back.
		var e struct {
			Error struct{ Code, Message string }
		}
		switch {
		case json.Unmarshal(body, &e) != nil:
		case resp.StatusCode == http.StatusNotFound && e.Error.Code == "not_found",
			resp.StatusCode == http.StatusMethodNotAllowed && e.Error.Code == "method_not_allowed":
			return ""
		}
		return fmt.Sprintf("%s: not an operation of the document; body %.300s", where, body)
	}
	if ok, errs := c.v.ValidateHttpResponse(req, &check); !ok {
		msgs := make([]string, 0, len(errs))
		for _, e := range errs {
			msg := e.Message
			if e.Reason != "" {
				msg += " (" + e.Reason + ")"
			}
			for _, se := range e.SchemaValidationErrors {
				msg += "; " + se.FieldPath + ": " + se.Reason
			}
			msgs = append(msgs, msg)
		}
		return fmt.Sprintf("%s: %s; body %.300s", where, strings.Join(msgs, "; "), body)
	}
	return ""
}

// Failures returns what did not match, one line per response.
func (c *Checker) Failures() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.failures...)
}

// Checked returns how many responses were validated.
func (c *Checker) Checked() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.checked
}

// Main runs a package's tests with every response through the default HTTP
// transport (so the default client, clients without a transport of their
// own, and the WebSocket dialer) validated against the document, and fails
// the run when any did not match. Use it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(apitest.Main(m)) }
func Main(m *testing.M) int {
	c, err := NewChecker(http.DefaultTransport)
	if err != nil {
		fmt.Fprintln(os.Stderr, "apitest:", err)
		return 1
	}
	http.DefaultTransport = c
	code := m.Run()
	if failures := c.Failures(); len(failures) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d of %d API responses do not match pkg/httpapi/openapi.json:\n", len(failures), c.Checked())
		for _, f := range failures {
			fmt.Fprintln(os.Stderr, "  "+f)
		}
		return 1
	}
	return code
}
