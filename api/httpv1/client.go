package httpv1

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client calls the coordinator's HTTP API.
type Client struct {
	// Base is the coordinator's URL, e.g. http://127.0.0.1:9711.
	Base string
	HTTP *http.Client
	// Token is sent as a bearer token (needed for mutating requests when the API has one).
	Token string
}

// NewClient returns a client for base ("host:port" gets http:// in front).
func NewClient(base string) *Client {
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	return &Client{Base: strings.TrimRight(base, "/"), HTTP: &http.Client{Timeout: 10 * time.Second}}
}

// Nodes calls GET /api/v1/nodes.
func (c *Client) Nodes(ctx context.Context) ([]Node, error) {
	var l NodeList
	err := c.get(ctx, "/api/v1/nodes", &l)
	return l.Nodes, err
}

// Node calls GET /api/v1/nodes/{name}.
func (c *Client) Node(ctx context.Context, name string) (NodeDetail, error) {
	var d NodeDetail
	err := c.get(ctx, "/api/v1/nodes/"+url.PathEscape(name), &d)
	return d, err
}

// Raw returns the body of GET path as it came, for `-o json`.
func (c *Client) Raw(ctx context.Context, path string) ([]byte, error) {
	var raw json.RawMessage
	err := c.get(ctx, path, &raw)
	return raw, err
}

func (c *Client) get(ctx context.Context, path string, out any) error {
	return c.do(ctx, http.MethodGet, path, nil, out)
}

func (c *Client) post(ctx context.Context, path string, in, out any) error {
	return c.do(ctx, http.MethodPost, path, in, out)
}

// do sends one request (in, when not nil, as its JSON body) and decodes a 2xx answer into out;
// any other answer becomes an error carrying the API's message.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encoding %s: %w", path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("coordinator at %s: %w", c.Base, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e Error
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s: %s (HTTP %d)", path, e.Error, resp.StatusCode)
		}
		return fmt.Errorf("%s: HTTP %d", path, resp.StatusCode)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("decoding %s: %w", path, err)
	}
	return nil
}

// Rounds calls GET /api/v1/rounds.
func (c *Client) Rounds(ctx context.Context) ([]Round, error) {
	var l RoundList
	err := c.get(ctx, "/api/v1/rounds", &l)
	return l.Rounds, err
}
