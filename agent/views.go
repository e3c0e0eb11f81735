package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/ipam"
	"github.com/telcni/telcni/kernelpath"
)

// Read-only views for telcnictl: one pod with the objects behind each of
// its interfaces, and the networks with who uses them. Nothing here
// changes state; a view reads the records, then asks the kernel (netlink in
// the pod's netns) and the paths (InterfaceDescriber) what exists now.

// PodPath is the endpoint of one pod's view: GET /v1/pods/{namespace}/{name}.
const PodPath = "/v1/pods/"

// NetworksPath is the endpoint of the networks' view.
const NetworksPath = "/v1/networks"

// InterfaceDescriber is implemented by paths that can tell what stands
// behind a recorded interface outside the pod's netns (VPP: its
// sw_if_index, interface name, tag, socket and counters). The map is
// shown as it is, so its keys are the path's own vocabulary.
type InterfaceDescriber interface {
	Describe(ctx context.Context, rec *attach.Record) (map[string]any, error)
}

// PodView is everything the agent holds and sees of one pod.
type PodView struct {
	Namespace   string           `json:"namespace"`
	Name        string           `json:"name"`
	UID         string           `json:"uid,omitempty"`
	Attachments []AttachmentInfo `json:"attachments"`
	Interfaces  []InterfaceView  `json:"interfaces"`
}

// AttachmentInfo is one CNI attachment of a pod, as recorded: what telcnictl
// check needs to send a CHECK for it.
type AttachmentInfo struct {
	Key         string    `json:"key"`
	ContainerID string    `json:"containerID"`
	IfName      string    `json:"ifName"`
	Netns       string    `json:"netns"`
	ConfigName  string    `json:"configName"`
	CNIVersion  string    `json:"cniVersion"`
	Mode        string    `json:"mode"`
	State       string    `json:"state"`
	Created     time.Time `json:"created"`
}

// InterfaceView is one pod interface: the record and what exists behind it.
type InterfaceView struct {
	Attachment string            `json:"attachment"` // AttachmentInfo.Key
	IfName     string            `json:"ifName"`
	Network    string            `json:"network"`
	Path       api.PathKind      `json:"path"`
	State      string            `json:"state"` // the attachment's
	Addresses  []attach.IPConfig `json:"addresses,omitempty"`
	MAC        string            `json:"mac,omitempty"`
	MTU        int               `json:"mtu,omitempty"`
	// Link is the kernel link in the pod's netns (kernel paths, kernel VFs).
	Link *LinkView `json:"link,omitempty"`
	// VF is the SR-IOV VF behind the interface (from the record).
	VF *VFView `json:"vf,omitempty"`
	// Details are the path's own account (InterfaceDescriber), e.g. VPP.
	Details map[string]any `json:"details,omitempty"`
	// Errors say what could not be read (netns gone, VPP down); the rest
	// of the view is still shown.
	Errors []string `json:"errors,omitempty"`
}

// LinkView is a kernel link as netlink reports it now.
type LinkView struct {
	Index     int    `json:"ifindex"`
	Name      string `json:"name"`
	Kind      string `json:"kind"`
	Alias     string `json:"alias,omitempty"`
	MAC       string `json:"mac,omitempty"`
	MTU       int    `json:"mtu"`
	AdminUp   bool   `json:"adminUp"`
	OperState string `json:"operState"`
	// ParentIndex is the lower link's ifindex (macvlan, ipvlan, vlan), in
	// the host's netns for a link moved into a pod.
	ParentIndex int `json:"parentIndex,omitempty"`
	// HostLink is the host device the interface hangs off: the network's
	// master, or its shared VLAN/VXLAN host link.
	HostLink  string      `json:"hostLink,omitempty"`
	Addresses []string    `json:"addresses,omitempty"`
	Routes    []RouteView `json:"routes,omitempty"`
	Rules     []RuleView  `json:"rules,omitempty"`
}

// RouteView is one route through the link, of any table.
type RouteView struct {
	Dst      string `json:"dst"`
	Gateway  string `json:"gateway,omitempty"`
	Src      string `json:"src,omitempty"`
	Table    string `json:"table"`
	Scope    string `json:"scope,omitempty"`
	Protocol string `json:"protocol,omitempty"`
}

