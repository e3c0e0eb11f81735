package cni

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// Client talks to the agent over its unix socket. It speaks plain HTTP/1.0
// by hand instead of importing net/http: the plugin binary runs once per
// CNI call, and net/http's (and crypto/tls's) package initialisation was
// half of its start-up. HTTP/1.0 makes the agent's server close the
// connection after a body that is never chunked, so the answer is simply
// everything up to EOF.
type Client struct {
	socket  string
	timeout time.Duration
}

// NewClient returns a client for the agent at socket. timeout bounds one
// call; it stays below the runtimes' CNI timeouts so the plugin answers
// before it is killed.
func NewClient(socket string, timeout time.Duration) *Client {
	return &Client{socket: socket, timeout: timeout}
}

// ErrUnreachable is wrapped by the client's errors when the agent cannot be
// reached or hangs up before answering.
var ErrUnreachable = errors.New("telcni agent unreachable")

// maxAnswer bounds what the client reads of one answer.
const maxAnswer = 16 << 20

// Do sends one call and returns the agent's reply.
func (c *Client) Do(ctx context.Context, call *Call) (*Reply, error) {
	body, err := json.Marshal(call)
	if err != nil {
		return nil, fmt.Errorf("encode call: %w", err)
	}
	status, data, err := c.roundTrip(ctx, "POST", CallPath, body)
	if err != nil {
		return nil, err
	}
	if status != 200 {
		return nil, fmt.Errorf("telcni agent at %s answered %d: %s", c.socket, status, bytes.TrimSpace(data))
	}
	var reply Reply
	if err := json.Unmarshal(data, &reply); err != nil {
		return nil, fmt.Errorf("decode agent reply: %w", err)
	}
	return &reply, nil
}

// Get fetches a JSON document from the agent (listings for telcnictl).
func (c *Client) Get(ctx context.Context, path string, v any) error {
	status, data, err := c.roundTrip(ctx, "GET", path, nil)
	if err != nil {
		return err
	}
	if status != 200 {
		return fmt.Errorf("GET %s: %d: %s", path, status, bytes.TrimSpace(data))
	}
	return json.Unmarshal(data, v)
}

// Post sends in as JSON to path and decodes the JSON answer into out,
// whatever the HTTP status (the body says what went wrong); the status is
// returned for the caller to judge.
func (c *Client) Post(ctx context.Context, path string, in, out any) (int, error) {
	body, err := json.Marshal(in)
	if err != nil {
		return 0, err
	}
	status, data, err := c.roundTrip(ctx, "POST", path, body)
	if err != nil {
		return 0, err
	}
	if err := json.Unmarshal(data, out); err != nil {
		return status, fmt.Errorf("POST %s: %d: decode answer: %w", path, status, err)
	}
	return status, nil
}

// roundTrip sends one request and returns the status and body.
func (c *Client) roundTrip(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.socket)
	if err != nil {
		return 0, nil, fmt.Errorf("%w at %s: %v", ErrUnreachable, c.socket, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) }) // cancel unblocks I/O
	defer stop()
	var req bytes.Buffer
	fmt.Fprintf(&req, "%s %s HTTP/1.0\r\nHost: telcni-agent\r\n", method, path)
	if body != nil {
		fmt.Fprintf(&req, "Content-Type: application/json\r\nContent-Length: %d\r\n", len(body))
	}
	req.WriteString("\r\n")
	req.Write(body)
	if _, err := conn.Write(req.Bytes()); err != nil {
		return 0, nil, fmt.Errorf("%w at %s: send: %v", ErrUnreachable, c.socket, err)
	}
	status, data, err := readAnswer(bufio.NewReader(conn))
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return 0, nil, fmt.Errorf("%w at %s: %v", ErrUnreachable, c.socket, err)
	}
	return status, data, nil
}

// readAnswer parses an HTTP/1.x response whose body ends with the
// connection (or its Content-Length).
func readAnswer(r *bufio.Reader) (int, []byte, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return 0, nil, fmt.Errorf("read status: %w", err)
	}
	f := strings.Fields(line)
	if len(f) < 2 || !strings.HasPrefix(f[0], "HTTP/1.") {
		return 0, nil, fmt.Errorf("not an HTTP answer: %q", strings.TrimSpace(line))
	}
	status, err := strconv.Atoi(f[1])
	if err != nil {
		return 0, nil, fmt.Errorf("status %q: %w", f[1], err)
	}
	length := -1
	for {
		h, err := r.ReadString('\n')
		if err != nil {
			return 0, nil, fmt.Errorf("read headers: %w", err)
		}
		h = strings.TrimRight(h, "\r\n")
		if h == "" {
			break
		}
		k, v, _ := strings.Cut(h, ":")
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "content-length":
			if length, err = strconv.Atoi(strings.TrimSpace(v)); err != nil || length < 0 || length > maxAnswer {
				return 0, nil, fmt.Errorf("content-length %q", strings.TrimSpace(v))
			}
		case "transfer-encoding":
			return 0, nil, fmt.Errorf("unexpected transfer-encoding %q in an HTTP/1.0 answer", strings.TrimSpace(v))
		}
	}
	if length >= 0 {
		data := make([]byte, length)
		if _, err := io.ReadFull(r, data); err != nil {
			return 0, nil, fmt.Errorf("read body: %w", err)
		}
		return status, data, nil
	}
	data, err := io.ReadAll(io.LimitReader(r, maxAnswer+1))
	if err != nil {
		return 0, nil, fmt.Errorf("read body: %w", err)
	}
	if len(data) > maxAnswer {
		return 0, nil, fmt.Errorf("answer larger than %d bytes", maxAnswer)
	}
	return status, data, nil
}
