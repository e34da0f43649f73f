package client_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/herald-push/herald/internal/apitest"
	"github.com/herald-push/herald/internal/nodetest"
	"github.com/herald-push/herald/internal/redistest"
	"github.com/herald-push/herald/pkg/auth"
	"github.com/herald-push/herald/pkg/client"
	"github.com/herald-push/herald/pkg/node"
	"github.com/herald-push/herald/pkg/protocol"
)

// startNodeCtx runs a node and returns a func stopping it gracefully.
// Every answer these tests receive is checked against the API's OpenAPI
// document.
func TestMain(m *testing.M) { os.Exit(apitest.Main(m)) }

func startNodeCtx(t *testing.T, tune func(*node.Config)) (func(), string) {
	t.Helper()
	var cfg node.Config
	if tune != nil {
		tune(&cfg)
	}
	n := nodetest.Start(t, cfg)
	return n.Stop, n.Addr
}

func startNode(t *testing.T, tune func(*node.Config)) string {
	t.Helper()
	_, addr := startNodeCtx(t, tune)
	return addr
}

func TestAClientWithABadTokenStopsWithTheNodesReason(t *testing.T) {
	secret := []byte("client-test-secret-client-test-secret")
	addr := startNode(t, func(c *node.Config) {
		v, _ := auth.NewVerifier(auth.TokenConfig{HS256Secret: secret})
		c.Tokens = v
	})
	expired, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "u1", "exp": time.Now().Add(-time.Hour).Unix()}).SignedString(secret)
	c, err := client.New(client.Config{URLs: []string{"http://" + addr}, Token: expired})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = c.Run(ctx, func(client.Message) {})
	var refused *client.Error
	if !errors.As(err, &refused) || refused.Status != 401 || refused.Code != "invalid_token" {
		t.Fatalf("Run = %v, want a 401 invalid_token refusal", err)
	}
}

func post(t *testing.T, addr, body string) {
	t.Helper()
	resp, err := http.Post("http://"+addr+"/v1/send", "application/json", strings.NewReader(body))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("send %s: %v %v", body, resp, err)
	}
	resp.Body.Close()
}

func next(t *testing.T, got <-chan client.Message, want string) client.Message {
	t.Helper()
	select {
	case m := <-got:
		if string(m.Data) != want {
			t.Fatalf("got %s, want %s", m.Data, want)
		}
		return m
	case <-time.After(5 * time.Second):
		t.Fatalf("no message %s within 5s", want)
	}
	return client.Message{}
}

func TestAClientMovesToAnotherNodeAndResumesAfterItsLastStoredMessage(t *testing.T) {
	r := redistest.Start(t)
	stopA, a := startNodeCtx(t, func(c *node.Config) { c.NodeID, c.Redis.URL, c.DrainWindow = "a", r.URL(), 10*time.Millisecond })
	_, b := startNodeCtx(t, func(c *node.Config) { c.NodeID, c.Redis.URL = "b", r.URL() })

	got := make(chan client.Message, 16)
	c, _ := client.New(client.Config{URLs: []string{"ws://" + a, "ws://" + b}, Key: "u1", AutoAck: true, MinBackoff: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx, func(m client.Message) { got <- m }); close(done) }()
	defer func() { cancel(); <-done }()

	post(t, b, `{"key":"u1","data":1,"store":true}`) // stored: arrives whenever the client connects
	first := next(t, got, "1")
	if !first.Stored() || c.LastID() != first.ID {
		t.Fatalf("LastID %q after receiving %q", c.LastID(), first.ID)
	}
	stopA() // 1012: the client moves to b and resumes after message 1
	post(t, b, `{"key":"u1","data":2,"store":true}`)
	next(t, got, "2")
	select {
	case m := <-got:
		t.Fatalf("unexpected message %s after resuming", m.Data)
	case <-time.After(200 * time.Millisecond):
	}
}

func TestAClientDisconnectedByAnOperatorStops(t *testing.T) {
	_, addr := startNodeCtx(t, nil)
	c, _ := client.New(client.Config{URLs: []string{"ws://" + addr}, Key: "u1"})
	errc := make(chan error, 1)
	go func() { errc <- c.Run(context.Background(), func(client.Message) {}) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		req, _ := http.NewRequest("DELETE", "http://"+addr+"/v1/connections/u1", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		select {
		case err := <-errc:
			var refused *client.Error
			if !errors.As(err, &refused) || protocol.CloseCode(refused.CloseCode) != protocol.CloseDisconnected {
				t.Fatalf("Run = %v, want a 4001 close", err)
			}
			return
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("client still running after being disconnected")
		}
	}
}