// RuleView is one policy-routing rule of the pod's netns that concerns the
// interface (from one of its addresses, or to its network's table).
type RuleView struct {
	Priority int    `json:"priority"`
	Src      string `json:"src,omitempty"`
	Table    string `json:"table"`
}

// VFView is an SR-IOV VF as the sriov path recorded it.
type VFView struct {
	PF       string `json:"pf"`
	PFPCI    string `json:"pfPCI,omitempty"`
	Index    int    `json:"index"`
	PCI      string `json:"pci"`
	Driver   string `json:"driver,omitempty"`
	HostName string `json:"hostName,omitempty"`
}

// NetworkView is one network: its definition and who uses it on this node.
type NetworkView struct {
	Key  string       `json:"key"`
	Path api.PathKind `json:"path"`
	// Defined is false for a network only records still name (its
	// definition was removed while pods were attached).
	Defined    bool         `json:"defined"`
	Definition *api.Network `json:"definition,omitempty"`
	// Pods are "namespace/name (container/ifname)" of each interface on it.
	Pods      []string     `json:"pods,omitempty"`
	Addresses []netip.Addr `json:"addresses,omitempty"`
}

// registerViews adds the read-only views to the agent's API, the IPAM
// audit, and the two debugging actions: GC of attachments whose netns is
// gone (a dry run unless asked) and a VPP packet trace.
func (a *Agent) registerViews(mux *http.ServeMux) {
	mux.HandleFunc("GET "+PodPath+"{namespace}/{name}", a.servePod)
	mux.HandleFunc("GET "+NetworksPath, a.serveNetworks)
	mux.HandleFunc("GET "+AuditPath, a.serveAudit)
	mux.HandleFunc("POST "+GCPath, a.serveGC)
	mux.HandleFunc("POST "+TracePath, a.serveTrace)
}

func (a *Agent) servePod(w http.ResponseWriter, r *http.Request) {
	ns, name := r.PathValue("namespace"), r.PathValue("name")
	v, err := a.PodView(r.Context(), ns, name)
	if errors.Is(err, errNoPod) {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	writeJSON(w, v, err)
}

func (a *Agent) serveNetworks(w http.ResponseWriter, r *http.Request) {
	v, err := a.NetworksView(r.Context())
	writeJSON(w, v, err)
}

var errNoPod = errors.New("no such pod")

// PodView describes every interface of the pod namespace/name on this node.
func (a *Agent) PodView(ctx context.Context, namespace, name string) (*PodView, error) {
	var recs []*Attachment
	err := a.forEachRecord(func(rec *Attachment) {
		if rec.Pod.Namespace == namespace && rec.Pod.Name == name {
			recs = append(recs, rec)
		}
	})
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("pod %s/%s: %w: the agent holds no attachment of it on this node", namespace, name, errNoPod)
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].Key < recs[j].Key })
	v := &PodView{Namespace: namespace, Name: name, Attachments: []AttachmentInfo{}, Interfaces: []InterfaceView{}}
	for _, rec := range recs {
		if v.UID == "" {
			v.UID = rec.Pod.UID
		}
		v.Attachments = append(v.Attachments, AttachmentInfo{Key: rec.Key, ContainerID: rec.ContainerID, IfName: rec.IfName,
			Netns: rec.Netns, ConfigName: rec.ConfigName, CNIVersion: rec.CNIVersion, Mode: rec.Mode, State: rec.State, Created: rec.Created})
		for i := range rec.Interfaces {
			v.Interfaces = append(v.Interfaces, a.describe(ctx, rec, &rec.Interfaces[i]))
		}
	}
	return v, nil
}

// describe gathers what stands behind one recorded interface. Failures to
// read a part are reported in the view, not returned: a debugger must show
// what it can of a half-broken pod.
func (a *Agent) describe(ctx context.Context, rec *Attachment, r *attach.Record) InterfaceView {
	iv := InterfaceView{Attachment: rec.Key, IfName: r.IfName, State: rec.State, Addresses: r.IPs,
		MAC: r.Interface.MAC, MTU: r.Interface.MTU}
	if r.Network != nil {
		iv.Network, iv.Path = r.Network.Key(), r.Network.Path
	}
	if r.Network != nil && r.Network.Path.IsSRIOV() {
		iv.VF = vfView(r.Interface.State)
	}
	if isKernelLink(r) {
		l, err := describeLink(r)
		if err != nil {
			iv.Errors = append(iv.Errors, err.Error())
		}
		iv.Link = l
	}
	if r.Network != nil {
		if d, ok := a.paths[r.Network.Path].(InterfaceDescriber); ok {
			det, err := d.Describe(ctx, r)
			if err != nil {
				iv.Errors = append(iv.Errors, fmt.Sprintf("%s path: %v", r.Network.Path, err))
			}
			iv.Details = det
		}
	}
	return iv
}

