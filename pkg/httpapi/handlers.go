package httpapi

import (
	"context"
	"net/http"
	"slices"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/herald-push/herald/pkg/inbox"
	"github.com/herald-push/herald/pkg/node"
	"github.com/herald-push/herald/pkg/presence"
	"github.com/herald-push/herald/pkg/protocol"
)

// sendAnswer is the body of a send's answer.
type sendAnswer struct {
	ID      string               `json:"id"`
	Online  []string             `json:"online"`
	Offline []string             `json:"offline"`
	Results map[string]keyAnswer `json:"results,omitempty"`
}

type keyAnswer struct {
	ID     string `json:"id,omitempty"` // none when not_stored
	Status string `json:"status"`       // stored, delivered, acked or not_stored
}

type publishAnswer struct {
	ID    string `json:"id"`
	Nodes int    `json:"nodes"`
	Topic string `json:"topic,omitempty"`
}

var waits = map[string]inbox.Wait{"": inbox.WaitNone, "delivered": inbox.WaitDelivered, "acked": inbox.WaitAcked}

func (s *Server) handleSend(c *gin.Context) {
	start := time.Now()
	defer func() { s.metrics.sendSeconds.Observe(time.Since(start).Seconds()) }()
	p, reserved, err := s.readPayload(c, true)
	defer s.releaseBody(reserved)
	if err != nil {
		s.fail(c, err)
		return
	}
	keys, err := p.keys()
	if err != nil {
		s.fail(c, err)
		return
	}
	req := node.SendRequest{
		Keys: keys, Data: p.Data, Store: p.Store, Wait: waits[p.Wait],
		Timeout:        time.Duration(p.TimeoutMS) * time.Millisecond,
		IdempotencyKey: c.GetHeader("Idempotency-Key"), Caller: c.GetString(callerNameKey),
	}
	if req.Caller == "" {
		req.Client = c.ClientIP() // open mode: stored bytes are counted per address
	}
	res, err := s.node.Send(c.Request.Context(), req)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.answerSend(c, res.Replayed, sendAnswerOf(res))
}

func sendAnswerOf(res node.SendResult) sendAnswer {
	out := sendAnswer{ID: res.ID, Online: res.Online, Offline: res.Offline}
	out.Results = keyAnswersOf(res.Results)
	return out
}

func keyAnswersOf(results map[string]node.KeyResult) map[string]keyAnswer {
	if results == nil {
		return nil
	}
	out := make(map[string]keyAnswer, len(results))
	for k, r := range results {
		out[k] = keyAnswer{ID: r.ID, Status: r.Status.String()}
	}
	return out
}

// answer writes a successful answer; a replayed one says so.
func (s *Server) answer(c *gin.Context, replayed bool, body any) {
	if replayed {
		c.Header("Idempotent-Replayed", "true")
	}
	c.JSON(http.StatusOK, body)
}

// handlePublish serves POST /v1/topics/{topic}. A request with an API key
// needs the publish scope for the topic. A request without one is accepted
// only for a public topic, within that topic's size limit and its rate per
// client IP; in development mode every topic is open, public ones still
// limited.
func (s *Server) handlePublish(c *gin.Context) {
	start := time.Now()
	defer func() { s.metrics.topicSeconds.Observe(time.Since(start).Seconds()) }()
	topic := c.Param("topic")
	if !protocol.ValidName(topic) {
		s.fail(c, node.InvalidName("invalid_topic", "topic", topic))
		return
	}
	req := node.PublishRequest{Topic: topic}
	public := slices.Contains(s.cfg.PublicTopics, topic)
	anonymous := c.GetHeader("Authorization") == ""
	switch {
	case public && anonymous:
		if ok, wait := s.publicRate.Allow(c.ClientIP()+" "+topic, time.Now()); !ok {
			err := node.Errorf(node.KindTooMany, "rate_limited", "posting to %s is limited to %g per second per address", topic, s.cfg.PublicRate)
			err.RetryAfter = wait
			s.fail(c, err)
			return
		}
		req.MaxBytes, req.Limit = s.cfg.PublicMaxMessageBytes, "the public topic limit"
	case s.cfg.APIKeys != nil:
		caller, err := s.caller(c)
		if err != nil {
			s.fail(c, err)
			return
		}
		if !caller.CanPublish(topic) {
			s.fail(c, node.Errorf(node.KindForbidden, "forbidden", "api key %q may not publish to %s", caller.Name(), topic))
			return
		}
		req.Caller = caller.Name()
	}
	s.publish(c, req, s.node.Publish)
}

func (s *Server) handleBroadcast(c *gin.Context) {
	start := time.Now()
	defer func() { s.metrics.broadcastSeconds.Observe(time.Since(start).Seconds()) }()
	s.publish(c, node.PublishRequest{Caller: c.GetString(callerNameKey)}, s.node.Broadcast)
}

func (s *Server) publish(c *gin.Context, req node.PublishRequest, do func(context.Context, node.PublishRequest) (node.PublishResult, error)) {
	p, reserved, err := s.readPayload(c, false)
	defer s.releaseBody(reserved)
	if err != nil {
		s.fail(c, err)
		return
	}
	req.Data, req.IdempotencyKey = p.Data, c.GetHeader("Idempotency-Key")
	res, err := do(c.Request.Context(), req)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.answer(c, res.Replayed, publishAnswer{ID: res.ID, Nodes: res.Nodes, Topic: res.Topic})
}

func (s *Server) handlePresence(c *gin.Context) {
	res, err := s.node.Presence(c.Request.Context(), c.Param("key"))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"key": res.Key, "online": res.Online, "connections": res.Connections, "nodes": res.Nodes})
}

func (s *Server) handleCluster(c *gin.Context) {
	nodes, err := s.node.Cluster(c.Request.Context())
	if err != nil {
		s.fail(c, err)
		return
	}
	if nodes == nil {
		nodes = []presence.Node{}
	}
	c.JSON(http.StatusOK, gin.H{"nodes": nodes})
}

func (s *Server) handleDisconnect(c *gin.Context) {
	key := c.Param("key")
	nodes, err := s.node.Disconnect(c.Request.Context(), key)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"key": key, "nodes": nodes})
}

func (s *Server) handleReady(c *gin.Context) {
	if err := s.node.Ready(); err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready"})
}
