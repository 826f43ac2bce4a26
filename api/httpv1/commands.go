package httpv1

import (
	"context"
	"net/url"
	"strconv"
	"time"
)

// Command states.
const (
	CommandSent         = "sent"
	CommandAcknowledged = "acknowledged"
	CommandProgress     = "progress"
	CommandDone         = "done"
	CommandFailed       = "failed"
)

// Command is one command sent to an agent (a drain, a prefetch) and what the agent answered.
type Command struct {
	ID         string     `json:"id"`
	Node       string     `json:"node"`
	Kind       string     `json:"kind"`
	Reason     string     `json:"reason,omitempty"`
	State      string     `json:"state"`
	Message    string     `json:"message,omitempty"`
	DoneBytes  uint64     `json:"done_bytes,omitempty"`
	TotalBytes uint64     `json:"total_bytes,omitempty"`
	Sends      int        `json:"sends"`
	SentAt     time.Time  `json:"sent_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
	Deadline   *time.Time `json:"deadline,omitempty"`
}

// CommandList is GET /api/v1/commands, the most recently updated first.
type CommandList struct {
	Commands []Command `json:"commands"`
}

// Commands calls GET /api/v1/commands; node filters when not empty, limit <= 0 means the server's default.
func (c *Client) Commands(ctx context.Context, node string, limit int) (CommandList, error) {
	q := url.Values{}
	if node != "" {
		q.Set("node", node)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	p := "/api/v1/commands"
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	var l CommandList
	err := c.get(ctx, p, &l)
	return l, err
}