// isKernelLink reports whether the interface is a kernel link in the pod's
// netns: every kernel path, and SR-IOV VFs left on their kernel driver.
func isKernelLink(r *attach.Record) bool {
	if r.Network == nil || r.Netns == "" {
		return false
	}
	switch p := r.Network.Path; {
	case p == api.PathSRIOV:
		return true
	case p.IsSRIOV(), p.IsVPP():
		return false
	}
	return true
}

// vfView reads the sriov path's Interface.State (keys of sriov/sriov.go).
func vfView(s map[string]string) *VFView {
	if s == nil {
		return nil
	}
	idx, _ := strconv.Atoi(s["vf"])
	return &VFView{PF: s["pf"], PFPCI: s["pfPCI"], Index: idx, PCI: s["pci"], Driver: s["driver"], HostName: s["hostName"]}
}

// describeLink reads the interface's link, addresses, routes (every table)
// and policy rules in the pod's netns.
func describeLink(r *attach.Record) (*LinkView, error) {
	_, h, done, err := kernelpath.PodNetns(r.Netns)
	if err != nil {
		return nil, err
	}
	defer done()
	link, err := h.LinkByName(r.IfName)
	if err != nil {
		return nil, fmt.Errorf("%s in %s: link not found: %w", r.IfName, r.Netns, err)
	}
	at := link.Attrs()
	lv := &LinkView{Index: at.Index, Name: at.Name, Kind: link.Type(), Alias: at.Alias, MTU: at.MTU,
		AdminUp: at.Flags&net.FlagUp != 0, OperState: at.OperState.String(), ParentIndex: at.ParentIndex, HostLink: hostLink(r.Network)}
	if at.HardwareAddr != nil {
		lv.MAC = at.HardwareAddr.String()
	}
	var errs []error
	addrs, err := h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		errs = append(errs, fmt.Errorf("addresses of %s: %w", r.IfName, err))
	}
	mine := map[string]bool{}
	for _, ad := range addrs {
		if ad.IP.IsLinkLocalUnicast() {
			continue // the kernel's fe80::, not telcni's
		}
		lv.Addresses = append(lv.Addresses, ad.IPNet.String())
		mine[ad.IP.String()] = true
	}
	routes, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{LinkIndex: at.Index, Table: 0},
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		errs = append(errs, fmt.Errorf("routes of %s: %w", r.IfName, err))
	}
	for _, rt := range routes {
		if rt.Table == 255 || rt.Dst != nil && rt.Dst.IP.IsLinkLocalUnicast() || rt.Dst != nil && rt.Dst.IP.IsMulticast() {
			continue // the kernel's local, link-local and multicast routes
		}
		rv := RouteView{Dst: "default", Table: tableName(rt.Table), Protocol: rt.Protocol.String()}
		if rt.Dst != nil && !isDefault(rt.Dst.String()) {
			rv.Dst = rt.Dst.String()
		}
		if rt.Gw != nil {
			rv.Gateway = rt.Gw.String()
		}
		if rt.Src != nil {
			rv.Src = rt.Src.String()
		}
		if rt.Scope != netlink.SCOPE_UNIVERSE {
			rv.Scope = rt.Scope.String()
		}
		lv.Routes = append(lv.Routes, rv)
	}
	sort.SliceStable(lv.Routes, func(i, j int) bool {
		x, y := lv.Routes[i], lv.Routes[j]
		if x.Table != y.Table {
			return x.Table < y.Table
		}
		return x.Dst < y.Dst
	})
	rules, err := h.RuleList(netlink.FAMILY_ALL)
	if err != nil {
		errs = append(errs, fmt.Errorf("policy rules: %w", err))
	}
	table := 0
	if r.Network != nil {
		table = r.Network.PolicyRoutingTable
	}
	for _, ru := range rules {
		fromMine := ru.Src != nil && mine[ru.Src.IP.String()]
		if !fromMine && (table == 0 || ru.Table != table) {
			continue
		}
		rv := RuleView{Priority: ru.Priority, Table: tableName(ru.Table)}
		if ru.Src != nil {
			rv.Src = ru.Src.String()
		}
		lv.Rules = append(lv.Rules, rv)
	}
	return lv, errors.Join(errs...)
}

