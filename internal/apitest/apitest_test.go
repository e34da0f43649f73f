package apitest

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// A server whose answers drift from the document is caught: a wrong field
// type, an undocumented status, an error body of another shape. A matching
// answer passes.
func TestAnswersThatDriftFromTheDocumentAreCaught(t *testing.T) {
	tests := []struct {
		name, method, path string
		status             int
		contentType, body  string
		ok                 bool
	}{
		{"matching presence", "GET", "/v1/presence/u1", 200, "application/json; charset=utf-8",
			`{"key":"u1","online":true,"connections":1,"nodes":["a"]}`, true},
		{"online is not a boolean", "GET", "/v1/presence/u1", 200, "application/json",
			`{"key":"u1","online":"yes","connections":1,"nodes":["a"]}`, false},
		{"a field the document does not have", "GET", "/v1/presence/u1", 200, "application/json",
			`{"key":"u1","online":true,"connections":1,"nodes":[],"region":"eu"}`, false},
		{"an undocumented status", "POST", "/v1/send", 418, "application/json",
			`{"error":{"code":"teapot","message":"x"}}`, false},
		{"an error code the status does not list", "POST", "/v1/send", 400, "application/json",
			`{"error":{"code":"no_such_code","message":"x"}}`, false},
		{"a documented error", "POST", "/v1/send", 400, "application/json",
			`{"error":{"code":"invalid_key","message":"x"}}`, true},
		{"a send answer missing offline", "POST", "/v1/send", 200, "application/json",
			`{"id":"m1","online":[],"connections":0}`, false},
		{"an event stream where the document has one", "GET", "/v1/sse", 200, "text/event-stream",
			"data: {}\n\n", true},
		{"an event stream where the document has none", "GET", "/v1/presence/u1", 200, "text/event-stream",
			"data: {}\n\n", false},
		{"a documented ack", "POST", "/v1/ack", 200, "application/json",
			`{"key":"u1","id":"17-0"}`, true},
		{"an ack refused with a code of its own", "POST", "/v1/ack", 400, "application/json",
			`{"error":{"code":"ack_ahead","message":"x"}}`, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.contentType)
				w.Header().Set("X-Request-ID", "r1") // as herald's router sets on every answer
				w.WriteHeader(tc.status)
				w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			c, err := NewChecker(http.DefaultTransport)
			if err != nil {
				t.Fatal(err)
			}
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(`{"key":"u1","data":1}`))
			req.Header.Set("Content-Type", "application/json")
			resp, err := (&http.Client{Transport: c}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := len(c.Failures()) == 0; got != tc.ok {
				t.Fatalf("valid = %v, want %v: %v", got, tc.ok, c.Failures())
			}
		})
	}
}

// An answer without X-Request-ID did not come from herald's router (a load
// balancer's own 503, say) and is not held to the document.
func TestAnswersFromInFrontOfHeraldAreNotChecked(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("<h1>503 Service Unavailable</h1>"))
	}))
	defer srv.Close()
	c, err := NewChecker(http.DefaultTransport)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: c}).Get(srv.URL + "/v1/cluster")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if f := c.Failures(); len(f) != 0 || c.Checked() != 1 {
		t.Fatalf("a proxy's answer: failures %v, checked %d", f, c.Checked())
	}
}
