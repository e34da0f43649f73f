// Command heraldctl talks to a herald cluster from a terminal.
//
//	heraldctl send -key u1 '{"item":"sword"}'       # or -keys u1,u2; -store; -wait acked
//	heraldctl publish -topic board 'fix the fountain'
//	heraldctl batch -file items.json                # many sends in one request
//	heraldctl listen -key u1 -topics board          # prints frames, resumes after reconnects
//	heraldctl presence u1
//	heraldctl cluster
//
// -url (HERALD_URL, default http://localhost:8080), -api-key (HERALD_API_KEY)
// and -token (HERALD_TOKEN) apply to every command.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/herald-push/herald/pkg/client"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	if errors.Is(err, flag.ErrHelp) { // asked for: the usage is printed
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "heraldctl:", err)
		os.Exit(1)
	}
}

const usage = `usage: heraldctl <command> [flags] [args]

commands:
  send      -key K | -keys K1,K2 [-store] [-wait delivered|acked] [-timeout 5s] [-idempotency-key X] DATA
  publish   -topic T DATA
  broadcast DATA
  batch     -file ITEMS.json (- for stdin): up to --max-batch items in one request, each
            {"key"|"keys"|"topic"|"broadcast":true, "data", ...}; prints each item's answer
  listen    -key K | (token) [-topics T1,T2] [-since ID] [-ack]
  presence  KEY
  cluster

DATA is JSON, or taken as text when it is not JSON. Flags for all commands:
  -url (HERALD_URL)  -api-key (HERALD_API_KEY)  -token (HERALD_TOKEN)`

// global holds the flags every command takes.
type global struct {
	url, apiKey, token string
}

func (g *global) register(fs *flag.FlagSet, getenv func(string) string) {
	def := func(name, fallback string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return fallback
	}
	fs.StringVar(&g.url, "url", def("HERALD_URL", "http://localhost:8080"), "node or balancer")
	fs.StringVar(&g.apiKey, "api-key", def("HERALD_API_KEY", ""), "API key for the HTTP API")
	fs.StringVar(&g.token, "token", def("HERALD_TOKEN", ""), "connection token for listen")
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return flag.ErrHelp
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var g global
	g.register(fs, getenv)
	switch cmd {
	case "send":
		key := fs.String("key", "", "recipient key")
		keys := fs.String("keys", "", "recipient keys, comma-separated")
		store := fs.Bool("store", false, "store the message until delivered")
		wait := fs.String("wait", "", "wait until delivered or acked")
		timeout := fs.Duration("timeout", 0, "how long to wait")
		idem := fs.String("idempotency-key", "", "Idempotency-Key header")
		if err := fs.Parse(args); err != nil {
			return err
		}
		data, err := dataArg(fs.Args())
		if err != nil {
			return err
		}
		body := map[string]any{"data": data}
		switch {
		case *key != "":
			body["key"] = *key
		case *keys != "":
			body["keys"] = strings.Split(*keys, ",")
		default:
			return errors.New("send: give -key or -keys")
		}
		if *store {
			body["store"] = true
		}
		if *wait != "" {
			body["wait"] = *wait
		}
		if *timeout > 0 {
			body["timeout_ms"] = timeout.Milliseconds()
		}
		return g.call(ctx, http.MethodPost, "/v1/send", body, map[string]string{"Idempotency-Key": *idem}, stdout)
	case "publish":
		topic := fs.String("topic", "", "topic")
		if err := fs.Parse(args); err != nil {
			return err
		}
		data, err := dataArg(fs.Args())
		if err != nil || *topic == "" {
			return errors.Join(err, errors.New("publish: give -topic and DATA"))
		}
		return g.call(ctx, http.MethodPost, "/v1/topics/"+*topic, map[string]any{"data": data}, nil, stdout)
	case "batch":
		file := fs.String("file", "", "JSON file of items: an array, or {\"items\":[...]}; - for stdin")
		if err := fs.Parse(args); err != nil {
			return err
		}
		items, err := batchItems(*file)
		if err != nil {
			return fmt.Errorf("batch: %w", err)
		}
		return g.call(ctx, http.MethodPost, "/v1/batch", map[string]any{"items": items}, nil, stdout)
	case "broadcast":
		if err := fs.Parse(args); err != nil {
			return err
		}
		data, err := dataArg(fs.Args())
		if err != nil {
			return err
		}
		return g.call(ctx, http.MethodPost, "/v1/broadcast", map[string]any{"data": data}, nil, stdout)
	case "presence":
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() != 1 {
			return errors.New("presence: give one KEY")
		}
		return g.call(ctx, http.MethodGet, "/v1/presence/"+fs.Arg(0), nil, nil, stdout)
	case "cluster":
		if err := fs.Parse(args); err != nil {
			return err
		}
		return g.call(ctx, http.MethodGet, "/v1/cluster", nil, nil, stdout)
	case "listen":
		key := fs.String("key", "", "key to listen as (development mode)")
		topics := fs.String("topics", "", "topics, comma-separated")
		ack := fs.Bool("ack", false, "acknowledge stored messages")
		if err := fs.Parse(args); err != nil {
			return err
		}
		return g.listen(ctx, *key, *topics, *ack, stdout, stderr)
	}
	return fmt.Errorf("unknown command %q\n%s", cmd, usage)
}

