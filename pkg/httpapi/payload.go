package httpapi

import (
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/herald-push/herald/pkg/node"
	"github.com/herald-push/herald/pkg/protocol"
)

// payload is a request's message: its data and, for sends, its keys.
type payload struct {
	Key       *string         `json:"key"`
	Keys      []string        `json:"keys"`
	Data      json.RawMessage `json:"data"`
	Store     bool            `json:"store"`
	Wait      string          `json:"wait"`       // "", "delivered" or "acked"
	TimeoutMS int             `json:"timeout_ms"` // for wait
}

func badRequest(code, format string, args ...any) *node.Error {
	return node.Errorf(node.KindInvalid, code, format, args...)
}

func tooLarge(format string, args ...any) *node.Error {
	return node.Errorf(node.KindTooLarge, "message_too_large", format, args...)
}

// readPayload reads a request body. A JSON body (Content-Type
// application/json) is an object holding "data" (and, with allowKeys, "key"
// or "keys"); a text body (text/plain, or a form's type as curl -d sends)
// is the message as text, which becomes a JSON string, its key for a send
// taken from ?key=. A send without ?key= must be JSON and say so in its
// Content-Type: a cross-site page can post text/plain without asking, and
// a JSON send it could make that way would name any key.
// The caller gives the body's reserved bytes back with releaseBody.
func (s *Server) readPayload(c *gin.Context, allowKeys bool) (payload, int64, error) {
	limit := int64(s.cfg.MaxMessageBytes)
	if allowKeys {
		// Room for the envelope and a full list of maximal keys.
		limit += int64(s.cfg.MaxKeysPerSend*(protocol.MaxNameLen+3) + 1024)
	}
	// The body is read into a pooled buffer: nothing parsed from it keeps
	// a reference (encoding/json copies strings and RawMessages, a text
	// body is marshalled into a new string), so it is free once parsed.
	buf := s.bodyBufs.get()
	defer s.bodyBufs.put(buf)
	body, reserved, err := s.readBody(c, limit, (*buf)[:0])
	*buf = body
	if err != nil {
		return payload{}, reserved, err
	}
	var queryKey string
	var hasQueryKey bool
	if c.Request.URL.RawQuery != "" { // gin parses the query into a map, even an empty one
		queryKey, hasQueryKey = c.GetQuery("key")
	}
	p, err := parsePayload(body, c.GetHeader("Content-Type"), queryKey, hasQueryKey, allowKeys, s.cfg.MaxMessageBytes)
	return p, reserved, err
}

// readBody reads a request body of at most limit bytes, counting them in the
// node's budget of body bytes in flight as they arrive (bodyReader); it
// returns the bytes counted, which the caller gives back with releaseBody.
// The body is appended to buf, which may be nil.
func (s *Server) readBody(c *gin.Context, limit int64, buf []byte) ([]byte, int64, error) {
	br := bodyReader{r: http.MaxBytesReader(c.Writer, c.Request.Body, limit), l: &s.inFlight}
	body, err := br.readAll(buf)
	reserved := br.held
	if errors.Is(err, errTooManyBodyBytes) {
		return nil, reserved, errTooManyBodyBytes
	}
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, reserved, tooLarge("request body over %d bytes", limit)
		}
		return nil, reserved, badRequest("unreadable_body", "reading the body failed: %v", err)
	}
	return body, reserved, nil
}

