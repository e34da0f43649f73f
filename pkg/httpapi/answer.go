package httpapi

import (
	"net/http"
	"slices"
	"sync"

	"github.com/gin-gonic/gin"
)

// jsonType is the Content-Type of a JSON answer, as gin's c.JSON sets it;
// one slice for every answer, so setting it costs nothing.
var jsonType = []string{"application/json; charset=utf-8"}

// buffers holds buffers for the send path (answers written, bodies
// read); only small ones are kept.
type buffers struct{ pool sync.Pool }

const maxAnswerBuffer = 4 << 10

func (p *buffers) get() *[]byte {
	if b, ok := p.pool.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, 512)
	return &b
}

func (p *buffers) put(b *[]byte) {
	if cap(*b) <= maxAnswerBuffer {
		*b = (*b)[:0]
		p.pool.Put(b)
	}
}

// answerSend writes a send's answer. It is the answer every send gets, so
// it is written by hand, byte for byte what encoding/json writes (the tests
// compare them): c.JSON cost three allocations and a walk by reflection per
// send. An answer holding a string that encoding/json would escape, which
// valid names and ids never are, goes through c.JSON.
func (s *Server) answerSend(c *gin.Context, replayed bool, a sendAnswer) {
	bp := s.answerBufs.get()
	defer s.answerBufs.put(bp)
	b, ok := appendSendAnswer((*bp)[:0], a)
	*bp = b
	if !ok {
		s.answer(c, replayed, a)
		return
	}
	if replayed {
		c.Header("Idempotent-Replayed", "true")
	}
	c.Writer.Header()["Content-Type"] = jsonType
	c.Writer.WriteHeader(http.StatusOK)
	_, _ = c.Writer.Write(b) // a failed write is the client gone: nothing to tell it
}

// appendSendAnswer appends a as encoding/json marshals it, or reports that
// it holds a string this encoder leaves to encoding/json.
func appendSendAnswer(b []byte, a sendAnswer) ([]byte, bool) {
	b = append(b, `{"id":`...)
	b, ok := appendPlainString(b, a.ID)
	b = append(b, `,"online":`...)
	b, ok1 := appendPlainStrings(b, a.Online)
	b = append(b, `,"offline":`...)
	b, ok2 := appendPlainStrings(b, a.Offline)
	ok = ok && ok1 && ok2
	if len(a.Results) > 0 { // omitempty
		// encoding/json writes a map's keys sorted.
		var room [16]string
		keys := room[:0]
		for k := range a.Results {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, `,"results":{`...)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			r := a.Results[k]
			var okk, oki, oks bool
			b, okk = appendPlainString(b, k)
			b = append(b, ':', '{')
			oki = true
			if r.ID != "" { // omitempty
				b = append(b, `"id":`...)
				b, oki = appendPlainString(b, r.ID)
				b = append(b, ',')
			}
			b = append(b, `"status":`...)
			b, oks = appendPlainString(b, r.Status)
			b = append(b, '}')
			ok = ok && okk && oki && oks
		}
		b = append(b, '}')
	}
	return append(b, '}'), ok
}

// appendPlainString appends s quoted, and reports whether s needed nothing
// escaped: printable ASCII without the characters encoding/json escapes
// (quote, backslash, and <, >, & for HTML).
func appendPlainString(b []byte, s string) ([]byte, bool) {
	ok := true
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c >= 0x7f, c == '"', c == '\\', c == '<', c == '>', c == '&':
			ok = false
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"'), ok
}

// appendPlainStrings appends ss as a JSON array (null when nil, as
// encoding/json writes a nil slice).
func appendPlainStrings(b []byte, ss []string) ([]byte, bool) {
	if ss == nil {
		return append(b, "null"...), true
	}
	ok := true
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		var oki bool
		b, oki = appendPlainString(b, s)
		ok = ok && oki
	}
	return append(b, ']'), ok
}
