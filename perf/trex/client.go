// Package trex drives a TRex stateless server (v3.x) over its JSON-RPC 2.0
// interface: ZMQ REQ on tcp/4501, one request in flight at a time. It uses
// github.com/go-zeromq/zmq4 (pure Go, no libzmq).
//
//	c, err := trex.Connect(ctx, "127.0.0.1:4501") // ping, get_version, api_sync_v2
//	defer c.Close()
//	err = c.Acquire(ctx, 0, true)
//	err = c.AddStream(ctx, 0, 1, trex.UDPFrame(trex.UDPFrameSpec{Size: 64}), 1)
//	err = c.StartTraffic(ctx, 0, 10_000, time.Second) // mul as pps
//	st, err := c.PortStats(ctx, 1)
//
// A TRex error comes back as *Error carrying TRex's own message.
package trex

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/go-zeromq/zmq4"
)

// API version this client speaks (api_sync_v2 "STL").
const (
	APIName  = "STL"
	APIMajor = 5
	APIMinor = 1
)

// DefaultRPCPort is TRex's JSON-RPC port.
const DefaultRPCPort = 4501

// Error is a JSON-RPC error returned by TRex. Message is TRex's own text
// (error.specific_err when present, which is where TRex puts the reason).
type Error struct {
	Method  string
	Code    int
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("trex %s: %s (code %d)", e.Method, e.Message, e.Code)
}

// ErrBroken is returned after a request timed out or the connection failed:
// a ZMQ REQ socket cannot send again before it has read the reply.
var ErrBroken = errors.New("trex: connection broken by an earlier failure; reconnect")

// Client is a connection to one TRex server. Its methods are safe for
// concurrent use (requests are serialised).
type Client struct {
	addr string
	user string

	mu       sync.Mutex
	sock     zmq4.Socket
	cancel   context.CancelFunc
	broken   error
	nextID   uint64
	apiH     string
	handlers map[int]string
	session  uint32

	// Version is get_version's result.
	Version VersionInfo
	// Timeout bounds one request when the caller's context has no
	// earlier deadline. Default 10s.
	Timeout time.Duration
}

// VersionInfo is part of get_version's answer.
type VersionInfo struct {
	Version   string `json:"version"`
	BuiltBy   string `json:"built_by"`
	BuildDate string `json:"build_date"`
	Mode      string `json:"mode"`
}