func isDefault(dst string) bool { return dst == "0.0.0.0/0" || dst == "::/0" }

func tableName(t int) string {
	switch t {
	case 254:
		return "main"
	case 253:
		return "default"
	case 255:
		return "local"
	}
	return strconv.Itoa(t)
}

// hostLink names the host device a kernel interface hangs off.
func hostLink(n *api.Network) string {
	if n == nil {
		return ""
	}
	switch n.Path {
	case api.PathVLAN, api.PathVXLAN:
		if n.EffectiveMode() != "direct" {
			return kernelpath.HostLinkName(n)
		}
		if n.Path == api.PathVXLAN && n.VXLAN != nil {
			return n.VXLAN.Device
		}
	}
	return n.Master
}

// NetworksView lists every defined network and every network records still
// use, with the pods on it and the addresses held in it.
func (a *Agent) NetworksView(ctx context.Context) ([]NetworkView, error) {
	defs, err := a.networks.Networks(ctx)
	if err != nil {
		return nil, fmt.Errorf("network definitions: %w", err)
	}
	byKey := map[string]*NetworkView{}
	for _, n := range defs {
		byKey[n.Key()] = &NetworkView{Key: n.Key(), Path: n.Path, Defined: true, Definition: n}
	}
	var allocs []ipam.Allocation
	err = a.store.View(func(tx *ipam.Tx) error {
		allocs = tx.Allocations()
		return eachRecord(tx, func(rec *Attachment) {
			for _, r := range rec.Interfaces {
				if r.Network == nil {
					continue
				}
				k := r.Network.Key()
				nv := byKey[k]
				if nv == nil {
					nv = &NetworkView{Key: k, Path: r.Network.Path}
					byKey[k] = nv
				}
				nv.Pods = append(nv.Pods, fmt.Sprintf("%s/%s (%s/%s)", rec.Pod.Namespace, rec.Pod.Name, rec.ContainerID, r.IfName))
			}
		})
	})
	if err != nil {
		return nil, err
	}
	for _, al := range allocs {
		nv := byKey[al.Network]
		if nv == nil {
			nv = &NetworkView{Key: al.Network}
			byKey[al.Network] = nv
		}
		nv.Addresses = append(nv.Addresses, al.Address)
	}
	out := make([]NetworkView, 0, len(byKey))
	for _, nv := range byKey {
		sort.Strings(nv.Pods)
		sort.Slice(nv.Addresses, func(i, j int) bool { return nv.Addresses[i].Less(nv.Addresses[j]) })
		out = append(out, *nv)
	}
	sort.Slice(out, func(i, j int) bool { return strings.Compare(out[i].Key, out[j].Key) < 0 })
	return out, nil
}

// ---- IPAM audit: the records against the live world ----

// AuditPath is the endpoint of the IPAM audit: GET, read-only.
const AuditPath = "/v1/ipam/audit"

// InterfaceAuditor is implemented by paths whose interfaces live outside
// the pod's netns (VPP): AuditInterface says whether the objects behind a
// recorded interface exist; an error means it cannot tell now (VPP down).
type InterfaceAuditor interface {
	AuditInterface(ctx context.Context, rec *attach.Record) (live bool, err error)
}

// OrphanLister is implemented by paths that can list objects carrying
// telcni's mark that no record accounts for (given the interfaces the
// agent records, "<container>/<ifname>"), each described in one line.
type OrphanLister interface {
	Orphans(ctx context.Context, recorded map[string]bool) ([]string, error)
}

// Audit outcomes of one recorded interface.
const (
	AuditLive    = "live"    // the netns and the objects behind the interface exist
	AuditLeak    = "leak"    // addresses are held but the interface is gone
	AuditUnknown = "unknown" // the path cannot tell now (VPP down)
	AuditPending = "pending" // an ADD is making it
)

