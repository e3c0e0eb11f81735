package vppagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"go.fd.io/govpp/adapter/socketclient"
	"go.fd.io/govpp/adapter/statsclient"
	"go.fd.io/govpp/api"
	"go.fd.io/govpp/binapi/memclnt"
	"go.fd.io/govpp/binapi/vpe"
	"go.fd.io/govpp/core"

	"github.com/telcni/telcni/binapi"
)

// Default socket paths (deploy/vpp/startup.conf).
const (
	DefaultAPISocket   = "/run/vpp/api.sock"
	DefaultStatsSocket = "/run/vpp/stats.sock"
)

// UnavailableError is returned while VPP is not reachable or not
// compatible. The agent turns it into CNI error code 11.
type UnavailableError struct {
	Socket string
	Err    error
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("VPP not available on %s: %v", e.Socket, e.Err)
}
func (e *UnavailableError) Unwrap() error { return e.Err }

// ConnConfig configures the VPP connection.
type ConnConfig struct {
	APISocket   string
	StatsSocket string // "" disables the stats client
	// Backoff between connection attempts grows from MinBackoff to
	// MaxBackoff; defaults 100 ms and 5 s.
	MinBackoff, MaxBackoff time.Duration
	// PingInterval is how often a live connection is probed; default 1 s.
	PingInterval time.Duration
	// OnConnect runs after every (re)connect, before the connection is
	// reported ready. VPP may have restarted and lost all state, so the
	// agent reconciles here; its error is logged, not fatal.
	OnConnect func(ctx context.Context, c api.Connection) error
	Logger    *slog.Logger
}

// Conn keeps one connection to VPP's API (and stats) sockets alive. Run
// owns the reconnect loop; everything else reads the current state.
type Conn struct {
	cfg ConnConfig
	log *slog.Logger

	mu      sync.Mutex
	api     api.Connection
	stats   *core.StatsConnection
	err     error // why not ready; nil when ready
	version string
	missing []string // optional API groups VPP lacks
	changed chan struct{}
}

// NewConn returns an unconnected Conn; call Run to connect.
func NewConn(cfg ConnConfig) *Conn {
	if cfg.APISocket == "" {
		cfg.APISocket = DefaultAPISocket
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 5 * time.Second
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = time.Second
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.Default()
	}
	return &Conn{cfg: cfg, log: lg.With("component", "vpp", "socket", cfg.APISocket),
		err: errors.New("not connected yet"), changed: make(chan struct{})}
}

// Socket is the API socket path.
func (c *Conn) Socket() string { return c.cfg.APISocket }

// Ready is nil when VPP is connected and compatible, else an
// *UnavailableError naming the socket.
func (c *Conn) Ready() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return &UnavailableError{Socket: c.cfg.APISocket, Err: c.err}
	}
	return nil
}

// Version is the running VPP's version string, "" when not connected.
func (c *Conn) Version() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.version
}

// API returns the live API connection or an *UnavailableError.
func (c *Conn) API() (api.Connection, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil || c.api == nil {
		return nil, &UnavailableError{Socket: c.cfg.APISocket, Err: c.err}
	}
	return c.api, nil
}

// Stats returns the live stats connection, or nil. A stats socket that
// was missing when the API connected is tried again here, so counters
// appear without waiting for an API reconnect.
func (c *Conn) Stats() *core.StatsConnection {
	c.mu.Lock()
	cur, ready := c.stats, c.err == nil
	c.mu.Unlock()
	if !ready || cur != nil {
		return cur
	}
	ns := c.dialStats()
	if ns == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil || c.stats != nil { // lost the race with a state change
		ns.Disconnect()
		return c.stats
	}
	c.stats = ns
	return ns
}

// dialStats connects to the stats socket if it exists (govpp would
// otherwise wait seconds for it to appear).
func (c *Conn) dialStats() *core.StatsConnection {
	if c.cfg.StatsSocket == "" {
		return nil
	}
	if _, err := os.Stat(c.cfg.StatsSocket); err != nil {
		return nil
	}
	s, err := core.ConnectStats(statsclient.NewStatsClient(c.cfg.StatsSocket))
	if err != nil {
		c.log.Warn("VPP stats socket unavailable; counters disabled for now", "stats", c.cfg.StatsSocket, "err", err)
		return nil
	}
	return s
}

