// Package guestdemo is the demo's kernel-guest half: the networks this
// host's kernel cannot make (ipvlan, VLAN) next to macvlan, three pods,
// real traffic, and a clean teardown. `make demo-guest` runs it verbosely.
package guestdemo

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"testing"
	"text/tabwriter"

	"github.com/vishvananda/netlink"

	"github.com/telcni/telcni/agent"
	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/cni"
	"github.com/telcni/telcni/internal/agenttest"
	"github.com/telcni/telcni/internal/netnstest"
	"github.com/telcni/telcni/ipam"
	"github.com/telcni/telcni/kernelguest"
	"github.com/telcni/telcni/kernelpath"
	"github.com/telcni/telcni/netsource"
)

var demoNetworks = map[string]string{
	"fronthaul.json": `{"name":"fronthaul","path":"ipvlan","master":"nic0","mode":"l2","ipam":{"subnets":[{"cidr":"10.20.0.0/24","rangeStart":"10.20.0.100"},{"cidr":"fd00:20::/64"}]}}`,
	"userplane.json": `{"name":"userplane","path":"vlan","master":"nic1","vlan":100,"ipam":{"subnets":[{"cidr":"10.40.0.0/24","rangeStart":"10.40.0.100"}]}}`,
	"oam.json":       `{"name":"oam","path":"macvlan","master":"nic1","ipam":{"subnets":[{"cidr":"10.60.0.0/24"}]}}`,
}

func TestGuestDemo(t *testing.T) {
	kernelguest.Require(t)
	node := netnstest.New(t)
	netnstest.Uplink(t, node, "nic0")
	netnstest.Uplink(t, node, "nic1")
	dir := agenttest.NetworkDir(t, demoNetworks)
	store := agenttest.Store(t)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	kernel, err := kernelpath.New(log, node)
	if err != nil {
		t.Fatal(err)
	}
	defer kernel.Close()
	paths := map[api.PathKind]attach.Path{}
	for _, k := range kernelpath.Kinds() {
		paths[k] = kernel
	}
	a := agent.New(agent.Config{Store: store, Networks: netsource.NewDir(dir), Paths: paths, Log: log})
	ctx := context.Background()

	pods := []struct{ name, annotation string }{
		{"du-1", `[{"name":"fronthaul","interface":"fh0","ips":["10.20.0.11/24"]},{"name":"userplane","interface":"up0"}]`},
		{"du-2", `[{"name":"fronthaul","interface":"fh0","ips":["10.20.0.12/24"]},{"name":"userplane","interface":"up0","ips":["10.40.0.12/24"]},{"name":"oam"}]`},
		{"cu-1", `userplane@up0,oam@oam0`},
	}
	netns := map[string]string{}
	call := func(cmd, pod, ann string) *cni.Reply {
		annJSON, _ := json.Marshal(map[string]string{api.NetworksAnnotation: ann})
		conf := `{"cniVersion":"1.1.0","name":"telcni","type":"telcni","runtimeConfig":{"` + agent.PodAnnotationsKey + `":` + string(annJSON) + `}}`
		return a.Dispatch(ctx, &cni.Call{Command: cmd, ContainerID: "ctr-" + pod, Netns: netns[pod], IfName: "eth0",
			Args: "K8S_POD_NAMESPACE=ran;K8S_POD_NAME=" + pod, Config: json.RawMessage(conf)})
	}
	for _, p := range pods {
		netns[p.name] = netnstest.New(t)
		if r := call("ADD", p.name, p.annotation); r.Error != nil {
			t.Fatalf("ADD %s: %s", p.name, r.Error.Msg)
		}
	}
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POD\tIFACE\tNETWORK\tPATH\tADDRESSES\tMAC")
	addr := map[string]netip.Addr{}
	for _, p := range pods {
		var rec agent.Attachment
		if err := store.View(func(tx *ipam.Tx) error { return tx.GetRecord("ctr-"+p.name+"/eth0", &rec) }); err != nil {
			t.Fatal(err)
		}
		for _, r := range rec.Interfaces {
			var ips []string
			for _, ip := range r.IPs {
				ips = append(ips, ip.Address.String())
			}
			addr[p.name+"/"+r.IfName] = r.IPs[0].Address.Addr()
			fmt.Fprintf(tw, "ran/%s\t%s\t%s\t%s\t%s\t%s\n", p.name, r.IfName, r.Network.Name, r.Network.Path, strings.Join(ips, ","), r.Interface.MAC)
		}
	}
	tw.Flush()
	t.Logf("pods, interfaces, addresses:\n%s", b.String())
	nh := netnstest.Handle(t, node)
	nic0, _ := nh.LinkByName("nic0")
	t.Logf("node: nic0 MAC %s (the ipvlan pods share it); host VLAN link nic1.100 exists: %v",
		nic0.Attrs().HardwareAddr, linkExists(nh, "nic1.100"))

	for _, hop := range [][3]string{{"du-1", "du-2", "fh0"}, {"du-2", "du-1", "fh0"}, {"du-1", "cu-1", "up0"}, {"cu-1", "du-2", "up0"}, {"cu-1", "du-2", "net1"}} {
		dst := addr[hop[1]+"/"+hop[2]]
		if _, err := netnstest.UDPEcho(ctx, netns[hop[0]], netns[hop[1]], dst); err != nil {
			t.Errorf("%s -> %s %s %s: %v", hop[0], hop[1], hop[2], dst, err)
		} else {
			t.Logf("%-5s -> %-5s %-5s %-12s ok (UDP echo)", hop[0], hop[1], hop[2], dst)
		}
	}
	for _, p := range pods {
		if r := call("DEL", p.name, ""); r.Error != nil {
			t.Fatalf("DEL %s: %s", p.name, r.Error.Msg)
		}
	}
	var left []ipam.Allocation
	var records []string
	if err := store.View(func(tx *ipam.Tx) error { left, records = tx.Allocations(), tx.RecordKeys(); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 || len(records) != 0 {
		t.Errorf("after DEL: addresses %v, records %v left", left, records)
	}
	for _, p := range pods {
		links, err := netnstest.Handle(t, netns[p.name]).LinkList()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range links {
			if l.Attrs().Name != "lo" {
				t.Errorf("pod %s still has %s after DEL", p.name, l.Attrs().Name)
			}
		}
	}
	// The userplane network is still defined: its host link stays for the
	// next pod, as DANM's netwatcher kept it.
	if !linkExists(nh, "nic1.100") {
		t.Error("nic1.100 removed although the userplane network is still defined")
	}
	t.Logf("after DEL: no address, record or pod link left; nic1.100 kept for the defined userplane network")
}

func linkExists(h *netlink.Handle, name string) bool {
	_, err := h.LinkByName(name)
	return err == nil
}