// AuditReport compares the agent's records with what exists.
type AuditReport struct {
	// Interfaces is every recorded interface with what was found.
	Interfaces []AuditInterface `json:"interfaces"`
	// Orphans are addresses, links and VPP objects no record accounts for.
	Orphans []AuditOrphan `json:"orphans"`
	// Leaks counts Interfaces in state leak.
	Leaks int `json:"leaks"`
}

// AuditInterface is one recorded interface in the audit.
type AuditInterface struct {
	Pod        string       `json:"pod"`
	Attachment string       `json:"attachment"`
	IfName     string       `json:"ifName"`
	Network    string       `json:"network"`
	Path       api.PathKind `json:"path"`
	Netns      string       `json:"netns"`
	Addresses  []netip.Addr `json:"addresses,omitempty"` // held by IPAM for it
	State      string       `json:"state"`               // live, leak, unknown, pending
	Reason     string       `json:"reason,omitempty"`
}

// AuditOrphan is something no record accounts for.
type AuditOrphan struct {
	Kind  string `json:"kind"`  // address, link, vpp
	Where string `json:"where"` // network, netns, "vpp"
	What  string `json:"what"`  // the address and its holder, the link and its alias, the VPP object
}

func (a *Agent) serveAudit(w http.ResponseWriter, r *http.Request) {
	v, err := a.AuditIPAM(r.Context())
	writeJSON(w, v, err)
}

// netnsDir is where runtimes pin pod network namespaces; the audit looks
// there for telcni links no record owns.
var netnsDir = "/var/run/netns"

