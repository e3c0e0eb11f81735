package vppagent

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
)

func TestPathAttachDetachCheck(t *testing.T) {
	f := newFakeVPP()
	m := fakeManager(f, t.TempDir())
	p := NewPath(m)
	ctx := context.Background()
	n, err := api.ParseNetwork([]byte(`{"name":"fh","namespace":"ran","path":"memif","vpp":{"routed":true,"queues":2},
		"ipam":{"subnets":[{"cidr":"10.4.0.0/24","gateway":"10.4.0.1"}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	req := &attach.Request{ContainerID: cidA, IfName: "fh0", Netns: "/var/run/netns/x", Network: n,
		IPs: []attach.IPConfig{{Address: pfx("10.4.0.9/24"), Gateway: netip.MustParseAddr("10.4.0.1")}}}
	ifc, err := p.Attach(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	di := ifc.DeviceInfo
	if di == nil || di.Type != api.DeviceInfoMemif || di.Memif == nil || di.Memif.Role != "client" || di.Memif.Mode != "ethernet" || di.Memif.Path == "" {
		t.Fatalf("device-info %+v", di)
	}
	if tag := ifc.State["vppTag"]; len(tag) > maxTag || !strings.HasPrefix(tag, "telcni:"+cidA[:44]) || !strings.HasSuffix(tag, ":fh0") {
		t.Errorf("state %v", ifc.State)
	}
	if f.routes["0/10.4.0.9/32"] == 0 {
		t.Errorf("no route to the pod: %v", f.routes)
	}
	rec := &attach.Record{Request: *req, Interface: *ifc}
	if err := p.Check(ctx, rec); err != nil {
		t.Errorf("CHECK of a healthy interface: %v", err)
	}
	// The agent restarts: its record, handed over by Retain, is all the
	// new Manager knows, and DEL finds the interface from it.
	m = restartedManager(f, t.TempDir())
	p = NewPath(m)
	if err := p.Retain(ctx, []*attach.Record{rec}); err != nil {
		t.Fatal(err)
	}
	if err := p.Detach(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if tags, bds, socks := f.ours(); len(tags)+len(bds)+len(socks) != 0 {
		t.Errorf("after Detach: %v %v %v", tags, bds, socks)
	}
	if err := p.Check(ctx, rec); attach.CodeOf(err) != attach.CodeCheckFailed {
		t.Errorf("CHECK of a removed interface: %v (code %d)", err, attach.CodeOf(err))
	}
	// VPP down: ADD fails with 11 naming the socket, Ready says why.
	m.conn.setState(nil, nil, "", nil, errors.New("connection refused"))
	_, err = p.Attach(ctx, req)
	if attach.CodeOf(err) != attach.CodeTryAgainLater || p.Ready() == nil {
		t.Errorf("ADD with VPP down: %v (code %d)", err, attach.CodeOf(err))
	}
}

func TestPathRetainFollowsAgentRecords(t *testing.T) {
	f := newFakeVPP()
	m := fakeManager(f, t.TempDir())
	p := NewPath(m)
	ctx := context.Background()
	n, err := api.ParseNetwork([]byte(`{"name":"fh","path":"memif"}`))
	if err != nil {
		t.Fatal(err)
	}
	keep := &attach.Request{ContainerID: cidA, IfName: "fh0", Netns: "/var/run/netns/a", Network: n}
	gone := &attach.Request{ContainerID: cidB, IfName: "fh0", Netns: "/var/run/netns/b", Network: n}
	for _, r := range []*attach.Request{keep, gone} {
		if _, err := p.Attach(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	// The agent restarts and no longer has gone.
	m = restartedManager(f, t.TempDir())
	p = NewPath(m)
	if err := p.Retain(ctx, []*attach.Record{{Request: *keep}}); err != nil {
		t.Fatal(err)
	}
	recs := m.Records()
	if len(recs) != 1 || recs[0].Spec.ContainerID != cidA {
		t.Fatalf("records after Retain: %+v", recs)
	}
	tags, _, socks := f.ours()
	keepSpec, _ := specFromRequest(keep)
	if len(tags) != 1 || tags[0] != keepSpec.Tag() || len(socks) != 1 {
		t.Errorf("VPP after Retain: %v %v, want only %s", tags, socks, keepSpec.Tag())
	}
}

func TestPathReadyForNeedsPlugins(t *testing.T) {
	f := newFakeVPP()
	m := fakeManager(f, t.TempDir())
	m.conn.setState(f, nil, "fake", []string{"vhost_user"}, nil)
	p := NewPath(m)
	memifNet, _ := api.ParseNetwork([]byte(`{"name":"a","path":"memif"}`))
	vhostNet, _ := api.ParseNetwork([]byte(`{"name":"b","path":"vhostuser"}`))
	if err := p.ReadyFor(memifNet); err != nil {
		t.Errorf("memif network on a VPP without vhost: %v", err)
	}
	var me *MissingPluginError
	if err := p.ReadyFor(vhostNet); !errors.As(err, &me) {
		t.Errorf("vhostuser network on a VPP without vhost: %v", err)
	}
	_, err := p.Attach(context.Background(), &attach.Request{ContainerID: cidA, IfName: "v0", Network: vhostNet})
	if attach.CodeOf(err) != attach.CodeInvalidConfig {
		t.Errorf("vhost-user ADD without the plugin: %v (code %d)", err, attach.CodeOf(err))
	}
}

func TestSpecGateways(t *testing.T) {
	n, _ := api.ParseNetwork([]byte(`{"name":"r","path":"memif","vpp":{"routed":true}}`))
	gw, other := netip.MustParseAddr("10.4.0.1"), netip.MustParseAddr("10.4.0.254")
	spec, err := specFromRequest(&attach.Request{ContainerID: cidA, IfName: "r0", Network: n,
		IPs: []attach.IPConfig{{Address: pfx("10.4.0.9/24"), Gateway: gw}}, DefaultGateways: []netip.Addr{other, gw}})
	if err != nil {
		t.Fatal(err)
	}
	if len(spec.Gateways) != 2 || spec.Gateways[0] != gw || spec.Gateways[1] != other {
		t.Errorf("gateways %v, want [%s %s]", spec.Gateways, gw, other)
	}
}
