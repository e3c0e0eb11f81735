package vppagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"go.fd.io/govpp/api"
	"go.fd.io/govpp/binapi/interface_types"

	"github.com/telcni/telcni/attach"
)

// DefaultRunDir holds per-pod socket files (memif file sockets, vhost-user).
const DefaultRunDir = "/run/telcni"

// Config configures a Manager.
type Config struct {
	Conn   ConnConfig
	RunDir string
	Logger *slog.Logger
	// VFs lends SR-IOV VFs to uplinks that name a PF (avf, dpdk-vf); nil
	// on a node without the VF pool.
	VFs attach.VFLender
}

// Manager builds and removes pod interfaces in VPP and keeps VPP in line
// with the agent's records across VPP and agent restarts. It persists
// nothing itself: the agent hands it its records at start-up (Retain). All
// VPP changes are serialised by one mutex: VPP applies API calls one at a
// time anyway, and reconcile must not interleave with an ADD.
type Manager struct {
	conn   *Conn
	recs   records
	runDir string
	log    *slog.Logger
	mu     sync.Mutex
	// retained is set once Retain has given the Manager the agent's
	// records: before that, every telcni object in VPP would look unowned,
	// so reconcile waits for it.
	retained bool
	// owed: VPP may hold objects nobody owns and a reconcile is owed
	// (payReconcile): a DEL could not reach VPP, a Retain found VPP not
	// yet published, removing a network's objects failed.
	owed     atomic.Bool
	owedKick chan struct{}
	// vfs lends uplink VFs; leases are the ones networks hold, by network
	// name (under mu), returned by collect when no record uses the network.
	vfs    attach.VFLender
	leases map[string]attach.UplinkVF
	// policies: each pod interface's MultiNetworkPolicy rules (netpolicy.go).
	policies *podPolicies
}

// NewManager returns a Manager; call Run to connect.
func NewManager(cfg Config) (*Manager, error) {
	if cfg.RunDir == "" {
		cfg.RunDir = DefaultRunDir
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.Default()
	}
	m := &Manager{owedKick: make(chan struct{}, 1), runDir: cfg.RunDir, log: lg.With("component", "vppagent"),
		vfs: cfg.VFs, leases: map[string]attach.UplinkVF{}, policies: newPodPolicies()}
	cc := cfg.Conn
	cc.Logger = lg
	cc.OnConnect = func(ctx context.Context, c api.Connection) error {
		err := m.reconcile(ctx, &vpp{conn: c})
		if err != nil {
			m.oweReconcile() // paid once this connection is published
		}
		return err
	}
	m.conn = NewConn(cc)
	return m, nil
}

// Conn is the VPP connection (readiness, version, stats).
func (m *Manager) Conn() *Conn { return m.conn }

// Run keeps the VPP connection until ctx is done; every (re)connect
// reconciles VPP with the records, and so does the first readiness after
// a reconcile was owed (see oweReconcile).
func (m *Manager) Run(ctx context.Context) {
	done := make(chan struct{})
	go func() { defer close(done); m.payReconciles(ctx) }() // owned: ends with ctx
	m.conn.Run(ctx)
	<-done
}

// payReconciles reconciles once VPP is ready after a reconcile was owed.
// The reconnect's own reconcile may have run before a DEL dropped its
// record, or before Retain gave the records (the connection is published
// after it), and nothing else would remove what is left. A failed
// reconcile stays owed until the connection changes or more is owed.
func (m *Manager) payReconciles(ctx context.Context) {
	for {
		changed := m.conn.Changed()
		if m.owed.Load() && m.conn.Ready() == nil {
			m.owed.Store(false)
			if err := m.Reconcile(ctx); err != nil {
				m.log.Warn("owed reconcile failed; retried at the next connect", "err", err)
				m.owed.Store(true)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-m.owedKick:
		}
	}
}

// bound returns ctx limited to the life of the connection current now:
// when it is lost, an operation stops at once instead of waiting out its
// caller's deadline on a dead socket while holding the Manager's lock,
// which the reconnect's reconcile needs (a VPP restart kept memif ADDs,
// and VPP's return, waiting 60 s).
func (m *Manager) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	changed := m.conn.Changed()
	ctx, cancel := context.WithCancelCause(ctx)
	go func() { // owned: ends with ctx, which the caller cancels
		select {
		case <-changed:
			cancel(&UnavailableError{Socket: m.conn.Socket(), Err: errors.New("connection lost during the call")})
		case <-ctx.Done():
		}
	}()
	return ctx, func() { cancel(nil) }
}