// Connect dials TRex's RPC port (addr is host:port or tcp://host:port),
// pings it, reads its version and negotiates the STL API (api_sync_v2),
// retrying until ctx ends while TRex is not answering yet.
func Connect(ctx context.Context, addr string) (*Client, error) {
	c := &Client{
		addr:     strings.TrimPrefix(addr, "tcp://"),
		user:     "telcni",
		handlers: map[int]string{},
		session:  rand.Uint32(),
		Timeout:  10 * time.Second,
	}
	for {
		err := c.dial(ctx)
		if err == nil {
			err = c.Ping(ctx)
		}
		if err == nil {
			break
		}
		c.closeSock()
		var te *Error
		if errors.As(err, &te) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("trex: connect %s: %w (last error: %v)", c.addr, ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	if err := c.call(ctx, "get_version", nil, &c.Version); err != nil {
		c.Close()
		return nil, err
	}
	var sync struct {
		APIH string `json:"api_h"`
	}
	if err := c.call(ctx, "api_sync_v2", map[string]any{"name": APIName, "major": APIMajor, "minor": APIMinor}, &sync); err != nil {
		c.Close()
		return nil, err
	}
	if sync.APIH == "" {
		c.Close()
		return nil, errors.New("trex: api_sync_v2 returned no api_h")
	}
	c.apiH = sync.APIH
	return c, nil
}

func (c *Client) dial(ctx context.Context) error {
	sctx, cancel := context.WithCancel(context.Background())
	sock := zmq4.NewReq(sctx, zmq4.WithDialerMaxRetries(0), zmq4.WithDialerTimeout(2*time.Second))
	if err := sock.Dial("tcp://" + c.addr); err != nil {
		cancel()
		sock.Close()
		return err
	}
	c.mu.Lock()
	c.sock, c.cancel, c.broken = sock, cancel, nil
	c.mu.Unlock()
	return nil
}

func (c *Client) closeSock() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sock != nil {
		c.sock.Close()
		c.cancel()
		c.sock = nil
	}
}

// Close closes the connection (it releases nothing: call Release first).
func (c *Client) Close() error {
	c.closeSock()
	return nil
}

// APIHandle is the api_h of the session.
func (c *Client) APIHandle() string { return c.apiH }

type rpcReq struct {
	JSONRPC string         `json:"jsonrpc"`
	ID      uint64         `json:"id"`
	Method  string         `json:"method"`
	Params  map[string]any `json:"params"`
}

type rpcResp struct {
	ID     json.RawMessage `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code     int    `json:"code"`
		Message  string `json:"message"`
		Specific string `json:"specific_err"`
	} `json:"error"`
}

// Call sends one JSON-RPC request (api_h added when negotiated) and decodes
// the result into out (when not nil).
func (c *Client) Call(ctx context.Context, method string, params map[string]any, out any) error {
	return c.call(ctx, method, params, out)
}

func (c *Client) call(ctx context.Context, method string, params map[string]any, out any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sock == nil {
		return errors.New("trex: not connected")
	}
	if c.broken != nil {
		return fmt.Errorf("%w: %v", ErrBroken, c.broken)
	}
	p := map[string]any{}
	for k, v := range params {
		p[k] = v
	}
	if c.apiH != "" {
		p["api_h"] = c.apiH
	}
	c.nextID++
	req, err := json.Marshal(rpcReq{JSONRPC: "2.0", ID: c.nextID, Method: method, Params: p})
	if err != nil {
		return err
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	sock := c.sock
	type reply struct {
		msg zmq4.Msg
		err error
	}
	ch := make(chan reply, 1)
	go func() {
		if err := sock.Send(zmq4.NewMsg(req)); err != nil {
			ch <- reply{err: err}
			return
		}
		m, err := sock.Recv()
		ch <- reply{m, err}
	}()
	var r reply
	select {
	case r = <-ch:
	case <-ctx.Done():
		c.broken = fmt.Errorf("%s: %w", method, ctx.Err())
		return fmt.Errorf("trex %s: no answer: %w", method, ctx.Err())
	}
	if r.err != nil {
		c.broken = r.err
		return fmt.Errorf("trex %s: %w", method, r.err)
	}
	var body []byte
	for _, f := range r.msg.Frames {
		body = append(body, f...)
	}
	var resp rpcResp
	if err := json.Unmarshal(body, &resp); err != nil {
		return fmt.Errorf("trex %s: bad reply %q: %w", method, truncate(body, 200), err)
	}
	if resp.Error != nil {
		msg := resp.Error.Specific
		if msg == "" {
			msg = resp.Error.Message
		} else if resp.Error.Message != "" {
			msg = resp.Error.Message + ": " + msg
		}
		return &Error{Method: method, Code: resp.Error.Code, Message: msg}
	}
	if out != nil {
		if err := json.Unmarshal(resp.Result, out); err != nil {
			return fmt.Errorf("trex %s: decoding result %q: %w", method, truncate(resp.Result, 200), err)
		}
	}
	return nil
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

// Ping checks that the server answers.
func (c *Client) Ping(ctx context.Context) error {
	return c.call(ctx, "ping", nil, nil)
}

// GetVersion asks the server for its version.
func (c *Client) GetVersion(ctx context.Context) (VersionInfo, error) {
	var v VersionInfo
	err := c.call(ctx, "get_version", nil, &v)
	return v, err
}

func (c *Client) owned(port int, extra map[string]any) (map[string]any, error) {
	c.mu.Lock()
	h, ok := c.handlers[port]
	c.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("trex: port %d is not acquired by this client", port)
	}
	p := map[string]any{"port_id": port, "handler": h}
	for k, v := range extra {
		p[k] = v
	}
	return p, nil
}

// Acquire takes ownership of a port (force: even from another owner).
func (c *Client) Acquire(ctx context.Context, port int, force bool) error {
	var h string
	if err := c.call(ctx, "acquire", map[string]any{"port_id": port, "user": c.user, "session_id": c.session, "force": force}, &h); err != nil {
		return err
	}
	c.mu.Lock()
	c.handlers[port] = h
	c.mu.Unlock()
	return nil
}

// Release gives up a port acquired by this client.
func (c *Client) Release(ctx context.Context, port int) error {
	p, err := c.owned(port, nil)
	if err != nil {
		return err
	}
	if err := c.call(ctx, "release", p, nil); err != nil {
		return err
	}
	c.mu.Lock()
	delete(c.handlers, port)
	c.mu.Unlock()
	return nil
}

func (c *Client) ownedCall(ctx context.Context, method string, port int, extra map[string]any, out any) error {
	p, err := c.owned(port, extra)
	if err != nil {
		return err
	}
	return c.call(ctx, method, p, out)
}

// Reset brings an acquired port back to a clean state: traffic stopped,
// streams removed, service mode off. (remove_rx_filters is not part of it:
// TRex refuses it on an IDLE port.)
func (c *Client) Reset(ctx context.Context, port int) error {
	for _, m := range []struct {
		method string
		extra  map[string]any
	}{
		{"stop_traffic", nil},
		{"remove_all_streams", nil},
		{"service", map[string]any{"enabled": false}},
	} {
		if err := c.ownedCall(ctx, m.method, port, m.extra, nil); err != nil {
			return err
		}
	}
	return nil
}

// SetL2 puts a port in L2 mode: frames go to dstMAC (e.g. "02:00:00:00:00:02").
func (c *Client) SetL2(ctx context.Context, port int, dstMAC string) error {
	return c.ownedCall(ctx, "set_l2", port, map[string]any{"dst_mac": dstMAC}, nil)
}

// SetService turns a port's service mode on or off.
func (c *Client) SetService(ctx context.Context, port int, on bool) error {
	return c.ownedCall(ctx, "service", port, map[string]any{"enabled": on}, nil)
}

// AddStream adds a continuous stream sending frame at pps packets per
// second (before the start_traffic multiplier). The frame is sent as is,
// its MACs included (flags: source and destination MAC from the packet,
// not from the port's configuration); TRex pads frames shorter than 60
// bytes and appends the 4-byte FCS on the wire accounting only.
func (c *Client) AddStream(ctx context.Context, port int, streamID uint32, frame []byte, pps float64) error {
	return c.addStream(ctx, port, streamID, frame, pps, map[string]any{"enabled": false})
}

// AddLatencyStream adds a stream like AddStream whose frames carry TRex's
// latency signature, counted under packet group pgid on the receiving
// port (PGIDStats). TRex writes the signature over the frame's last 16
// bytes of payload.
func (c *Client) AddLatencyStream(ctx context.Context, port int, streamID, pgid uint32, frame []byte, pps float64) error {
	return c.addStream(ctx, port, streamID, frame, pps, map[string]any{"enabled": true, "rule_type": "latency", "stream_id": pgid})
}

func (c *Client) addStream(ctx context.Context, port int, streamID uint32, frame []byte, pps float64, flowStats map[string]any) error {
	stream := map[string]any{
		"enabled":        true,
		"self_start":     true,
		"isg":            0.0,
		"flags":          3, // MACs from the packet (mac_src_override_by_pkt, dst mode PKT)
		"action_count":   0,
		"next_stream_id": -1,
		"mode": map[string]any{
			"type": "continuous",
			"rate": map[string]any{"type": "pps", "value": pps},
		},
		"packet": map[string]any{
			"binary": base64.StdEncoding.EncodeToString(frame),
			"meta":   "",
		},
		"vm":         map[string]any{"instructions": []any{}, "split_by_var": ""},
		"flow_stats": flowStats,
	}
	return c.ownedCall(ctx, "add_stream", port, map[string]any{"stream_id": streamID, "stream": stream}, nil)
}

// RemoveAllStreams removes every stream of a port.
func (c *Client) RemoveAllStreams(ctx context.Context, port int) error {
	return c.ownedCall(ctx, "remove_all_streams", port, nil, nil)
}

// StartTraffic starts a port's streams with the total rate pps (the
// multiplier, type "pps"), for d (0: until StopTraffic).
func (c *Client) StartTraffic(ctx context.Context, port int, pps float64, d time.Duration) error {
	dur := -1.0
	if d > 0 {
		dur = d.Seconds()
	}
	return c.ownedCall(ctx, "start_traffic", port, map[string]any{
		"mul":      map[string]any{"type": "pps", "op": "abs", "value": pps},
		"duration": dur,
		"force":    true,
	}, nil)
}

// StartTrafficAsIs starts a port's streams at their own rates (the
// multiplier 1, type "raw"), for d.
func (c *Client) StartTrafficAsIs(ctx context.Context, port int, d time.Duration) error {
	return c.ownedCall(ctx, "start_traffic", port, map[string]any{
		"mul":      map[string]any{"type": "raw", "op": "abs", "value": 1.0},
		"duration": d.Seconds(),
		"force":    true,
	}, nil)
}

// StopTraffic stops a port's traffic.
func (c *Client) StopTraffic(ctx context.Context, port int) error {
	return c.ownedCall(ctx, "stop_traffic", port, nil, nil)
}

// PortStats are a port's counters since TRex started (subtract a snapshot
// to measure an interval).
type PortStats struct {
	OPackets uint64  `json:"opackets"`
	IPackets uint64  `json:"ipackets"`
	OBytes   uint64  `json:"obytes"`
	IBytes   uint64  `json:"ibytes"`
	OErrors  uint64  `json:"oerrors"`
	IErrors  uint64  `json:"ierrors"`
	TxPPS    float64 `json:"tx_pps"`
	RxPPS    float64 `json:"rx_pps"`
	TxBPS    float64 `json:"tx_bps"`
	RxBPS    float64 `json:"rx_bps"`
}

// Sub returns s - o for the packet and byte counters.
func (s PortStats) Sub(o PortStats) PortStats {
	s.OPackets -= o.OPackets
	s.IPackets -= o.IPackets
	s.OBytes -= o.OBytes
	s.IBytes -= o.IBytes
	s.OErrors -= o.OErrors
	s.IErrors -= o.IErrors
	return s
}

// PortStats reads a port's counters (needs no ownership).
func (c *Client) PortStats(ctx context.Context, port int) (PortStats, error) {
	var s PortStats
	err := c.call(ctx, "get_port_stats", map[string]any{"port_id": port}, &s)
	return s, err
}

// PortStatus is part of get_port_status's answer.
type PortStatus struct {
	Owner string `json:"owner"`
	State string `json:"state"`
}

// PortStatus reads a port's owner and state (IDLE, STREAMS, TX, PAUSE, ...).
func (c *Client) PortStatus(ctx context.Context, port int) (PortStatus, error) {
	var s PortStatus
	err := c.call(ctx, "get_port_status", map[string]any{"port_id": port}, &s)
	return s, err
}

// GlobalStats is part of get_global_stats's answer.
type GlobalStats struct {
	CPUUtil    float64 `json:"m_cpu_util"`
	TxBPS      float64 `json:"m_tx_bps"`
	RxBPS      float64 `json:"m_rx_bps"`
	TxPPS      float64 `json:"m_tx_pps"`
	RxPPS      float64 `json:"m_rx_pps"`
	RxDropBPS  float64 `json:"m_rx_drop_bps"`
	TotalTxPkt uint64  `json:"m_total_tx_pkts"`
	TotalRxPkt uint64  `json:"m_total_rx_pkts"`
	TotalTxB   uint64  `json:"m_total_tx_bytes"`
	TotalRxB   uint64  `json:"m_total_rx_bytes"`
	// Raw keeps every field TRex sent.
	Raw map[string]any `json:"-"`
}

// GlobalStats reads the server's global counters.
func (c *Client) GlobalStats(ctx context.Context) (GlobalStats, error) {
	var raw json.RawMessage
	if err := c.call(ctx, "get_global_stats", nil, &raw); err != nil {
		return GlobalStats{}, err
	}
	var g GlobalStats
	if err := json.Unmarshal(raw, &g); err != nil {
		return g, err
	}
	_ = json.Unmarshal(raw, &g.Raw)
	return g, nil
}