// AuditIPAM checks every record against the live world: the netns exists,
// its links exist with telcni's alias (kernel paths), the path's objects
// exist (InterfaceAuditor: VPP); and lists orphans: held addresses no
// record owns, links with a telcni pod alias in a pod netns (the records'
// and those pinned in /var/run/netns) that no record owns, and the paths'
// own (OrphanLister). It changes nothing.
func (a *Agent) AuditIPAM(ctx context.Context) (*AuditReport, error) {
	var recs []*Attachment
	var allocs []ipam.Allocation
	err := a.store.View(func(tx *ipam.Tx) error {
		allocs = tx.Allocations()
		return eachRecord(tx, func(rec *Attachment) { recs = append(recs, rec) })
	})
	if err != nil {
		return nil, err
	}
	held := map[string][]netip.Addr{} // network\0container\0ifname
	for _, al := range allocs {
		k := al.Network + "\x00" + al.Holder.ContainerID + "\x00" + al.Holder.IfName
		held[k] = append(held[k], al.Address)
	}
	rep := &AuditReport{Interfaces: []AuditInterface{}, Orphans: []AuditOrphan{}}
	owned := map[string]bool{}    // network\0container\0ifname
	recorded := map[string]bool{} // container/ifname
	netnses := map[string]bool{}
	sort.Slice(recs, func(i, j int) bool { return recs[i].Key < recs[j].Key })
	for _, rec := range recs {
		netnses[rec.Netns] = true
		for i := range rec.Interfaces {
			r := &rec.Interfaces[i]
			recorded[rec.ContainerID+"/"+r.IfName] = true
			ai := AuditInterface{Pod: rec.Pod.Namespace + "/" + rec.Pod.Name, Attachment: rec.Key, IfName: r.IfName, Netns: r.Netns}
			if r.Network != nil {
				ai.Network, ai.Path = r.Network.Key(), r.Network.Path
				k := ai.Network + "\x00" + rec.ContainerID + "\x00" + r.IfName
				owned[k] = true
				ai.Addresses = held[k]
			}
			ai.State, ai.Reason = a.auditInterface(ctx, rec, r)
			if ai.State == AuditLeak {
				rep.Leaks++
			}
			rep.Interfaces = append(rep.Interfaces, ai)
		}
	}
	for _, al := range allocs {
		if !owned[al.Network+"\x00"+al.Holder.ContainerID+"\x00"+al.Holder.IfName] {
			rep.Orphans = append(rep.Orphans, AuditOrphan{Kind: "address", Where: al.Network, What: al.Address.String() + " held by " + al.Holder.String()})
		}
	}
	if ents, err := os.ReadDir(netnsDir); err == nil {
		for _, e := range ents {
			netnses[filepath.Join(netnsDir, e.Name())] = true
		}
	}
	paths := make([]string, 0, len(netnses))
	for p := range netnses {
		if p != "" {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	for _, p := range paths {
		rep.Orphans = append(rep.Orphans, orphanLinks(p, recorded)...)
	}
	seen := map[OrphanLister]bool{}
	kinds := make([]string, 0, len(a.paths))
	for k := range a.paths {
		kinds = append(kinds, string(k))
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		ol, ok := a.paths[api.PathKind(k)].(OrphanLister)
		if !ok || seen[ol] {
			continue
		}
		seen[ol] = true
		objs, err := ol.Orphans(ctx, recorded)
		if err != nil {
			rep.Orphans = append(rep.Orphans, AuditOrphan{Kind: k, Where: k, What: "cannot list: " + err.Error()})
		}
		for _, o := range objs {
			rep.Orphans = append(rep.Orphans, AuditOrphan{Kind: k, Where: k, What: o})
		}
	}
	return rep, nil
}

// auditInterface says whether one recorded interface is live.
func (a *Agent) auditInterface(ctx context.Context, rec *Attachment, r *attach.Record) (state, reason string) {
	if rec.State != StateReady {
		return AuditPending, "the attachment is " + rec.State
	}
	netnsPath := r.Netns
	if netnsPath == "" {
		netnsPath = rec.Netns
	}
	if why := netnsGone(netnsPath); why != "" {
		return AuditLeak, why
	}
	if r.Network == nil {
		return AuditUnknown, "the record names no network"
	}
	if isKernelLink(r) || r.Network.Path == api.PathDelegate {
		l, err := linkIn(netnsPath, r.IfName)
		if err != nil {
			return AuditUnknown, err.Error()
		}
		if l == nil {
			return AuditLeak, fmt.Sprintf("no link %s in %s", r.IfName, netnsPath)
		}
		// kernelpath marks its links; a kernel VF or a delegate's link
		// carries no mark of telcni's.
		if slices.Contains(kernelpath.Kinds(), r.Network.Path) {
			if want := kernelpath.Alias(rec.ContainerID, r.IfName); l.Attrs().Alias != want {
				return AuditLeak, fmt.Sprintf("link %s in %s has alias %q, not %q", r.IfName, netnsPath, l.Attrs().Alias, want)
			}
		}
	}
	if au, ok := a.paths[r.Network.Path].(InterfaceAuditor); ok {
		live, err := au.AuditInterface(ctx, r)
		switch {
		case err != nil:
			return AuditUnknown, fmt.Sprintf("%s path: %v", r.Network.Path, err)
		case !live:
			return AuditLeak, fmt.Sprintf("%s path: no object behind %s/%s", r.Network.Path, rec.ContainerID, r.IfName)
		}
	}
	return AuditLive, ""
}

// netnsGone says why the netns at path is gone, or "" while it exists: the
// file is missing, or is no longer a namespace (unmounted).
func netnsGone(path string) string {
	if path == "" {
		return "no netns recorded"
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return "netns " + path + " is gone"
	}
	if err != nil {
		return "" // cannot tell: not gone
	}
	defer f.Close()
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err == nil && st.Type != unix.NSFS_MAGIC && st.Type != unix.PROC_SUPER_MAGIC {
		return "netns " + path + " is not a network namespace any more (unmounted)"
	}
	return ""
}

// linkIn finds the link name in the netns at path; nil, nil when there is
// none.
func linkIn(path, name string) (netlink.Link, error) {
	target, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", path, err)
	}
	defer target.Close()
	h, err := netlink.NewHandleAt(target)
	if err != nil {
		return nil, fmt.Errorf("netlink in %s: %w", path, err)
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil, nil
	}
	return l, err
}

// orphanLinks lists the links of the netns at path that carry a telcni pod
// alias ("telcni:<container>:<ifname>") no record owns.
func orphanLinks(path string, recorded map[string]bool) []AuditOrphan {
	target, err := netns.GetFromPath(path)
	if err != nil {
		return nil // gone meanwhile, or not a netns: nothing to find there
	}
	defer target.Close()
	h, err := netlink.NewHandleAt(target)
	if err != nil {
		return nil
	}
	defer h.Close()
	ls, err := h.LinkList()
	if err != nil {
		return nil
	}
	var out []AuditOrphan
	for _, l := range ls {
		alias := l.Attrs().Alias
		rest, ok := strings.CutPrefix(alias, "telcni:")
		if !ok || alias == kernelpath.HostAlias {
			continue
		}
		i := strings.LastIndex(rest, ":")
		if i < 0 || recorded[rest[:i]+"/"+rest[i+1:]] {
			continue
		}
		out = append(out, AuditOrphan{Kind: "link", Where: path, What: fmt.Sprintf("%s (ifindex %d, alias %s)", l.Attrs().Name, l.Attrs().Index, alias)})
	}
	return out
}

// ---- GC of attachments whose netns is gone ----

// GCPath is the endpoint of the agent's netns GC: POST GCRequest.
const GCPath = "/v1/gc"

// GCRequest asks for the GC; without Apply it is a dry run.
type GCRequest struct {
	Apply bool `json:"apply"`
}

// GCReport lists the attachments whose netns is gone: those that would be
// freed (dry run) or were.
type GCReport struct {
	Applied     bool          `json:"applied"`
	Attachments []GCCandidate `json:"attachments"`
}

// GCCandidate is one attachment the GC frees.
type GCCandidate struct {
	Attachment string       `json:"attachment"`
	Pod        string       `json:"pod"`
	Netns      string       `json:"netns"`
	Interfaces []string     `json:"interfaces"`
	Addresses  []netip.Addr `json:"addresses,omitempty"`
	Reason     string       `json:"reason"`
	Freed      bool         `json:"freed,omitempty"`
	Error      string       `json:"error,omitempty"`
}

func (a *Agent) serveGC(w http.ResponseWriter, r *http.Request) {
	var req GCRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		http.Error(w, "body must be {\"apply\": true|false}: "+err.Error(), http.StatusBadRequest)
		return
	}
	v, err := a.GCGoneNetns(r.Context(), req.Apply)
	writeJSON(w, v, err)
}

