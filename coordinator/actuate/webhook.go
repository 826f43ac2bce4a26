package actuate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/tmwarden/tmwarden/coordinator/decide"
)

// WebhookConfig configures the webhook actuator.
type WebhookConfig struct {
	// URL receives a JSON POST per action. Required for kind webhook.
	URL string `yaml:"url" json:"url"`
	// Timeout bounds one attempt. Default 10s.
	Timeout time.Duration `yaml:"timeout" json:"timeout"`
	// Retries is how many more attempts follow a failed one (network error or 5xx). Default 3.
	Retries int `yaml:"retries" json:"retries"`
	// Backoff is the wait before the first retry; it doubles. Default 1s.
	Backoff time.Duration `yaml:"backoff" json:"backoff"`
	// Headers are added to every request (an Authorization token, say). Default none.
	Headers map[string]string `yaml:"headers" json:"headers,omitempty"`
}

// DefaultWebhookConfig returns the documented defaults.
func DefaultWebhookConfig() WebhookConfig {
	return WebhookConfig{Timeout: 10 * time.Second, Retries: 3, Backoff: time.Second}
}

// WebhookPayload is the JSON body the webhook receives.
type WebhookPayload struct {
	// IdempotencyKey is also sent as the Idempotency-Key header; a receiver that sees it twice
	// (a retry, or a coordinator restarted mid-call) must act once.
	IdempotencyKey string        `json:"idempotency_key"`
	Decision       decide.Action `json:"decision"`
	SentAt         time.Time     `json:"sent_at"`
}

// Webhook posts each action to a URL.
type Webhook struct {
	cfg  WebhookConfig
	http *http.Client
	log  *slog.Logger
}

// NewWebhook returns the webhook actuator; hc may be nil.
func NewWebhook(cfg WebhookConfig, hc *http.Client, log *slog.Logger) (*Webhook, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("webhook url %q: want an absolute http or https URL", cfg.URL)
	}
	d := DefaultWebhookConfig()
	if cfg.Timeout <= 0 {
		cfg.Timeout = d.Timeout
	}
	if cfg.Retries < 0 {
		cfg.Retries = 0
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = d.Backoff
	}
	if hc == nil {
		hc = &http.Client{}
	}
	if log == nil {
		log = slog.Default()
	}
	return &Webhook{cfg: cfg, http: hc, log: log}, nil
}

func (*Webhook) Name() string { return "webhook" }

func (*Webhook) Plan(_ context.Context, a decide.Action) ([]Step, error) {
	return []Step{{Name: "webhook", Kind: "webhook", Target: a.Node}}, nil
}

func (w *Webhook) Do(ctx context.Context, a decide.Action, _ Step, key string) (string, error) {
	body, err := json.Marshal(WebhookPayload{IdempotencyKey: key, Decision: a, SentAt: time.Now().UTC()})
	if err != nil {
		return "", fmt.Errorf("encoding webhook payload: %w", err)
	}
	wait := w.cfg.Backoff
	var last error
	for attempt := 0; attempt <= w.cfg.Retries; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return "", ctx.Err()
			case <-time.After(wait):
			}
			wait *= 2
		}
		status, err := w.post(ctx, body, key)
		if err == nil {
			return fmt.Sprintf("webhook answered HTTP %d", status), nil
		}
		last = err
		var perm *permanentError
		if errors.As(err, &perm) || ctx.Err() != nil {
			break
		}
		w.log.Warn("webhook attempt failed", "attempt", attempt+1, "key", key, "err", err)
	}
	return "", fmt.Errorf("webhook %s: %w", w.cfg.URL, last)
}

type permanentError struct{ status int }

func (e *permanentError) Error() string { return fmt.Sprintf("HTTP %d (not retried)", e.status) }

func (w *Webhook) post(ctx context.Context, body []byte, key string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return 0, &permanentError{}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	for k, v := range w.cfg.Headers {
		req.Header.Set(k, v)
	}
	resp, err := w.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	switch {
	case resp.StatusCode/100 == 2:
		return resp.StatusCode, nil
	case resp.StatusCode/100 == 4 && resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusRequestTimeout:
		return resp.StatusCode, &permanentError{status: resp.StatusCode}
	}
	return resp.StatusCode, fmt.Errorf("HTTP %d", resp.StatusCode)
}
