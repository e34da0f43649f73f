package httpapi

import (
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/herald-push/herald/pkg/node"
	"github.com/herald-push/herald/pkg/protocol"
)

// ackBody is POST /v1/ack's body.
type ackBody struct {
	Key   string `json:"key"`
	Token string `json:"token"`
	ID    string `json:"id"`
}

var ackFields = fieldSet{"key", "token", "id"}

// maxAckBody bounds an ack's body: a key, an id and a token.
const maxAckBody = 16 << 10

type ackAnswer struct {
	Key string `json:"key"`
	ID  string `json:"id"`
}

// handleAck serves POST /v1/ack: a client that reads its messages over
// Server-Sent Events acknowledges its stored stream through any node, with
// the credentials it connects with (node.Ack). The token may come in the
// body or as Authorization: Bearer, never in the query, where logs and
// proxies would keep it.
func (s *Server) handleAck(c *gin.Context) {
	isJSON, err := jsonContentType(c.GetHeader("Content-Type"))
	if err != nil {
		s.fail(c, err)
		return
	}
	if !isJSON {
		s.fail(c, node.Errorf(node.KindUnsupported, "unsupported_media_type",
			`this request takes a JSON body {"key":...,"id":...} sent with Content-Type: application/json`))
		return
	}
	body, reserved, err := s.readBody(c, maxAckBody, nil)
	defer s.releaseBody(reserved)
	if err != nil {
		s.fail(c, err)
		return
	}
	var b ackBody
	if err := decodeStrict(body, &b, ackFields); err != nil {
		s.fail(c, err)
		return
	}
	id, ok := protocol.ParseStoredID(b.ID)
	if !ok {
		s.fail(c, badRequest("invalid_id", "id must be the id of a stored message (<ms>-<seq>)"))
		return
	}
	req := node.AckRequest{Key: b.Key, Token: b.Token, ID: id}
	if req.Token == "" {
		req.Token, _ = strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
	}
	res, err := s.node.Ack(c.Request.Context(), req)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, ackAnswer{Key: res.Key, ID: res.ID.String()})
}