// dataArg reads DATA: JSON as it is, anything else as a JSON string.
func dataArg(args []string) (json.RawMessage, error) {
	if len(args) != 1 {
		return nil, errors.New("give exactly one DATA argument (quote it)")
	}
	if json.Valid([]byte(args[0])) {
		return json.RawMessage(args[0]), nil
	}
	b, _ := json.Marshal(args[0])
	return b, nil
}

// call performs an API request and prints the JSON answer; an error answer
// is printed too and makes the command fail.
func (g *global) call(ctx context.Context, method, path string, body any, headers map[string]string, stdout io.Writer) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(g.url, "/")+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if g.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+g.apiKey)
	}
	for k, v := range headers {
		if v != "" {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	var pretty bytes.Buffer
	if json.Indent(&pretty, out, "", "  ") == nil {
		out = pretty.Bytes()
	}
	fmt.Fprintln(stdout, strings.TrimSpace(string(out)))
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	return nil
}

// listen prints every frame as one JSON line until interrupted.
func (g *global) listen(ctx context.Context, key, topics string, ack bool, stdout, stderr io.Writer) error {
	cfg := client.Config{URLs: []string{g.url}, Key: key, Token: g.token, AutoAck: ack,
		OnState: func(connected bool, err error) {
			if connected {
				fmt.Fprintln(stderr, "heraldctl: connected")
			} else if err != nil {
				fmt.Fprintln(stderr, "heraldctl: disconnected:", err)
			}
		}}
	if topics != "" {
		cfg.Topics = strings.Split(topics, ",")
	}
	c, err := client.New(cfg)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	return c.Run(ctx, func(m client.Message) { enc.Encode(m) })
}

// batchItems reads the items of a batch from path ("-": standard input): a
// JSON array of items, or an object holding them in "items".
func batchItems(path string) (json.RawMessage, error) {
	var raw []byte
	var err error
	switch path {
	case "":
		return nil, errors.New("give -file")
	case "-":
		raw, err = io.ReadAll(os.Stdin)
	default:
		raw, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, err
	}
	var wrapped struct {
		Items json.RawMessage `json:"items"`
	}
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) > 0 && raw[0] == '[':
		return raw, nil
	case json.Unmarshal(raw, &wrapped) == nil && wrapped.Items != nil:
		return wrapped.Items, nil
	}
	return nil, errors.New("the file holds neither a JSON array of items nor {\"items\":[...]}")
}