// GCGoneNetns finds the ready attachments whose netns is gone (the pod
// died without a DEL) and, with apply, frees each as a DEL would: its
// interfaces are detached (what is left of them), its addresses and record
// freed. Pending attachments (an ADD in flight) are never touched; each
// attachment is checked again under its lock before it is freed.
func (a *Agent) GCGoneNetns(ctx context.Context, apply bool) (*GCReport, error) {
	var cands []GCCandidate
	err := a.store.View(func(tx *ipam.Tx) error {
		return eachRecord(tx, func(rec *Attachment) {
			if rec.State != StateReady {
				return
			}
			why := netnsGone(rec.Netns)
			if why == "" {
				return
			}
			c := GCCandidate{Attachment: rec.Key, Pod: rec.Pod.Namespace + "/" + rec.Pod.Name, Netns: rec.Netns, Interfaces: []string{}, Reason: why}
			for _, r := range rec.Interfaces {
				c.Interfaces = append(c.Interfaces, r.IfName)
				for _, ip := range r.IPs {
					c.Addresses = append(c.Addresses, ip.Address.Addr())
				}
			}
			cands = append(cands, c)
		})
	})
	if err != nil {
		return nil, err
	}
	rep := &GCReport{Applied: apply, Attachments: cands}
	if rep.Attachments == nil {
		rep.Attachments = []GCCandidate{}
	}
	if !apply {
		return rep, nil
	}
	hostLinks := false
	for i := range rep.Attachments {
		c := &rep.Attachments[i]
		rec, err := a.gcOne(ctx, c.Attachment)
		switch {
		case err != nil:
			c.Error = err.Error()
		case rec != nil:
			c.Freed = true
			hostLinks = hostLinks || usedHostLink(rec)
			a.log.Info("GC: freed an attachment whose netns is gone", "attachment", c.Attachment, "pod", c.Pod, "netns", c.Netns)
		default:
			c.Error = "no longer a candidate (DELeted, or its netns is back)"
		}
	}
	if hostLinks {
		if err := a.SyncHostLinks(ctx); err != nil {
			a.log.Warn("host link sync after GC", "err", err)
		}
	}
	return rep, nil
}

