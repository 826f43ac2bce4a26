package httpv1

import (
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

func (c *Client) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Base+path, nil)
	if err != nil {
		return err
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("coordinator at %s: %w", c.Base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e Error
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s: %s (HTTP %d)", path, e.Error, resp.StatusCode)
		}
		return fmt.Errorf("%s: HTTP %d", path, resp.StatusCode)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("decoding %s: %w", path, err)
	}
	return nil
}