// lost turns an error of an operation whose connection went away into an
// UnavailableError (CNI code 11: the runtime retries).
func lost(ctx context.Context, err error) error {
	var ue *UnavailableError
	if err != nil && errors.As(context.Cause(ctx), &ue) {
		return ue
	}
	return err
}

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
	ctx, cancel := m.bound(ctx)
	defer cancel()
	c, err := m.conn.API()
	if err != nil {
		return nil, err
	}
	if err := m.needs(&spec.Network); err != nil {
		return nil, err
	}
	if spec.Network.Uplink.Pooled() && m.vfs == nil {
		return nil, attach.Errorf(attach.CodeInvalidConfig, "network %q: vpp.uplink.pf %s: uplink %s takes a VF from the node's SR-IOV pool, which this agent does not have",
			spec.Network.Name, spec.Network.Uplink.PF, spec.Network.Uplink.Kind)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	rec, err := m.add(ctx, &vpp{conn: c}, spec)
	return rec, lost(ctx, err)
}

func (m *Manager) add(ctx context.Context, v *vpp, spec PodInterface) (*Record, error) {
	st, err := m.observe(ctx, v)
	if err != nil {
		return nil, err
	}
	others := m.recs.list()
	for _, o := range others {
		if o.Spec.Key() != spec.Key() && o.Spec.Tag() == spec.Tag() {
			return nil, fmt.Errorf("vppagent: tag %q already used by %s", spec.Tag(), o.Spec.Key())
		}
	}
	if err := m.leaseUplink(ctx, st, &spec); err != nil {
		return nil, err
	}
	// On failure nothing of the network is left when no other pod uses
	// it: the bridge domain goes, a lent VF goes back to the pool. The
	// caller may have given up already (its call timed out): the undo
	// does not stop with it.
	undo := func() {
		uctx, cancel := attach.UndoContext(ctx)
		defer cancel()
		m.gcNetworkIfUnused(uctx, v, &spec.Network, others)
	}
	if err := m.ensureNetwork(ctx, v, st, &spec.Network); err != nil {
		undo()
		return nil, err
	}
	rec, err := m.ensurePod(ctx, v, st, spec)
	if err != nil {
		undo()
		return nil, err
	}
	m.recs.put(*rec)
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
	if n.Uplink != nil && n.Uplink.Kind != UplinkDPDK && n.Uplink.Kind != UplinkDPDKVF {
		want = append(want, n.Uplink.Kind)
	}
	if len(n.Firewall) > 0 {
		want = append(want, "acl")
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

// Del removes the interface recorded under key ("<container-id>/<ifname>")
// and, with the network's last pod, the network's shared objects. It
// succeeds while VPP is down: the record goes and reconcile removes the
// leftovers (VPP restarted empty, or they are orphans) at the next connect.
// An unknown key is not an error (DEL is idempotent).
func (m *Manager) Del(ctx context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	rec, ok := m.recs.get(key)
	if !ok {
		return nil
	}
	m.recs.delete(key)
	ctx, cancel := m.bound(ctx)
	defer cancel()
	c, err := m.conn.API()
	if err != nil {
		m.log.Warn("VPP unavailable at DEL; its objects go at the next reconcile", "tag", rec.Spec.Tag(), "err", err)
		m.oweReconcile()
		return nil
	}
	v := &vpp{conn: c}
	if err := m.deletePod(ctx, v, rec); err != nil {
		// The record goes all the same: the agent frees its own when a
		// detach fails (a pod going away must not hold its addresses), so
		// no DEL comes again, and a record kept here would keep its
		// network's objects wanted forever. What is left in VPP has no
		// owner now: the owed reconcile removes it once VPP answers (at
		// once when VPP is up, at its return when it died).
		m.log.Warn("DEL left objects in VPP; a reconcile is owed", "tag", rec.Spec.Tag(), "err", err)
		m.oweReconcile()
		if ctx.Err() != nil {
			return nil // the connection went away: nothing to report
		}
		return err
	}
	m.gcNetworkIfUnused(ctx, v, &rec.Spec.Network, m.recs.list())
	return nil
}

// oweReconcile notes that VPP may hold objects nobody owns: a reconcile
// runs as soon as VPP is ready (payReconciles).
func (m *Manager) oweReconcile() {
	m.owed.Store(true)
	select {
	case m.owedKick <- struct{}{}:
	default:
	}
}

// CLI runs a VPP debug CLI command (telcnictl's passthrough).
func (m *Manager) CLI(ctx context.Context, cmd string) (string, error) {
	c, err := m.conn.API()
	if err != nil {
		return "", err
	}
	return (&vpp{conn: c}).cli(ctx, cmd)
}

// Retain makes the Manager serve exactly specs (the agent's ready
// attachments on VPP networks), then reconciles VPP with them: what is
// missing is re-created, what nobody owns is removed. Until Retain has run
// the Manager removes nothing (see retained). With VPP down, the next
// connect reconciles. The uplink VFs the specs record (UplinkVF) are
// handed to the VF lender as the leases their networks hold.
func (m *Manager) Retain(ctx context.Context, specs []PodInterface) error {
	leases := map[string]attach.UplinkVF{}
	kept := make([]PodInterface, 0, len(specs))
	for _, s := range specs {
		if !s.Network.Uplink.Pooled() {
			kept = append(kept, s)
			continue
		}
		l := s.UplinkVF
		if l == nil {
			// The agent keeps the record (DEL frees it); VPP stops serving
			// an interface whose uplink VF nobody knows.
			m.log.Warn("not retaining a VPP interface whose record has no uplink VF", "tag", s.Tag(), "network", s.Network.Name)
			continue
		}
		if o, ok := leases[s.Network.Name]; ok && o.PCI != l.PCI {
			m.log.Warn("records of one network name two uplink VFs; keeping the first", "network", s.Network.Name, "kept", o.PCI, "other", l.PCI)
			l = &o
		}
		leases[s.Network.Name] = *l
		u := *s.Network.Uplink
		u.PCI = l.PCI
		s.Network.Uplink = &u
		s.UplinkVF = l
		kept = append(kept, s)
	}
	specs = kept
	if len(leases) > 0 && m.vfs == nil {
		m.log.Warn("records hold uplink VFs but this agent has no VF pool", "networks", len(leases))
	}
	var recs []Record
	for _, s := range specs {
		r, err := m.describe(s)
		if err != nil {
			// The agent keeps the record (DEL frees it); VPP stops serving
			// an interface it could not have built.
			m.log.Warn("not retaining a VPP interface", "tag", s.Tag(), "err", err)
			continue
		}
		recs = append(recs, r)
	}
	m.mu.Lock()
	m.recs.replace(recs)
	m.leases = leases
	if m.vfs != nil {
		ls := make([]attach.UplinkVF, 0, len(leases))
		for _, l := range leases {
			ls = append(ls, l)
		}
		m.vfs.RetainUplinks(ls)
	}
	m.retained = true
	m.mu.Unlock()
	// VPP trouble must not stop the agent from starting. A connect whose
	// reconcile ran before retained was set (and so removed nothing) may
	// not be published yet: then the reconcile is owed, and paid when it
	// is.
	c, err := m.conn.API()
	if err != nil {
		m.oweReconcile()
		return nil
	}
	if err := m.reconcile(ctx, &vpp{conn: c}); err != nil {
		m.log.Warn("reconcile after retain failed; owed until VPP is ready", "err", err)
		m.oweReconcile()
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

// Records lists the pod interfaces the Manager serves.
func (m *Manager) Records() []Record { return m.recs.list() }

// Reconcile runs reconcile now (CNI GC, tests).
func (m *Manager) Reconcile(ctx context.Context) error {
	c, err := m.conn.API()
	if err != nil {
		return err
	}
	return m.reconcile(ctx, &vpp{conn: c})
}

// leaseUplink gives a network whose uplink names a PF (avf, dpdk-vf) its
// VF: the one it holds, else one the pool lends now. The VF's PCI address
// goes into the spec's uplink and the lease into spec.UplinkVF, which the
// pod's record keeps. A dpdk-vf uplink adopts a VF of the PF that VPP's
// DPDK plugin already has (startup.conf lists it; DPDK bound it at VPP's
// start and cannot add one later). Called under mu.
func (m *Manager) leaseUplink(ctx context.Context, st *state, spec *PodInterface) error {
	n := &spec.Network
	if !n.Uplink.Pooled() {
		return nil
	}
	var adopt func(string) bool
	if n.Uplink.Kind == UplinkDPDKVF {
		adopt = func(pci string) bool { _, ok := st.dpdkByPCI(pci); return ok }
	}
	l, ok := m.leases[n.Name]
	if !ok || l.PF != n.Uplink.PF {
		var err error
		if l, err = m.vfs.TakeForUplink(ctx, n.Name, n.Uplink.PF, "vfio-pci", adopt); err != nil {
			return fmt.Errorf("network %q: vpp.uplink.pf %s: %w", n.Name, n.Uplink.PF, err)
		}
		m.leases[n.Name] = l
	}
	u := *n.Uplink
	u.PCI = l.PCI
	n.Uplink = &u
	spec.UplinkVF = &l
	return nil
}

// returnUplinks gives back the VFs of networks no record in recs uses.
// A VF VPP still holds (a dpdk-vf that VPP's DPDK plugin keeps, an avf
// interface not yet deleted) stays leased; the next collect tries again.
// Called under mu.
func (m *Manager) returnUplinks(ctx context.Context, recs []Record) error {
	if m.vfs == nil || len(m.leases) == 0 {
		return nil
	}
	used := map[string]bool{}
	for _, r := range recs {
		used[r.Spec.Network.Name] = true
	}
	var errs []error
	for network := range m.leases {
		if used[network] {
			continue
		}
		if err := m.vfs.ReturnUplink(ctx, network); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(m.leases, network)
	}
	return errors.Join(errs...)
}
