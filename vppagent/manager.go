package vppagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"go.fd.io/govpp/api"
	"go.fd.io/govpp/binapi/interface_types"
)

// DefaultRunDir holds per-pod socket files (memif file sockets, vhost-user).
const DefaultRunDir = "/run/telcni"

// Config configures a Manager.
type Config struct {
	Conn   ConnConfig
	Store  Store
	RunDir string
	Logger *slog.Logger
}

// Manager builds and removes pod interfaces in VPP and keeps VPP in line
// with its records across VPP and agent restarts. All VPP changes are
// serialised by one mutex: VPP applies API calls one at a time anyway, and
// reconcile must not interleave with an ADD.
type Manager struct {
	conn   *Conn
	store  Store
	runDir string
	log    *slog.Logger
	mu     sync.Mutex
}

// NewManager returns a Manager; call Run to connect.
func NewManager(cfg Config) (*Manager, error) {
	if cfg.Store == nil {
		return nil, errors.New("vppagent: no record store")
	}
	if cfg.RunDir == "" {
		cfg.RunDir = DefaultRunDir
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.Default()
	}
	m := &Manager{store: cfg.Store, runDir: cfg.RunDir, log: lg.With("component", "vppagent")}
	cc := cfg.Conn
	cc.Logger = lg
	cc.OnConnect = func(ctx context.Context, c api.Connection) error {
		return m.reconcile(ctx, &vpp{conn: c})
	}
	m.conn = NewConn(cc)
	return m, nil
}

// Conn is the VPP connection (readiness, version, stats).
func (m *Manager) Conn() *Conn { return m.conn }

// Run keeps the VPP connection until ctx is done; every (re)connect
// reconciles VPP with the records.
func (m *Manager) Run(ctx context.Context) { m.conn.Run(ctx) }

// Ready is nil when VPP networks can be served (CNI STATUS, readiness).
func (m *Manager) Ready() error { return m.conn.Ready() }

// Add builds the pod interface described by spec and records it. On
// failure nothing is left behind in VPP. While VPP is unreachable it
// returns an *UnavailableError (CNI code 11) naming the socket.
func (m *Manager) Add(ctx context.Context, spec PodInterface) (*Record, error) {
	if err := spec.Network.Validate(); err != nil {
		return nil, err
	}
	if spec.ContainerID == "" || spec.IfName == "" {
		return nil, errors.New("vppagent: container id and interface name are required")
	}
	if spec.Network.Kind == KindMemif && spec.Network.Memif.Socket != SocketFile && spec.Netns == "" {
		return nil, errors.New("vppagent: an abstract memif socket needs the pod's netns path")
	}
	c, err := m.conn.API()
	if err != nil {
		return nil, err
	}
	if err := m.needs(&spec.Network); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	v := &vpp{conn: c}
	st, err := m.observe(ctx, v)
	if err != nil {
		return nil, err
	}
	others, err := m.store.List()
	if err != nil {
		return nil, err
	}
	for _, o := range others {
		if o.Spec.Key() != spec.Key() && o.Spec.Tag() == spec.Tag() {
			return nil, fmt.Errorf("vppagent: tag %q already used by %s", spec.Tag(), o.Spec.Key())
		}
	}
	if err := m.ensureNetwork(ctx, v, st, &spec.Network); err != nil {
		return nil, err
	}
	rec, err := m.ensurePod(ctx, v, st, spec)
	if err != nil {
		m.gcNetworkIfUnused(ctx, v, &spec.Network, others)
		return nil, err
	}
	if err := m.store.Put(*rec); err != nil {
		_ = m.deletePod(ctx, v, *rec)
		m.gcNetworkIfUnused(ctx, v, &spec.Network, others)
		return nil, err
	}
	m.log.Info("pod interface added", "tag", spec.Tag(), "swIfIndex", rec.SwIfIndex, "network", spec.Network.Name)
	return rec, nil
}

// MissingPluginError refuses a network that needs an API the connected
// VPP lacks (its plugin is not loaded).
type MissingPluginError struct {
	Network, Group, Socket string
}