// parsePayload turns a request body into a payload; see readPayload. It
// does no I/O, which is what lets it be fuzzed directly.
func parsePayload(body []byte, contentType, queryKey string, hasQueryKey, allowKeys bool, maxData int) (payload, error) {
	var p payload
	isJSON, err := jsonContentType(contentType)
	if err != nil {
		return p, err
	}
	switch {
	case isJSON && hasQueryKey:
		return p, badRequest("invalid_request", "with a JSON body, name the key in the body, not in ?key=")
	case allowKeys && !isJSON && !hasQueryKey:
		return p, errNotJSON
	case isJSON:
		if err := decodeStrict(body, &p, payloadFields); err != nil {
			return p, err
		}
		if p.Data == nil {
			return p, badRequest("missing_data", `the body has no "data" field`)
		}
	default:
		if hasQueryKey && !allowKeys {
			return p, badRequest("invalid_request", "?key= is only for POST /v1/send")
		}
		if len(body) == 0 {
			return p, badRequest("missing_data", "the body is empty")
		}
		if !utf8.Valid(body) {
			return p, badRequest("invalid_text", "a text body must be UTF-8")
		}
		p.Data, _ = json.Marshal(string(body))
		if hasQueryKey {
			p.Key = &queryKey
		}
	}
	if !allowKeys && (p.Key != nil || p.Keys != nil || p.Store || p.Wait != "" || p.TimeoutMS != 0) {
		return p, badRequest("unknown_field", `this endpoint takes only "data"`)
	}
	if err := p.checkWait(); err != nil {
		return p, err
	}
	if len(p.Data) > maxData {
		return p, tooLarge("data is %d bytes, over the limit of %d", len(p.Data), maxData)
	}
	return p, nil
}

func jsonContentType(header string) (bool, error) {
	switch {
	case header == "":
		return false, nil
	case strings.EqualFold(header, "application/json"), strings.EqualFold(header, "application/json; charset=utf-8"):
		// What nearly every client sends, known without ParseMediaType
		// and the map it makes.
		return true, nil
	}
	mt, _, err := mime.ParseMediaType(header)
	if err != nil {
		return false, node.Errorf(node.KindUnsupported, "unsupported_media_type", "unparsable Content-Type")
	}
	switch {
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		return true, nil
	case mt == "text/plain" || mt == "application/x-www-form-urlencoded":
		return false, nil
	}
	return false, node.Errorf(node.KindUnsupported, "unsupported_media_type",
		"Content-Type %s is not accepted: use application/json or text/plain", mt)
}

// errNotJSON: a JSON endpoint was sent a body whose Content-Type is not
// JSON's.
var errNotJSON = node.Errorf(node.KindUnsupported, "unsupported_media_type",
	"this request takes a JSON body sent with Content-Type: application/json (text bodies are for POST /v1/send?key=<key> and topics)")

// decodeStrict decodes exactly one JSON object whose fields are exactly
// names, each at most once.
//
// checkFields refuses every unknown name of a well-formed object, and
// json.Unmarshal refuses anything not well-formed before it decodes, so a
// json.Decoder with DisallowUnknownFields would add nothing but its three
// allocations and a copy of the body.
func decodeStrict(body []byte, v any, names fieldSet) *node.Error {
	if err := checkFields(body, names); err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) && strings.HasSuffix(syntax.Error(), "after top-level value") {
			return badRequest("invalid_json", "the body holds more than one JSON value")
		}
		return badRequest("invalid_json", "the body is not a valid JSON object: %v", err)
	}
	return nil
}

// checkWait checks a send's "wait" and "timeout_ms".
func (p payload) checkWait() error {
	if _, ok := waits[p.Wait]; !ok {
		return badRequest("invalid_wait", `wait must be "delivered" or "acked"`)
	}
	if p.TimeoutMS < 0 || (p.TimeoutMS > 0 && p.Wait == "") {
		return badRequest("invalid_timeout", `timeout_ms must be positive and goes with "wait"`)
	}
	return nil
}

// keys returns a send's keys as the body names them.
func (p payload) keys() ([]string, error) {
	switch {
	case p.Key != nil && p.Keys != nil:
		return nil, badRequest("invalid_request", `give "key" or "keys", not both`)
	case p.Key != nil:
		if !protocol.ValidName(*p.Key) {
			return nil, node.InvalidName("invalid_key", "key", *p.Key)
		}
		return []string{*p.Key}, nil
	}
	return p.Keys, nil
}
