package cni

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// Client talks to the agent over its unix socket.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns a client for the agent at socket. timeout bounds one
// call; it stays below the runtimes' CNI timeouts so the plugin answers
// before it is killed.
func NewClient(socket string, timeout time.Duration) *Client {
	return &Client{
		socket: socket,
		http: &http.Client{
			Timeout: timeout,
			Transport: &http.Transport{
				DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					var d net.Dialer
					return d.DialContext(ctx, "unix", socket)
				},
				DisableKeepAlives: true,
			},
		},
	}
}

// ErrUnreachable is wrapped by Do's error when the agent cannot be reached.
var ErrUnreachable = errors.New("telcni agent unreachable")

// Do sends one call and returns the agent's reply.
func (c *Client) Do(ctx context.Context, call *Call) (*Reply, error) {
	body, err := json.Marshal(call)
	if err != nil {
		return nil, fmt.Errorf("encode call: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://telcni-agent"+CallPath, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w at %s: %v", ErrUnreachable, c.socket, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("%w at %s: reading reply: %v", ErrUnreachable, c.socket, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("telcni agent at %s answered %s: %s", c.socket, resp.Status, bytes.TrimSpace(data))
	}
	var reply Reply
	if err := json.Unmarshal(data, &reply); err != nil {
		return nil, fmt.Errorf("decode agent reply: %w", err)
	}
	return &reply, nil
}

// Get fetches a JSON document from the agent (listings for telcnictl).
func (c *Client) Get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://telcni-agent"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%w at %s: %v", ErrUnreachable, c.socket, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, bytes.TrimSpace(b))
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// Post sends in as JSON to path and decodes the JSON answer into out,
// whatever the HTTP status (the body says what went wrong); the status is
// returned for the caller to judge.
func (c *Client) Post(ctx context.Context, path string, in, out any) (int, error) {
	body, err := json.Marshal(in)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://telcni-agent"+path, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%w at %s: %v", ErrUnreachable, c.socket, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(out); err != nil {
		return resp.StatusCode, fmt.Errorf("POST %s: %s: decode answer: %w", path, resp.Status, err)
	}
	return resp.StatusCode, nil
}
