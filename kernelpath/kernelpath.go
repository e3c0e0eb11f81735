// Package kernelpath makes pod interfaces out of kernel links: macvlan and
// ipvlan on a master, and VLAN and VXLAN networks — a shared host link
// ("eth1.100", "vx42") with macvlan or ipvlan pods on it, or the VLAN/VXLAN
// link itself moved into the pod ("direct"). Every pod link carries the
// alias "telcni:<container-id>:<ifname>" and every host link telcni made
// "telcni:host", so that nothing telcni did not make is ever deleted, and
// ownership is visible with `ip -d link`.
package kernelpath

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
)

// Path implements attach.Path for the kernel paths.
type Path struct {
	log  *slog.Logger
	host *netlink.Handle // the node's netns, where masters live

	// hostMu orders host-link creation and removal against pod links
	// being made on them.
	hostMu sync.Mutex

	// bg holds the deletions whose kernel calls finish after DEL
	// returned (see unregister).
	bg sync.WaitGroup
}

var _ attach.Path = (*Path)(nil)

// New returns the kernel path. hostNetns is the netns whose links are the
// networks' masters: "" for the agent's own (the node's), or a path, which
// lets tests and demos stand a namespace in for the node.
func New(log *slog.Logger, hostNetns string) (*Path, error) {
	if hostNetns == "" {
		return &Path{log: log, host: &netlink.Handle{}}, nil
	}
	ns, err := netns.GetFromPath(hostNetns)
	if err != nil {
		return nil, fmt.Errorf("open host netns %s: %w", hostNetns, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netlink handle in host netns %s: %w", hostNetns, err)
	}
	return &Path{log: log, host: h}, nil
}

// Close waits for deletions still finishing in the kernel and releases
// the host netlink handle.
func (p *Path) Close() {
	p.bg.Wait()
	p.host.Close()
}

// Kinds are the network paths this package serves.
func Kinds() []api.PathKind {
	return []api.PathKind{api.PathMACVLAN, api.PathIPVLAN, api.PathVLAN, api.PathVXLAN}
}

// Alias is the ownership mark telcni puts on the links it makes.
func Alias(containerID, ifName string) string {
	return "telcni:" + containerID + ":" + ifName
}

// Attach creates the interface in the pod's netns and configures it; on
// failure it removes what it created.
func (p *Path) Attach(ctx context.Context, req *attach.Request) (*attach.Interface, error) {
	target, h, done, err := PodNetns(req.Netns)
	if err != nil {
		return nil, err
	}
	defer done()
	if _, err := h.LinkByName(req.IfName); err == nil {
		return nil, attach.Errorf(attach.CodeInvalidConfig, "interface %s already exists in netns %s", req.IfName, req.Netns)
	}

	link, err := p.create(req, target, h)
	if err != nil {
		return nil, err
	}
	err = SetARPStrict(target, link)
	var iface *attach.Interface
	if err == nil {
		iface, err = ConfigureLink(h, link, req)
	}
	if err == nil {
		err = ApplyFirewall(target, req)
	}
	if err != nil {
		if derr := h.LinkDel(link); derr != nil {
			p.log.Warn("rollback: delete link", "netns", req.Netns, "ifname", req.IfName, "err", derr)
		}
		return nil, err
	}
	iface.Sandbox = req.Netns
	p.log.Debug("attached", "container", req.ContainerID, "ifname", req.IfName, "network", req.Network.Key(), "path", req.Network.Path)
	return iface, nil
}

// Detach deletes the pod interface. A netns that is gone took the link
// with it, so there is nothing left to do.
func (p *Path) Detach(ctx context.Context, rec *attach.Record) error {
	target, h, done, err := PodNetns(rec.Netns)
	if errors.Is(err, errNetnsGone) {
		return nil
	}
	if err != nil {
		return err
	}
	defer done()
	if err := DeletePolicyRules(h, rec); err != nil {
		return err
	}
	if err := RemoveFirewall(target, rec); err != nil {
		return err
	}
	link, err := podLink(h, rec)
	if err != nil || link == nil {
		return err
	}
	if link.Attrs().Alias != Alias(rec.ContainerID, rec.IfName) && link.Attrs().Name != tempName(rec.ContainerID, rec.IfName) {
		// Not ours (renamed, or another plugin's): never delete it.
		p.log.Warn("detach: link is not telcni's, left in place", "netns", rec.Netns, "ifname", rec.IfName, "alias", link.Attrs().Alias)
		return nil
	}
	if err := p.deleteLink(target, link.Attrs().Index); err != nil {
		return fmt.Errorf("delete %s in %s: %w", rec.IfName, rec.Netns, err)
	}
	return nil
}

// create makes the pod link, in the pod's netns, under a temporary name.
func (p *Path) create(req *attach.Request, target netns.NsHandle, h *netlink.Handle) (netlink.Link, error) {
	n := req.Network
	switch {
	case n.Path == api.PathMACVLAN || n.Path == api.PathIPVLAN:
		return createLower(p.host, req, n.Master, lowerOf(n), target, h)
	case (n.Path == api.PathVLAN || n.Path == api.PathVXLAN) && n.EffectiveMode() == "direct":
		return p.createDirect(req, target, h)
	case n.Path == api.PathVLAN || n.Path == api.PathVXLAN:
		// Held until the pod link exists on the host link, so that a
		// concurrent SyncHostLinks cannot remove the host link in between.
		p.hostMu.Lock()
		defer p.hostMu.Unlock()
		parent, err := p.ensureHostLink(n)
		if err != nil {
			return nil, err
		}
		return createLower(p.host, req, parent.Attrs().Name, lowerOf(n), target, h)
	}
	return nil, attach.Errorf(attach.CodeInvalidConfig, "network %s: path %s is not served by the kernel path", n.Key(), n.Path)
}

var errNetnsGone = errors.New("netns is gone")

// podLink finds the record's link in the pod's netns: under the pod's
// interface name, or still under its temporary name (an ADD interrupted
// before the rename); nil when neither exists.
func podLink(h *netlink.Handle, rec *attach.Record) (netlink.Link, error) {
	var nf netlink.LinkNotFoundError
	for _, name := range []string{rec.IfName, tempName(rec.ContainerID, rec.IfName)} {
		link, err := h.LinkByName(name)
		if err == nil {
			return link, nil
		}
		if !errors.As(err, &nf) {
			return nil, fmt.Errorf("find %s in %s: %w", name, rec.Netns, err)
		}
	}
	return nil, nil
}

// PodNetns opens the pod's netns and a netlink handle in it; done closes
// both.
func PodNetns(path string) (target netns.NsHandle, h *netlink.Handle, done func(), err error) {
	target, err = openNetns(path)
	if err != nil {
		return target, nil, nil, err
	}
	h, err = netlink.NewHandleAt(target)
	if err != nil {
		target.Close()
		return target, nil, nil, fmt.Errorf("netlink handle in %s: %w", path, err)
	}
	return target, h, func() { h.Close(); target.Close() }, nil
}

func openNetns(path string) (netns.NsHandle, error) {
	h, err := netns.GetFromPath(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return h, fmt.Errorf("netns %s: %w", path, errNetnsGone)
		}
		return h, fmt.Errorf("open netns %s: %w", path, err)
	}
	return h, nil
}