// gcOne frees the attachment key if, under its lock, it is still ready and
// its netns still gone; nil, nil when it no longer qualifies.
func (a *Agent) gcOne(ctx context.Context, key string) (*Attachment, error) {
	unlock := a.locks.lock(key)
	defer unlock()
	rec, err := a.get(key)
	if errors.Is(err, ipam.ErrNoRecord) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if rec.State != StateReady || netnsGone(rec.Netns) == "" {
		return nil, nil
	}
	if err := a.teardown(ctx, rec, true); err != nil {
		return nil, err
	}
	return rec, nil
}

// ---- VPP packet trace ----

// TracePath is the endpoint of a packet trace of one pod interface: POST
// TraceRequest, answered with the path's trace (vppagent.Trace).
const TracePath = "/v1/vpp/trace"

// TraceRequest names the pod interface and bounds the trace.
type TraceRequest struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Interface string `json:"interface"`
	// Count is how many of the interface's packets to wait for (default 10).
	Count int `json:"count,omitempty"`
	// Duration is the longest wait (default 10 s, at most 5 min).
	Duration Duration `json:"duration,omitempty"`
}

// Duration is a time.Duration as a string ("10s") in JSON.
type Duration time.Duration

// MarshalJSON writes d as "10s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads "10s" (or nanoseconds as a number).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n int64
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("duration: want \"10s\" or nanoseconds: %s", b)
		}
		*d = Duration(n)
		return nil
	}
	v, err := time.ParseDuration(s)
	*d = Duration(v)
	return err
}

// PacketTracer is implemented by paths that can trace a recorded
// interface's packets (VPP): wait up to wait for count of them and return
// the trace (encoded as JSON to telcnictl).
type PacketTracer interface {
	TracePackets(ctx context.Context, rec *attach.Record, count int, wait time.Duration) (any, error)
}

// TraceError is the body of a failed trace.
type TraceError struct {
	Error string `json:"error"`
}

func (a *Agent) serveTrace(w http.ResponseWriter, r *http.Request) {
	fail := func(code int, format string, args ...any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(TraceError{Error: fmt.Sprintf(format, args...)})
	}
	var req TraceRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil || req.Namespace == "" || req.Name == "" || req.Interface == "" {
		fail(http.StatusBadRequest, "body must be {\"namespace\", \"name\", \"interface\", \"count\", \"duration\"}: %v", err)
		return
	}
	if req.Count <= 0 {
		req.Count = 10
	}
	wait := time.Duration(req.Duration)
	if wait <= 0 {
		wait = 10 * time.Second
	}
	wait = min(wait, 5*time.Minute)
	var found *attach.Record
	var ifnames []string
	err := a.forEachRecord(func(rec *Attachment) {
		if rec.Pod.Namespace != req.Namespace || rec.Pod.Name != req.Name {
			return
		}
		for i := range rec.Interfaces {
			ri := &rec.Interfaces[i]
			ifnames = append(ifnames, ri.IfName)
			if ri.IfName == req.Interface && found == nil {
				found = ri
			}
		}
	})
	if err != nil {
		fail(http.StatusInternalServerError, "%v", err)
		return
	}
	pod := req.Namespace + "/" + req.Name
	switch {
	case len(ifnames) == 0:
		fail(http.StatusNotFound, "pod %s: %v: the agent holds no attachment of it on this node", pod, errNoPod)
		return
	case found == nil:
		fail(http.StatusNotFound, "pod %s has no interface %s (it has %s)", pod, req.Interface, strings.Join(ifnames, ", "))
		return
	}
	var tr PacketTracer
	if found.Network != nil {
		tr, _ = a.paths[found.Network.Path].(PacketTracer)
	}
	if tr == nil {
		var kind api.PathKind
		if found.Network != nil {
			kind = found.Network.Path
		}
		fail(http.StatusBadRequest, "interface %s of pod %s is on path %s: only VPP interfaces (memif, vhostuser) can be traced", req.Interface, pod, kind)
		return
	}
	v, err := tr.TracePackets(r.Context(), found, req.Count, wait)
	if err != nil {
		code := http.StatusBadGateway
		var se interface{ HTTPStatus() int }
		if errors.As(err, &se) {
			code = se.HTTPStatus()
		}
		fail(code, "trace %s %s: %v", pod, req.Interface, err)
		return
	}
	writeJSON(w, v, nil)
}