func (e *MissingPluginError) Error() string {
	return fmt.Sprintf("network %q needs VPP's %s API, which VPP on %s lacks: load its plugin (startup.conf plugins section)", e.Network, e.Group, e.Socket)
}

// needs checks that VPP has the optional APIs the network uses.
func (m *Manager) needs(n *Network) error {
	want := []string{}
	if n.Kind == KindVhostUser {
		want = append(want, "vhost_user")
	}
	if n.Uplink != nil && n.Uplink.Kind != UplinkDPDK {
		want = append(want, n.Uplink.Kind)
	}
	missing := m.conn.MissingPlugins()
	for _, g := range want {
		for _, x := range missing {
			if g == x {
				return &MissingPluginError{Network: n.Name, Group: g, Socket: m.conn.Socket()}
			}
		}
	}
	return nil
}

// Del removes the recorded interface and, with the network's last pod, the
// network's shared objects. It succeeds while VPP is down: the record goes
// and reconcile removes the leftovers (VPP restarted empty, or they are
// orphans) at the next connect.
func (m *Manager) Del(ctx context.Context, key string) error {
	return m.del(ctx, key, nil)
}

// DelSpec is Del for a caller that keeps its own record of spec (the
// agent): when this Manager has no record (its store was lost), the
// interface is still found by its tag and removed.
func (m *Manager) DelSpec(ctx context.Context, spec PodInterface) error {
	return m.del(ctx, spec.Key(), &spec)
}

func (m *Manager) del(ctx context.Context, key string, fallback *PodInterface) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	recs, err := m.store.List()
	if err != nil {
		return err
	}
	var rec *Record
	var rest []Record
	for i := range recs {
		if recs[i].Spec.Key() == key {
			rec = &recs[i]
		} else {
			rest = append(rest, recs[i])
		}
	}
	if rec == nil {
		if fallback == nil {
			return nil // DEL is idempotent
		}
		r := Record{Spec: *fallback}
		if fallback.Network.Kind == KindMemif {
			r.Socket, _ = fallback.memifSocket(m.runDir)
		}
		rec = &r
	}
	if c, err := m.conn.API(); err == nil {
		v := &vpp{conn: c}
		if err := m.deletePod(ctx, v, *rec); err != nil {
			return err
		}
		m.gcNetworkIfUnused(ctx, v, &rec.Spec.Network, rest)
	} else {
		m.log.Warn("VPP unavailable at DEL; record removed, VPP objects go at reconcile", "tag", rec.Spec.Tag(), "err", err)
	}
	return m.store.Delete(key)
}

// CLI runs a VPP debug CLI command (telcnictl's passthrough).
func (m *Manager) CLI(ctx context.Context, cmd string) (string, error) {
	c, err := m.conn.API()
	if err != nil {
		return "", err
	}
	return (&vpp{conn: c}).cli(ctx, cmd)
}

