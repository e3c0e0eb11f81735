// Package delegate is the path of networks whose interfaces another CNI
// plugin makes (path: delegate): the agent calls the plugin through libcni
// with the pod's netns and interface name, in parallel with its own paths,
// as DANM and Multus delegate. The plugin's configuration is kept in the
// attachment record, so DEL reaches the same plugin with the same
// configuration after an agent restart or a change of the definition.
package delegate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netns"

	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
)

// Config configures the delegate path.
type Config struct {
	// BinDirs hold the delegate plugin binaries (CNI_PATH), e.g. /opt/cni/bin.
	BinDirs []string
	// ConfDir holds the conflists a network may name (delegate.conflist).
	ConfDir string
	// CacheDir is libcni's result cache (CHECK and DEL read it).
	CacheDir string
	// HostNetns, when set, is the netns the plugins run in (the node's;
	// default: the agent's own).
	HostNetns string
	Log       *slog.Logger
}

// Path calls delegate plugins.
type Path struct {
	cni     *libcni.CNIConfig
	confDir string
	host    string
	log     *slog.Logger
}

var _ attach.Path = (*Path)(nil)

// New returns the delegate path.
func New(cfg Config) *Path {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Path{cni: libcni.NewCNIConfigWithCacheDir(cfg.BinDirs, cfg.CacheDir, nil), confDir: cfg.ConfDir, host: cfg.HostNetns, log: cfg.Log}
}

// stateConf is the Interface.State key of the conflist the delegate got.
const stateConf = "delegateConf"

// Attach calls the delegate's ADD. A failed ADD is followed by its DEL, so
// that nothing it half made is left.
func (p *Path) Attach(ctx context.Context, req *attach.Request) (*attach.Interface, error) {
	raw, err := p.confList(req)
	if err != nil {
		return nil, err
	}
	list, err := libcni.ConfListFromBytes(raw)
	if err != nil {
		return nil, attach.Errorf(attach.CodeInvalidConfig, "network %s: delegate config: %v", req.Network.Key(), err)
	}
	rt := runtimeConf(req)
	var res types.Result
	err = p.inHost(func() error {
		var err error
		res, err = p.cni.AddNetworkList(ctx, list, rt)
		return err
	})
	if err != nil {
		if derr := p.inHost(func() error { return p.cni.DelNetworkList(context.WithoutCancel(ctx), list, rt) }); derr != nil {
			p.log.Warn("delegate DEL after a failed ADD", "network", req.Network.Key(), "err", derr)
		}
		return nil, coded(fmt.Errorf("network %s: delegate %s ADD: %w", req.Network.Key(), list.Plugins[0].Network.Type, err))
	}
	r, err := current.NewResultFromResult(res)
	if err != nil {
		return nil, attach.Errorf(attach.CodeIncompatibleVersion, "network %s: delegate result: %v", req.Network.Key(), err)
	}
	iface := &attach.Interface{Name: req.IfName, Sandbox: req.Netns, State: map[string]string{stateConf: string(raw)}}
	idx := -1
	for i, ri := range r.Interfaces {
		if ri.Name == req.IfName && ri.Sandbox != "" {
			idx = i
			iface.MAC = ri.Mac
			iface.MTU = ri.Mtu
		}
	}
	if req.Network.Delegate.EffectiveIPAM() == api.DelegateIPAMPlugin {
		for _, ip := range r.IPs {
			if ip.Interface != nil && *ip.Interface != idx {
				continue
			}
			c := attach.IPConfig{Address: prefixOf(ip.Address)}
			if gw, ok := netip.AddrFromSlice(ip.Gateway); ok {
				c.Gateway = gw.Unmap()
			}
			iface.IPs = append(iface.IPs, c)
		}
	}
	return iface, nil
}

// Detach calls the delegate's DEL with the configuration its ADD got.
func (p *Path) Detach(ctx context.Context, rec *attach.Record) error {
	list, err := p.recorded(rec)
	if err != nil {
		return err
	}
	rt := runtimeConf(&rec.Request)
	if err := p.inHost(func() error { return p.cni.DelNetworkList(ctx, list, rt) }); err != nil {
		return coded(fmt.Errorf("network %s: delegate DEL: %w", rec.Network.Key(), err))
	}
	return nil
}

// Check calls the delegate's CHECK.
func (p *Path) Check(ctx context.Context, rec *attach.Record) error {
	list, err := p.recorded(rec)
	if err != nil {
		return err
	}
	rt := runtimeConf(&rec.Request)
	if err := p.inHost(func() error { return p.cni.CheckNetworkList(ctx, list, rt) }); err != nil {
		return attach.Errorf(attach.CodeCheckFailed, "network %s: delegate CHECK: %v", rec.Network.Key(), err)
	}
	return nil
}