// MissingPlugins lists the optional API groups (uplink drivers) the
// connected VPP lacks.
func (c *Conn) MissingPlugins() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.missing...)
}

// Changed returns a channel closed at the next readiness change (tests,
// status reporting).
func (c *Conn) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

func (c *Conn) setState(a api.Connection, s *core.StatsConnection, version string, missing []string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.api, c.stats, c.version, c.missing, c.err = a, s, version, missing, err
	close(c.changed)
	c.changed = make(chan struct{})
}

// Run connects, watches and reconnects until ctx is done. It returns only
// then, after closing the connection.
func (c *Conn) Run(ctx context.Context) {
	backoff := c.cfg.MinBackoff
	for {
		conn, err := c.connect(ctx)
		if err != nil {
			c.mu.Lock()
			first := c.err == nil || c.err.Error() != err.Error()
			c.mu.Unlock()
			if first {
				c.log.Warn("VPP connection failed; retrying with backoff", "err", err)
			}
			c.setState(nil, nil, "", nil, err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, c.cfg.MaxBackoff)
			continue
		}
		backoff = c.cfg.MinBackoff
		err = c.watch(ctx, conn)
		c.mu.Lock()
		stats := c.stats // connected here or later by Stats()
		c.mu.Unlock()
		c.setState(nil, nil, "", nil, fmt.Errorf("connection lost: %w", err))
		if stats != nil {
			stats.Disconnect()
		}
		conn.Disconnect()
		if ctx.Err() != nil {
			return
		}
		c.log.Warn("VPP connection lost; reconnecting", "err", err)
	}
}

// connect makes one attempt: API socket, CRC check, OnConnect, stats.
func (c *Conn) connect(ctx context.Context) (*core.Connection, error) {
	ad := socketclient.NewVppClient(c.cfg.APISocket)
	ad.SetClientName("telcni-agent")
	ad.SetConnectTimeout(2 * time.Second)
	conn, err := core.Connect(ad)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	fail := func(err error) (*core.Connection, error) {
		conn.Disconnect()
		return nil, err
	}
	ch, err := conn.NewAPIChannel()
	if err != nil {
		return fail(fmt.Errorf("open API channel: %w", err))
	}
	rep, err := binapi.Check(ch)
	ch.Close()
	if err != nil {
		return fail(err)
	}
	version, err := showVersion(ctx, conn)
	if err != nil {
		return fail(err)
	}
	// The reconcile below must know what this VPP lacks (it skips the APIs
	// of missing plugins), before readiness is published by setState.
	c.mu.Lock()
	c.missing = rep.Missing
	c.mu.Unlock()
	if c.cfg.OnConnect != nil {
		// One record VPP cannot rebuild (its network needs a plugin this
		// VPP lacks) must not keep every other network down: report and
		// serve. A lost connection shows up in watch right after.
		if err := c.cfg.OnConnect(ctx, conn); err != nil {
			c.log.Warn("reconcile after connect incomplete", "err", err)
		}
	}
	// Counters are not worth refusing pods for: without stats, go on.
	stats := c.dialStats()
	c.log.Info("connected to VPP", "version", version, "missingPlugins", rep.Missing)
	c.setState(conn, stats, version, rep.Missing, nil)
	return conn, nil
}

// watch pings VPP until it stops answering or ctx is done.
func (c *Conn) watch(ctx context.Context, conn *core.Connection) error {
	t := time.NewTicker(c.cfg.PingInterval)
	defer t.Stop()
	fails := 0
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		// A loaded VPP (or machine) answers late; a reply after the probe
		// gave up is only noise, so wait at least a second.
		pctx, cancel := context.WithTimeout(ctx, max(c.cfg.PingInterval, time.Second))
		err := conn.Invoke(pctx, &memclnt.ControlPing{}, &memclnt.ControlPingReply{})
		cancel()
		if err == nil {
			fails = 0
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// A dead socket fails at once; a busy VPP gets three chances.
		fails++
		if fails >= 3 || errors.Is(err, core.ErrNotConnected) {
			return fmt.Errorf("control ping: %w", err)
		}
	}
}

func showVersion(ctx context.Context, conn api.Connection) (string, error) {
	r, err := vpe.NewServiceClient(conn).ShowVersion(ctx, &vpe.ShowVersion{})
	if err != nil {
		return "", fmt.Errorf("show version: %w", err)
	}
	return r.Version, nil
}