// Retain makes the records exactly specs (the agent's ready
// attachments): records of interfaces the agent no longer has are dropped,
// interfaces the agent has but this store lost are recorded again. With VPP
// connected it then reconciles, which removes and re-creates accordingly;
// otherwise the next connect does.
func (m *Manager) Retain(ctx context.Context, specs []PodInterface) error {
	m.mu.Lock()
	recs, err := m.store.List()
	if err != nil {
		m.mu.Unlock()
		return err
	}
	want := map[string]PodInterface{}
	for _, s := range specs {
		want[s.Key()] = s
	}
	have := map[string]bool{}
	var errs []error
	for _, r := range recs {
		have[r.Spec.Key()] = true
		if _, ok := want[r.Spec.Key()]; !ok {
			m.log.Info("forgetting a VPP interface the agent has no record of", "tag", r.Spec.Tag())
			errs = append(errs, m.store.Delete(r.Spec.Key()))
		}
	}
	for k, s := range want {
		if have[k] {
			continue
		}
		r, err := m.describe(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		m.log.Info("re-recording a VPP interface from the agent's records", "tag", s.Tag())
		errs = append(errs, m.store.Put(r))
	}
	m.mu.Unlock()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if c, err := m.conn.API(); err == nil {
		// VPP trouble must not stop the agent from starting: the next
		// connect reconciles again.
		if err := m.reconcile(ctx, &vpp{conn: c}); err != nil {
			m.log.Warn("reconcile after retain failed; retried at the next connect", "err", err)
		}
	}
	return nil
}

// Check reports the first difference between spec and VPP: the interface
// is missing or down.
func (m *Manager) Check(ctx context.Context, spec PodInterface) error {
	c, err := m.conn.API()
	if err != nil {
		return err
	}
	ifs, err := (&vpp{conn: c}).dumpInterfaces(ctx)
	if err != nil {
		return err
	}
	for _, i := range ifs {
		if i.Tag == spec.Tag() {
			if i.Flags&interface_types.IF_STATUS_API_FLAG_ADMIN_UP == 0 {
				return fmt.Errorf("VPP interface %s (%s) is admin down", i.Name, spec.Tag())
			}
			return nil
		}
	}
	return fmt.Errorf("VPP has no interface tagged %s", spec.Tag())
}

// Records lists what the Manager owns.
func (m *Manager) Records() ([]Record, error) { return m.store.List() }

// Reconcile runs reconcile now (CNI GC, tests).
func (m *Manager) Reconcile(ctx context.Context) error {
	c, err := m.conn.API()
	if err != nil {
		return err
	}
	return m.reconcile(ctx, &vpp{conn: c})
}

// state is one dump of VPP's interfaces and bridge domains.
type state struct {
	ifs   []swIf
	byTag map[string]swIf
	bds   map[uint32]string
}

func (m *Manager) observe(ctx context.Context, v *vpp) (*state, error) {
	ifs, err := v.dumpInterfaces(ctx)
	if err != nil {
		return nil, err
	}
	bds, err := v.bridgeDomains(ctx)
	if err != nil {
		return nil, err
	}
	st := &state{ifs: ifs, byTag: map[string]swIf{}, bds: bds}
	for _, i := range ifs {
		if i.Tag != "" {
			st.byTag[i.Tag] = i
		}
	}
	return st, nil
}

func (st *state) byName(name string) (swIf, bool) {
	for _, i := range st.ifs {
		if i.Name == name {
			return i, true
		}
	}
	return swIf{}, false
}

func (st *state) add(i swIf) {
	st.ifs = append(st.ifs, i)
	if i.Tag != "" {
		st.byTag[i.Tag] = i
	}
}

func uplinkTag(u *Uplink) string {
	id := u.Name
	if u.Kind == UplinkAVF {
		id = u.PCI
	}
	t := tagPrefix + "uplink:" + u.Kind + ":" + id
	if len(t) > maxTag {
		t = t[:maxTag]
	}
	return t
}

// ensureUplink finds or creates the network's uplink interface.
func (m *Manager) ensureUplink(ctx context.Context, v *vpp, st *state, u *Uplink) (uint32, error) {
	tag := uplinkTag(u)
	if i, ok := st.byTag[tag]; ok {
		return i.Index, nil
	}
	var idx uint32
	var err error
	switch u.Kind {
	case UplinkDPDK:
		i, ok := st.byName(u.Name)
		if !ok {
			return 0, fmt.Errorf("uplink: VPP has no interface %q (a dpdk uplink must be configured in VPP's startup.conf)", u.Name)
		}
		// Not ours: VPP owns it from startup.conf, so it is never tagged
		// or deleted; it is only brought up.
		return i.Index, v.setUp(ctx, i.Index, true)
	case UplinkAFPacket:
		if i, ok := st.byName("host-" + u.Name); ok {
			return i.Index, v.setUp(ctx, i.Index, true)
		}
		idx, err = v.afPacketCreate(ctx, u.Name)
	case UplinkAFXDP:
		idx, err = v.afXDPCreate(ctx, u.Name, "xdp-"+u.Name)
	case UplinkAVF:
		idx, err = v.avfCreate(ctx, u.PCI)
	default:
		return 0, fmt.Errorf("uplink kind %q unknown", u.Kind)
	}
	if err != nil {
		return 0, err
	}
	if err := v.setTag(ctx, idx, tag); err != nil {
		return 0, err
	}
	st.add(swIf{Index: idx, Tag: tag})
	return idx, v.setUp(ctx, idx, true)
}

// ensureNetwork creates what a network's pods share: for L2 the bridge
// domain and its uplink (or dot1q sub-interface), for L3 the FIB table and
// a loopback that holds the gateway addresses.
func (m *Manager) ensureNetwork(ctx context.Context, v *vpp, st *state, n *Network) error {
	tag := netTag(n.Name)
	if n.L3 {
		if err := v.ensureTable(ctx, n.Table); err != nil {
			return err
		}
		if _, ok := st.byTag[tag]; ok {
			return nil
		}
		idx, err := v.createLoopback(ctx)
		if err != nil {
			return err
		}
		st.add(swIf{Index: idx, Tag: tag, Name: "loop"})
		if err := v.setTag(ctx, idx, tag); err != nil {
			return err
		}
		if err := v.setTable(ctx, idx, n.Table); err != nil {
			return err
		}
		return v.setUp(ctx, idx, true)
	}
	bd := n.BridgeDomain()
	if t, ok := st.bds[bd]; ok && t != tag {
		return fmt.Errorf("network %q: bridge domain %d is already used by %q", n.Name, bd, t)
	} else if !ok {
		if err := v.bridgeDomainAdd(ctx, bd, tag); err != nil {
			return err
		}
		st.bds[bd] = tag
	}
	if n.Uplink == nil {
		return nil
	}
	up, err := m.ensureUplink(ctx, v, st, n.Uplink)
	if err != nil {
		return fmt.Errorf("network %q: %w", n.Name, err)
	}
	member := up
	if n.VLAN > 0 {
		if i, ok := st.byTag[tag]; ok {
			member = i.Index
		} else {
			sub, err := v.createVLAN(ctx, up, n.VLAN)
			if err != nil {
				return fmt.Errorf("network %q: %w", n.Name, err)
			}
			st.add(swIf{Index: sub, Tag: tag, Sup: up})
			if err := v.setTag(ctx, sub, tag); err != nil {
				return err
			}
			if err := v.popTag(ctx, sub); err != nil {
				return err
			}
			member = sub
		}
	}
	if err := v.setBridge(ctx, member, bd, true); err != nil {
		return err
	}
	return v.setUp(ctx, member, true)
}

// ensurePod finds the pod's interface by tag or builds it. A half-built
// interface is removed before the error is returned.
func (m *Manager) ensurePod(ctx context.Context, v *vpp, st *state, spec PodInterface) (*Record, error) {
	r, err := m.describe(spec)
	if err != nil {
		return nil, err
	}
	rec := &r
	tag := spec.Tag()
	if i, ok := st.byTag[tag]; ok {
		rec.SwIfIndex = i.Index
		return rec, nil
	}
	idx, err := m.createPodIf(ctx, v, rec)
	if err != nil {
		return nil, err
	}
	rec.SwIfIndex = idx
	if err := m.configurePod(ctx, v, st, rec); err != nil {
		_ = m.deletePod(ctx, v, *rec)
		return nil, err
	}
	st.add(swIf{Index: idx, Tag: tag})
	return rec, nil
}

// describe is the record of spec before VPP is asked anything: its socket
// and the device-info the pod application gets.
func (m *Manager) describe(spec PodInterface) (Record, error) {
	rec := Record{Spec: spec}
	n := &spec.Network
	switch n.Kind {
	case KindMemif:
		sock, podPath := spec.memifSocket(m.runDir)
		rec.Socket = sock
		mode := n.Memif.Mode
		if mode == "" {
			mode = MemifModeEthernet
		}
		rec.DeviceInfo = DeviceInfo{Type: "memif", Memif: &MemifInfo{Role: "client", Mode: mode, Path: podPath, ID: 0}}
	case KindVhostUser:
		path, err := spec.vhostSocket(m.runDir)
		if err != nil {
			return rec, err
		}
		rec.Socket = path
		podMode := "client"
		if n.Vhost.Mode == "client" {
			podMode = "server"
		}
		rec.DeviceInfo = DeviceInfo{Type: "vhost-user", Vhost: &VhostUserInfo{Mode: podMode, Path: path}}
	}
	return rec, nil
}

func (m *Manager) createPodIf(ctx context.Context, v *vpp, rec *Record) (uint32, error) {
	n := &rec.Spec.Network
	tag := rec.Spec.Tag()
	switch n.Kind {
	case KindMemif:
		// A socket left registered by a half-done earlier attempt is
		// reused: VPP refuses the same filename twice.
		socks, err := v.memifSockets(ctx)
		if err != nil {
			return 0, err
		}
		sid := invalidIndex
		for id, f := range socks {
			if id != 0 && socketMatches(f, rec.Socket) {
				sid = id
			}
		}
		if sid == invalidIndex {
			if n.Memif.Socket == SocketFile {
				if err := os.MkdirAll(filepath.Dir(rec.Socket), 0o755); err != nil {
					return 0, fmt.Errorf("create memif socket dir: %w", err)
				}
				_ = os.Remove(rec.Socket) // left by a VPP that died; blocks bind
			}
			if sid, err = v.memifSocketAdd(ctx, rec.Socket); err != nil {
				return 0, err
			}
		}
		idx, err := v.memifCreate(ctx, sid, 0, n.Memif)
		if err != nil {
			_ = v.memifSocketDel(ctx, sid)
			return 0, err
		}
		if err := v.setTag(ctx, idx, tag); err != nil {
			_ = v.memifDelete(ctx, idx)
			_ = v.memifSocketDel(ctx, sid)
			return 0, err
		}
		return idx, nil
	case KindVhostUser:
		if err := os.MkdirAll(filepath.Dir(rec.Socket), 0o755); err != nil {
			return 0, fmt.Errorf("create vhost-user socket dir: %w", err)
		}
		server := n.Vhost.Mode != "client"
		if server {
			_ = os.Remove(rec.Socket) // a stale socket file from a dead VPP blocks bind
		}
		return v.vhostCreate(ctx, rec.Socket, server, tag)
	}
	return 0, fmt.Errorf("vppagent: kind %q", n.Kind)
}

// configurePod joins the interface to its network and brings it up.
func (m *Manager) configurePod(ctx context.Context, v *vpp, st *state, rec *Record) error {
	n := &rec.Spec.Network
	idx := rec.SwIfIndex
	if n.MTU > 0 {
		if err := v.setMTU(ctx, idx, n.MTU); err != nil {
			return err
		}
	}
	if !n.L3 {
		if err := v.setBridge(ctx, idx, n.BridgeDomain(), true); err != nil {
			return err
		}
		return v.setUp(ctx, idx, true)
	}
	loop, ok := st.byTag[netTag(n.Name)]
	if !ok {
		return fmt.Errorf("network %q: L3 loopback missing", n.Name)
	}
	if err := v.setTable(ctx, idx, n.Table); err != nil {
		return err
	}
	gws := rec.Spec.Gateways
	for _, p := range rec.Spec.IPs {
		if len(gws) == 0 || !hasFamily(gws, p.Addr()) {
			return fmt.Errorf("network %q: L3 needs a gateway for %s", n.Name, p)
		}
	}
	for _, gw := range gws {
		if err := v.addAddress(ctx, loop.Index, netip.PrefixFrom(gw, gw.BitLen())); err != nil {
			return err
		}
	}
	if err := v.setUnnumbered(ctx, idx, loop.Index, true); err != nil {
		return err
	}
	if err := v.setUp(ctx, idx, true); err != nil {
		return err
	}
	for _, gw := range gws {
		if err := v.proxyGateway(ctx, n.Table, idx, gw, true); err != nil {
			return err
		}
	}
	for _, p := range rec.Spec.IPs {
		if err := v.route(ctx, n.Table, idx, p.Addr(), true); err != nil {
			return err
		}
	}
	return nil
}

func hasFamily(addrs []netip.Addr, a netip.Addr) bool {
	for _, x := range addrs {
		if x.Is4() == a.Is4() {
			return true
		}
	}
	return false
}

// deletePod removes the pod's interface (found by tag, since indices
// change when VPP restarts) and its socket. Missing objects are fine.
func (m *Manager) deletePod(ctx context.Context, v *vpp, rec Record) error {
	ifs, err := v.dumpInterfaces(ctx)
	if err != nil {
		return err
	}
	tag := rec.Spec.Tag()
	for _, i := range ifs {
		if i.Tag != tag {
			continue
		}
		if rec.Spec.Network.L3 {
			for _, p := range rec.Spec.IPs {
				_ = v.route(ctx, rec.Spec.Network.Table, i.Index, p.Addr(), false)
			}
		}
		if err := m.deleteIf(ctx, v, i); err != nil {
			return err
		}
	}
	if rec.Spec.Network.Kind == KindMemif {
		if err := m.deleteSocket(ctx, v, rec.Socket); err != nil {
			return err
		}
	}
	if rec.Spec.Network.Kind == KindVhostUser && rec.Spec.Network.Vhost.Mode != "client" {
		_ = os.Remove(rec.Socket)
	}
	return nil
}

func (m *Manager) deleteSocket(ctx context.Context, v *vpp, name string) error {
	socks, err := v.memifSockets(ctx)
	if err != nil {
		return err
	}
	for id, f := range socks {
		if id != 0 && socketMatches(f, name) {
			if err := v.memifSocketDel(ctx, id); err != nil {
				return err
			}
		}
	}
	return nil
}

// socketMatches compares a dumped socket filename with ours; the dump
// truncates names to 107 bytes.
func socketMatches(dumped, ours string) bool {
	return dumped == ours || (len(dumped) >= 100 && strings.HasPrefix(ours, dumped))
}

// deleteIf removes one interface by its type.
func (m *Manager) deleteIf(ctx context.Context, v *vpp, i swIf) error {
	switch {
	case strings.HasPrefix(i.Name, "memif"):
		return v.memifDelete(ctx, i.Index)
	case strings.HasPrefix(i.Name, "VirtualEthernet"):
		return v.vhostDelete(ctx, i.Index)
	case i.Sup != i.Index && i.Name != "":
		return v.deleteSubif(ctx, i.Index)
	case strings.HasPrefix(i.Name, "loop"):
		if isOurs(i.Tag) {
			if err := v.dropProxyArpFor(ctx, i.Index); err != nil {
				return err
			}
		}
		return v.deleteLoopback(ctx, i.Index)
	case strings.HasPrefix(i.Name, "host-"):
		return v.afPacketDelete(ctx, strings.TrimPrefix(i.Name, "host-"))
	case strings.HasPrefix(i.Tag, tagPrefix+"uplink:"+UplinkAFXDP+":"):
		return v.afXDPDelete(ctx, i.Index)
	case strings.HasPrefix(i.Tag, tagPrefix+"uplink:"+UplinkAVF+":"):
		return v.avfDelete(ctx, i.Index)
	}
	return fmt.Errorf("vppagent: do not know how to delete interface %d %q (tag %q)", i.Index, i.Name, i.Tag)
}

// gcNetworkIfUnused removes a network's shared objects when no record
// uses the network any more. Failures are logged: reconcile retries.
func (m *Manager) gcNetworkIfUnused(ctx context.Context, v *vpp, n *Network, rest []Record) {
	for _, r := range rest {
		if r.Spec.Network.Name == n.Name {
			return
		}
	}
	if err := m.collect(ctx, v, rest); err != nil {
		m.log.Warn("removing unused network objects failed; reconcile will retry", "network", n.Name, "err", err)
	}
}