func (p *Path) recorded(rec *attach.Record) (*libcni.NetworkConfigList, error) {
	raw := []byte(rec.Interface.State[stateConf])
	if len(raw) == 0 { // made before the record kept it: rebuild
		var err error
		if raw, err = p.confList(&rec.Request); err != nil {
			return nil, err
		}
	}
	list, err := libcni.ConfListFromBytes(raw)
	if err != nil {
		return nil, attach.Errorf(attach.CodeInvalidConfig, "network %s: recorded delegate config: %v", rec.Network.Key(), err)
	}
	return list, nil
}

// confList is the conflist the delegate gets: the named one from the CNI
// config directory, or the network's plugin wrapped in one; with telcni's
// IPAM, the plugin's ipam is the static IPAM plugin with the addresses
// telcni allocated.
func (p *Path) confList(req *attach.Request) ([]byte, error) {
	n := req.Network
	d := n.Delegate
	if d == nil {
		return nil, attach.Errorf(attach.CodeInvalidConfig, "network %s: path delegate without delegate settings", n.Key())
	}
	if d.Conflist != "" {
		list, err := libcni.LoadConfList(p.confDir, d.Conflist)
		if err != nil {
			return nil, attach.Errorf(attach.CodeInvalidConfig, "network %s: delegate.conflist %q in %s: %v", n.Key(), d.Conflist, p.confDir, err)
		}
		return list.Bytes, nil
	}
	var plugin map[string]any
	if err := json.Unmarshal(d.Plugin, &plugin); err != nil {
		return nil, attach.Errorf(attach.CodeInvalidConfig, "network %s: delegate.plugin: %v", n.Key(), err)
	}
	if d.EffectiveIPAM() == api.DelegateIPAMTelcni {
		plugin["ipam"] = staticIPAM(req)
	}
	name := "telcni-" + strings.NewReplacer("/", "-").Replace(n.Key())
	return json.Marshal(map[string]any{"cniVersion": "1.0.0", "name": name, "plugins": []any{plugin}})
}

// staticIPAM is the static IPAM plugin's config for the request's
// addresses and routes.
func staticIPAM(req *attach.Request) map[string]any {
	var addrs, routes []map[string]string
	for _, ip := range req.IPs {
		a := map[string]string{"address": ip.Address.String()}
		if ip.Gateway.IsValid() {
			a["gateway"] = ip.Gateway.String()
		}
		addrs = append(addrs, a)
	}
	for _, r := range req.Routes {
		rt := map[string]string{"dst": r.Dst.String()}
		if r.GW.IsValid() {
			rt["gw"] = r.GW.String()
		}
		routes = append(routes, rt)
	}
	if req.DefaultRoute {
		for _, gw := range req.Gateways() {
			dst := "0.0.0.0/0"
			if gw.Is6() {
				dst = "::/0"
			}
			routes = append(routes, map[string]string{"dst": dst, "gw": gw.String()})
		}
	}
	out := map[string]any{"type": "static", "addresses": addrs}
	if len(routes) > 0 {
		out["routes"] = routes
	}
	return out
}

func runtimeConf(req *attach.Request) *libcni.RuntimeConf {
	args := [][2]string{{"IgnoreUnknown", "1"}}
	if req.Pod.Name != "" {
		args = append(args, [2]string{"K8S_POD_NAMESPACE", req.Pod.Namespace}, [2]string{"K8S_POD_NAME", req.Pod.Name})
	}
	if req.Pod.UID != "" {
		args = append(args, [2]string{"K8S_POD_UID", req.Pod.UID})
	}
	return &libcni.RuntimeConf{ContainerID: req.ContainerID, NetNS: req.Netns, IfName: req.IfName, Args: args}
}

// inHost runs fn on a thread inside the host netns, so that the plugins it
// starts (children inherit the thread's netns) find the node's devices.
func (p *Path) inHost(fn func() error) error {
	if p.host == "" {
		return fn()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	target, err := netns.GetFromPath(p.host)
	if err != nil {
		return fmt.Errorf("open host netns %s: %w", p.host, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		return fmt.Errorf("enter host netns %s: %w", p.host, err)
	}
	defer func() { _ = netns.Set(orig) }()
	return fn()
}

// coded keeps a delegate's own CNI error code (as a runtime would see it
// from the plugin), else code 100.
func coded(err error) error {
	var te *types.Error
	if errors.As(err, &te) && te.Code != 0 {
		return attach.WithCode(te.Code, err)
	}
	return attach.WithCode(attach.CodeInternal, err)
}

func prefixOf(n net.IPNet) netip.Prefix {
	a, _ := netip.AddrFromSlice(n.IP)
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones)
}
