package httpapi

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/herald-push/herald/pkg/node"
)

// apiError is the body of every error answer.
type apiError struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Results, for partially_stored, is what became of each key.
	Results map[string]keyAnswer `json:"results,omitempty"`
}

// detailOf is err's errorDetail; e is node.AsError(err).
func detailOf(e *node.Error, err error) errorDetail {
	d := errorDetail{Code: e.Code, Message: e.Message}
	var partial *node.PartialError
	if errors.As(err, &partial) {
		d.Results = keyAnswersOf(partial.Results)
	}
	return d
}

// statusOf is the one mapping from the engine's error kinds to HTTP.
var statusOf = [...]int{
	node.KindInternal:        http.StatusInternalServerError,
	node.KindInvalid:         http.StatusBadRequest,
	node.KindUnauthenticated: http.StatusUnauthorized,
	node.KindForbidden:       http.StatusForbidden,
	node.KindNotFound:        http.StatusNotFound,
	node.KindConflict:        http.StatusConflict,
	node.KindTooLarge:        http.StatusRequestEntityTooLarge,
	node.KindUnsupported:     http.StatusUnsupportedMediaType,
	node.KindTooMany:         http.StatusTooManyRequests,
	node.KindUnavailable:     http.StatusServiceUnavailable,
}

// fail answers err: its status, Retry-After when it has one, WWW-Authenticate
// for credentials refused, and {"error":{"code","message"}}. An error that
// is not a *node.Error is answered 500 "internal error" and logged: its text
// may name internals.
func (s *Server) fail(c *gin.Context, err error) {
	e := node.AsError(err)
	if e.Kind == node.KindInternal {
		s.log.Error("request failed", "path", c.Request.URL.Path, "err", err)
	}
	status := http.StatusInternalServerError
	if int(e.Kind) < len(statusOf) {
		status = statusOf[e.Kind]
	}
	if e.RetryAfter > 0 {
		c.Header("Retry-After", strconv.Itoa(int((e.RetryAfter+999_999_999)/1_000_000_000)))
	}
	switch e.Code {
	case "missing_api_key", "missing_token":
		c.Header("WWW-Authenticate", "Bearer")
	case "invalid_api_key", "invalid_token":
		c.Header("WWW-Authenticate", `Bearer error="invalid_token"`)
	}
	s.metrics.rejected.WithLabelValues(e.Code).Inc()
	c.AbortWithStatusJSON(status, apiError{Error: detailOf(e, err)})
}

// quoteClipped quotes a value a client sent, for an error message: cut to
// 64 bytes so a hostile header cannot fill the answer, and quoted so its
// control characters cannot forge log lines or break the message.
func quoteClipped(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return strconv.Quote(s)
}
