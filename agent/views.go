package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

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

// registerViews adds the read-only views to the agent's API.
func (a *Agent) registerViews(mux *http.ServeMux) {
	mux.HandleFunc("GET "+PodPath+"{namespace}/{name}", a.servePod)
	mux.HandleFunc("GET "+NetworksPath, a.serveNetworks)
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
	target, err := netns.GetFromPath(r.Netns)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", r.Netns, err)
	}
	defer target.Close()
	h, err := netlink.NewHandleAt(target)
	if err != nil {
		return nil, fmt.Errorf("netlink in %s: %w", r.Netns, err)
	}
	defer h.Close()
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
