package node

import (
	"errors"
	"fmt"
	"time"

	"github.com/herald-push/herald/pkg/redisconn"
)

// Kind is the class of a failed operation: what the caller can do about it.
// Each transport maps kinds to its own answers (HTTP status codes, close
// codes) in one place.
type Kind uint8

const (
	// KindInternal: a fault of the node; the details are logged, not told.
	KindInternal Kind = iota
	// KindInvalid: the request is malformed or names something invalid.
	KindInvalid
	// KindUnauthenticated: no credentials, or unknown ones.
	KindUnauthenticated
	// KindForbidden: the credentials do not allow this.
	KindForbidden
	// KindNotFound: no such thing.
	KindNotFound
	// KindConflict: a request with the same Idempotency-Key is running.
	KindConflict
	// KindTooLarge: over a size limit.
	KindTooLarge
	// KindUnsupported: a body in a form not accepted.
	KindUnsupported
	// KindTooMany: over a rate or count limit; retry after RetryAfter.
	KindTooMany
	// KindUnavailable: Redis, the cluster or the node cannot do it now;
	// nothing was done unless the message says otherwise.
	KindUnavailable
)

var kindNames = [...]string{
	KindInternal:        "internal",
	KindInvalid:         "invalid",
	KindUnauthenticated: "unauthenticated",
	KindForbidden:       "forbidden",
	KindNotFound:        "not_found",
	KindConflict:        "conflict",
	KindTooLarge:        "too_large",
	KindUnsupported:     "unsupported",
	KindTooMany:         "too_many",
	KindUnavailable:     "unavailable",
}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// Error is a failed operation as its caller is told: a kind, the stable code
// documented in the API (invalid_key, not_replicated, ...) and a message for
// people.
type Error struct {
	Kind    Kind
	Code    string
	Message string
	// RetryAfter, when positive, is when trying again makes sense.
	RetryAfter time.Duration
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf returns an *Error of kind and code.
func Errorf(kind Kind, code, format string, args ...any) *Error {
	return &Error{Kind: kind, Code: code, Message: fmt.Sprintf(format, args...)}
}

func invalid(code, format string, args ...any) *Error {
	return Errorf(KindInvalid, code, format, args...)
}

// InvalidName is the error for a key or topic outside the allowed alphabet.
func InvalidName(code, what, name string) *Error {
	return invalid(code, "%s %q must be 1-128 characters of [A-Za-z0-9_.:@-]", what, clip(name))
}

func unavailable(format string, args ...any) *Error {
	return Errorf(KindUnavailable, "unavailable", format, args...)
}

func retryLater(e *Error, after time.Duration) *Error {
	e.RetryAfter = after
	return e
}

// ErrNotReplicated: a stored send's messages were stored on the Redis
// masters, but too few replicas confirmed them in time, so they were not
// sent. A retry with the same Idempotency-Key sends them once.
var ErrNotReplicated = &Error{Kind: KindUnavailable, Code: "not_replicated", RetryAfter: time.Second,
	Message: "the message was stored on the Redis master, but too few replicas confirmed it in time, so it was not sent yet; " +
		"retry with the same Idempotency-Key: the retry sends it once, without storing it twice"}

// outcomeUnknown is the answer to a send whose Redis command failed in a
// way that may have run it (redisconn.MayHaveRun): a timeout, a connection
// lost after the command was written. Telling the sender "nothing was sent"
// would make it send twice; telling it "sent" may lose the message. what
// names the step that failed.
func outcomeUnknown(what string) *Error {
	return retryLater(Errorf(KindUnavailable, "outcome_unknown",
		"%s: Redis did not answer in time, so the message may or may not have been sent; "+
			"retry with the same Idempotency-Key: a stored message or history post is then kept and delivered once, "+
			"a plain one may arrive twice", what), time.Second)
}

// redisFailed is the answer to a send whose Redis step failed with err:
// unavailable, "nothing was sent", only when the command surely did not
// run; outcome_unknown otherwise.
func redisFailed(err error, what string) *Error {
	if redisconn.MayHaveRun(err) {
		return outcomeUnknown(what)
	}
	return retryLater(unavailable("%s; nothing was sent", what), time.Second)
}

// ErrStorageFull and ErrIdempotencyFull: the single-node mode's in-process
// inbox holds as much as --inbox-memory-bytes allows, or its idempotency
// store as much as --idempotency-memory-bytes. What they accepted is kept;
// room comes back as it ages out.
var (
	ErrStorageFull = &Error{Kind: KindUnavailable, Code: "storage_full", RetryAfter: 10 * time.Second,
		Message: "this node holds as many stored messages as it may; nothing was stored or sent, try again later"}
	ErrIdempotencyFull = &Error{Kind: KindUnavailable, Code: "storage_full", RetryAfter: 10 * time.Second,
		Message: "this node remembers as many Idempotency-Key answers as it may; nothing was sent, try again later or without the key"}
)

// ErrInvalidUTF8: a message's data holds bytes that are not UTF-8, or a
// \u escape naming a lone UTF-16 surrogate; clients could not read it.
var ErrInvalidUTF8 = invalid("invalid_utf8", "data must be valid UTF-8 text: it holds a byte sequence that is not UTF-8, "+
	`or an escaped lone surrogate (\ud800-\udfff without its pair)`)

// ErrDraining: the node is shutting down and takes no new connections.
var ErrDraining = retryLater(unavailable("node is draining"), time.Second)

// AsError returns err as an *Error, or a KindInternal one that hides err's
// text, which may name internals.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Kind: KindInternal, Code: "internal", Message: "internal error"}
}

// clip shortens a rejected name before it is echoed back.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
