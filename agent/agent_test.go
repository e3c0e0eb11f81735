package agent

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/cni"
	"github.com/telcni/telcni/internal/netnstest"
	"github.com/telcni/telcni/ipam"
)

func TestPodModeMakesEveryInterfaceAndTrafficFlows(t *testing.T) {
	e := newEnv(t)
	a, b := e.pod("du-a"), e.pod("du-b")
	ra := e.mustAdd(a, "eth0", podConf(`[{"name":"fronthaul","interface":"fh0","ips":["10.20.0.5/24"],"default-route":["10.20.0.1"]},{"name":"userplane"}]`))
	e.mustAdd(b, "eth0", podConf(`fronthaul@fh0,ran/userplane`))

	if len(ra.Interfaces) != 2 || ra.Interfaces[0].Name != "fh0" || ra.Interfaces[1].Name != "net1" ||
		ra.Interfaces[0].Sandbox != a.netns {
		t.Fatalf("interfaces %+v", ra.Interfaces)
	}
	var got []string
	for _, ip := range ra.IPs {
		got = append(got, ip.Address.String())
	}
	if len(got) != 3 || got[0] != "10.20.0.5/24" || !strings.HasPrefix(got[1], "fd00:20::") || !strings.HasPrefix(got[2], "10.40.0.") {
		t.Errorf("addresses %v, want the static 10.20.0.5/24, a dynamic fd00:20::/64 and a 10.40.0.0/24 address", got)
	}
	if *ra.IPs[0].Interface != 0 || *ra.IPs[len(ra.IPs)-1].Interface != 1 {
		t.Errorf("ip interface indexes wrong: %v", ra.IPs)
	}
	// pod b got a dynamic fronthaul address from the range.
	recB, _ := e.agent.get(recordKey(b.cid, "eth0"))
	fhB := recB.Interfaces[0].IPs[0].Address.Addr()
	if !netip.MustParsePrefix("10.20.0.0/24").Contains(fhB) || fhB.Less(netip.MustParseAddr("10.20.0.100")) {
		t.Errorf("pod b fronthaul address %v not from the dynamic range", fhB)
	}
	upB := recB.Interfaces[1].IPs[0].Address.Addr()
	ctx := context.Background()
	for _, dst := range []netip.Addr{fhB, upB} {
		if _, err := netnstest.UDPEcho(ctx, a.netns, b.netns, dst); err != nil {
			t.Errorf("a -> b %v: %v", dst, err)
		}
	}
	if _, err := netnstest.UDPEcho(ctx, b.netns, a.netns, netip.MustParseAddr("10.20.0.5")); err != nil {
		t.Errorf("b -> a static address: %v", err)
	}
	if r := e.call("CHECK", a, "eth0", podConf("")); r.Error != nil {
		t.Errorf("CHECK: %+v", r.Error)
	}
	st := NetworkStatus(recB)
	if st[0].Name != "fronthaul" || st[0].Interface != "fh0" || len(st[0].IPs) != 2 {
		t.Errorf("network status %+v", st)
	}
	for _, p := range []pod{a, b} {
		if r := e.call("DEL", p, "eth0", podConf("")); r.Error != nil {
			t.Fatalf("DEL: %+v", r.Error)
		}
	}
	e.assertClean(a, b)
}

func TestAttachmentModeNamedAndInline(t *testing.T) {
	e := newEnv(t)
	p := e.pod("upf")
	conf := `{"cniVersion":"0.4.0","name":"up-attach","type":"telcni","network":"userplane","defaultRoute":true,
		"runtimeConfig":{"ips":["10.40.0.9/24"],"mac":"02:00:00:40:00:09"}}`
	res := e.call("ADD", p, "eth0", conf)
	if res.Error != nil {
		t.Fatal(res.Error)
	}
	if !strings.Contains(string(res.Result), `"cniVersion":"0.4.0"`) || !strings.Contains(string(res.Result), `"10.40.0.9/24"`) ||
		!strings.Contains(string(res.Result), `"mac":"02:00:00:40:00:09"`) {
		t.Errorf("0.4.0 result: %s", res.Result)
	}
	inline := `{"cniVersion":"1.0.0","name":"fh-inline","type":"telcni","path":"macvlan","master":"up0","mode":"private",
		"ipam":{"subnets":[{"cidr":"10.60.0.0/24"}]}}`
	if r := e.call("ADD", p, "fh1", inline); r.Error != nil {
		t.Fatal(r.Error)
	}
	if l := netnstest.Links(t, p.netns); len(l) != 2 {
		t.Errorf("links %v", l)
	}
	for _, c := range []struct{ ifn, conf string }{{"eth0", conf}, {"fh1", inline}} {
		if r := e.call("CHECK", p, c.ifn, c.conf); r.Error != nil {
			t.Errorf("CHECK %s: %+v", c.ifn, r.Error)
		}
		if r := e.call("DEL", p, c.ifn, c.conf); r.Error != nil {
			t.Errorf("DEL %s: %+v", c.ifn, r.Error)
		}
	}
	e.assertClean(p)
}

func TestStaticConflictExactlyOneWinsAndNamesHolder(t *testing.T) {
	e := newEnv(t)
	pods := []pod{e.pod("cu-1"), e.pod("cu-2"), e.pod("cu-3")}
	conf := podConf(`[{"name":"fronthaul","ips":["10.20.0.7/24"]}]`)
	replies := make([]string, len(pods))
	codes := make([]uint, len(pods))
	var wg sync.WaitGroup
	for i, p := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r := e.call("ADD", p, "eth0", conf); r.Error != nil {
				codes[i], replies[i] = r.Error.Code, r.Error.Msg
			}
		}()
	}
	wg.Wait()
	winners := 0
	var winner string
	for i, c := range codes {
		if c == 0 {
			winners++
			winner = pods[i].name
		}
	}
	if winners != 1 {
		t.Fatalf("%d winners: %v %v", winners, codes, replies)
	}
	for i, c := range codes {
		if c == 0 {
			continue
		}
		if c != attach.CodeAddressInUse || !strings.Contains(replies[i], "10.20.0.7 is already held by ran/"+winner) ||
			!strings.Contains(replies[i], "cid-"+winner) {
			t.Errorf("loser %s: code %d %q", pods[i].name, c, replies[i])
		}
		if l := netnstest.Links(t, pods[i].netns); len(l) != 0 {
			t.Errorf("loser %s has links %v", pods[i].name, l)
		}
	}
}

func TestAddFailureInSecondInterfaceUndoesFirst(t *testing.T) {
	e := newEnv(t)
	p := e.pod("rollback")
	r := e.call("ADD", p, "eth0", podConf(`[{"name":"fronthaul","ips":["10.20.0.8/24"]},{"name":"broken"}]`))
	if r.Error == nil {
		t.Fatal("ADD with a broken second network succeeded")
	}
	if r.Error.Code != attach.CodeInvalidConfig || !strings.Contains(r.Error.Msg, `interface net2 (network broken)`) ||
		!strings.Contains(r.Error.Msg, `master "nosuch9" not found`) {
		t.Errorf("error %d %q", r.Error.Code, r.Error.Msg)
	}
	e.assertClean(p)
	// The static address is free again: another pod gets it.
	e.mustAdd(e.pod("next"), "eth0", podConf(`[{"name":"fronthaul","ips":["10.20.0.8/24"]}]`))
}

func TestDelIsIdempotent(t *testing.T) {
	e := newEnv(t)
	p := e.pod("del")
	conf := podConf(`fronthaul,userplane`)
	e.mustAdd(p, "eth0", conf)
	for i := 0; i < 2; i++ {
		if r := e.call("DEL", p, "eth0", conf); r.Error != nil {
			t.Fatalf("DEL #%d: %+v", i+1, r.Error)
		}
	}
	e.assertClean(p)
	if r := e.call("DEL", pod{ns: "x", name: "ghost", cid: "never-added", netns: "/var/run/netns/none"}, "eth0", conf); r.Error != nil {
		t.Errorf("DEL of unknown container: %+v", r.Error)
	}
	// netns gone before DEL (the runtime tore the sandbox down first).
	q := e.pod("gone")
	e.mustAdd(q, "eth0", conf)
	if err := netns.DeleteNamed(strings.TrimPrefix(q.netns, "/var/run/netns/")); err != nil {
		t.Fatal(err)
	}
	if r := e.call("DEL", q, "eth0", conf); r.Error != nil {
		t.Fatalf("DEL with netns gone: %+v", r.Error)
	}
	e.assertClean()
}

func TestRetriedAddKeepsAddresses(t *testing.T) {
	e := newEnv(t)
	p := e.pod("retry")
	conf := podConf(`userplane@up0`)
	first := e.mustAdd(p, "eth0", conf)
	second := e.mustAdd(p, "eth0", conf)
	if first.IPs[0].Address.String() != second.IPs[0].Address.String() {
		t.Errorf("retry got %v, first %v", second.IPs[0].Address, first.IPs[0].Address)
	}
	if l := netnstest.Links(t, p.netns); len(l) != 1 {
		t.Errorf("links after retry: %v", l)
	}
	if n := len(e.allocations()); n != 1 {
		t.Errorf("%d allocations after retry", n)
	}
}

func TestGCFreesAttachmentsNotListed(t *testing.T) {
	e := newEnv(t)
	keep, drop1, drop2 := e.pod("keep"), e.pod("drop1"), e.pod("drop2")
	for _, p := range []pod{keep, drop1, drop2} {
		e.mustAdd(p, "eth0", podConf("userplane"))
	}
	other := e.pod("other-config")
	e.mustAdd(other, "eth0", `{"cniVersion":"1.1.0","name":"other","type":"telcni","network":"fronthaul"}`)
	gc := `{"cniVersion":"1.1.0","name":"telcni","type":"telcni","cni.dev/valid-attachments":[{"containerID":"cid-keep","ifname":"eth0"}]}`
	if r := e.call("GC", pod{}, "", gc); r.Error != nil {
		t.Fatal(r.Error)
	}
	recs := strings.Join(e.records(), " ")
	if recs != "cid-keep/eth0 cid-other-config/eth0" {
		t.Errorf("records after GC: %s", recs)
	}
	for _, p := range []pod{drop1, drop2} {
		if l := netnstest.Links(t, p.netns); len(l) != 0 {
			t.Errorf("GC left links in %s: %v", p.name, l)
		}
	}
	if n := len(e.allocations()); n != 3 { // keep: 1; other: v4 + v6
		t.Errorf("%d allocations after GC, want 3", n)
	}
}

func TestAgentRestartBetweenAddAndDel(t *testing.T) {
	e := newEnv(t)
	p := e.pod("restart")
	conf := podConf(`fronthaul,userplane`)
	e.mustAdd(p, "eth0", conf)
	e.restart()
	if r := e.call("CHECK", p, "eth0", conf); r.Error != nil {
		t.Errorf("CHECK after restart: %+v", r.Error)
	}
	if r := e.call("DEL", p, "eth0", conf); r.Error != nil {
		t.Fatal(r.Error)
	}
	e.assertClean(p)
}

func TestRecoverUndoesInterruptedAdd(t *testing.T) {
	e := newEnv(t)
	p := e.pod("crash")
	e.mustAdd(p, "eth0", podConf(`fronthaul`))
	// Simulate a crash between reserve and ready: mark the record pending.
	err := e.store.Update(func(tx *ipam.Tx) error {
		var rec Attachment
		if err := tx.GetRecord("cid-crash/eth0", &rec); err != nil {
			return err
		}
		rec.State = StatePending
		return tx.PutRecord(rec.Key, &rec)
	})
	if err != nil {
		t.Fatal(err)
	}
	e.restart()
	e.assertClean(p)
}

func TestCheckDetectsDrift(t *testing.T) {
	e := newEnv(t)
	p := e.pod("drift")
	e.mustAdd(p, "eth0", podConf(`userplane@up0`))
	h := netnstest.Handle(t, p.netns)
	l, _ := h.LinkByName("up0")
	_ = h.LinkSetDown(l)
	r := e.call("CHECK", p, "eth0", podConf(""))
	if r.Error == nil || r.Error.Code != attach.CodeCheckFailed || !strings.Contains(r.Error.Msg, "up0") {
		t.Fatalf("CHECK after link down: %+v", r.Error)
	}
	if r := e.call("CHECK", e.pod("unknown"), "eth0", podConf("")); r.Error == nil || r.Error.Code != attach.CodeUnknownContainer {
		t.Errorf("CHECK unknown: %+v", r.Error)
	}
}

func TestBadInputGivesFieldNamedErrors(t *testing.T) {
	e := newEnv(t)
	p := e.pod("bad")
	cases := []struct {
		conf string
		code uint
		want []string
	}{
		{podConf(`[{"name":"fronthaul","ips":["10.0.0.300/24"]},{"name":"Nope!"}]`), attach.CodeInvalidConfig,
			[]string{`networks[0].ips[0]: "10.0.0.300/24" is not an IP prefix`, `networks[1].name: "Nope!" is not a valid network name`}},
		{podConf(`[{"name":"missing"}]`), attach.CodeInvalidConfig, []string{`networks[0].name: "missing" is not a network known in namespace "ran"`}},
		{podConf(`[{"name":"fronthaul","ips":["10.99.0.5/24"]}]`), attach.CodeInvalidConfig, []string{"10.99.0.5/24 is in none of its subnets"}},
		{podConf(``), attach.CodeInvalidConfig, []string{"pod asks for no network"}},
		{`{"cniVersion":"1.1.0","name":"x","type":"telcni","network":"userplane","runtimeConfig":{"ips":["banana"],"mac":"01:00:00:00:00:01"}}`,
			attach.CodeInvalidConfig, []string{`runtimeConfig.ips[0]: "banana" is not an IP prefix`}},
		{`{"cniVersion":"1.1.0","name":"x","type":"telcni","path":"macvlan","master":"up0","vlan":7,"colour":"red"}`,
			attach.CodeInvalidConfig, []string{`colour: is not a known field`}},
		{`{"cniVersion":"1.1.0","name":"x","type":"telcni","path":"macvlan","master":"up0","vlan":7}`,
			attach.CodeInvalidConfig, []string{`vlan: 7 is not used by path macvlan`}},
		{`{"cniVersion":"1.1.0","name":"x","type":"bridge"}`, attach.CodeInvalidConfig, []string{`type: "bridge" is not "telcni"`}},
		{`{"cniVersion":`, attach.CodeDecodeFailure, []string{"decode network config"}},
	}
	for _, c := range cases {
		r := e.call("ADD", p, "eth0", c.conf)
		if r.Error == nil {
			t.Errorf("ADD %s succeeded", c.conf)
			continue
		}
		if r.Error.Code != c.code {
			t.Errorf("ADD %s: code %d, want %d (%s)", c.conf, r.Error.Code, c.code, r.Error.Msg)
		}
		for _, w := range c.want {
			if !strings.Contains(r.Error.Msg, w) {
				t.Errorf("ADD %s: error %q lacks %q", c.conf, r.Error.Msg, w)
			}
		}
	}
	e.assertClean(p)
	if r := e.call("ADD", pod{cid: "c", netns: "/var/run/netns/absent-x"}, "eth0", podConf("userplane")); r.Error == nil ||
		r.Error.Code != attach.CodeInvalidEnv || !strings.Contains(r.Error.Msg, "CNI_NETNS") {
		t.Errorf("absent netns: %+v", r.Error)
	}
}

func TestStatus(t *testing.T) {
	e := newEnv(t)
	if r := e.call("STATUS", pod{}, "", `{"cniVersion":"1.1.0","name":"telcni","type":"telcni"}`); r.Error != nil {
		t.Fatal(r.Error)
	}
	e.writeNet("zz-bad.json", `{"name":"bad","path":"nope"}`)
	r := e.call("STATUS", pod{}, "", `{"cniVersion":"1.1.0","name":"telcni","type":"telcni"}`)
	if r.Error == nil || r.Error.Code != attach.CodeNotAvailable || !strings.Contains(r.Error.Msg, "zz-bad.json") {
		t.Fatalf("STATUS with a broken network file: %+v", r.Error)
	}
	_ = os.Remove(e.netDir + "/zz-bad.json")
}

func TestRetriedAddWithOtherNetworksFreesTheOld(t *testing.T) {
	e := newEnv(t)
	p := e.pod("changed")
	e.mustAdd(p, "eth0", podConf(`fronthaul,userplane`))
	// The runtime retries with another annotation (the pod was recreated
	// with the same sandbox): what only the first attempt had is freed.
	e.mustAdd(p, "eth0", podConf(`userplane`))
	for _, a := range e.allocations() {
		if a.Network == "fronthaul" {
			t.Errorf("fronthaul address %v still held after the retry dropped that network", a.Address)
		}
	}
	if r := e.call("DEL", p, "eth0", podConf("")); r.Error != nil {
		t.Fatal(r.Error)
	}
	e.assertClean(p)
}

func TestAuditFreesAddressesNoRecordOwns(t *testing.T) {
	e := newEnv(t)
	kept := e.pod("kept")
	e.mustAdd(kept, "eth0", podConf(`fronthaul`))
	// An allocation without a record (as a bug or a hand-edited store could
	// leave): the next start frees it and keeps the owned ones.
	n, err := e.agent.networks.Network(context.Background(), "ran", "userplane")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.Update(func(tx *ipam.Tx) error {
		_, err := tx.Allocate(n, ipam.Holder{ContainerID: "ghost", IfName: "net1"}, nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	e.restart()
	allocs := e.allocations()
	if len(allocs) != 2 { // kept's fronthaul v4 + v6
		t.Fatalf("allocations after audit: %+v", allocs)
	}
	for _, a := range allocs {
		if a.Holder.ContainerID != "cid-kept" {
			t.Errorf("audit kept %+v", a)
		}
	}
}

func TestMetricsCountCallsAndState(t *testing.T) {
	e := newEnv(t)
	p := e.pod("metrics")
	e.mustAdd(p, "eth0", podConf(`fronthaul`))
	e.call("ADD", e.pod("bad"), "eth0", podConf(`[{"name":"nope"}]`))
	var b strings.Builder
	if err := e.agent.WriteMetrics(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		`telcni_cni_calls_total{command="ADD",code="0"} 1`,
		`telcni_cni_calls_total{command="ADD",code="7"} 1`,
		`telcni_cni_call_seconds_count{command="ADD",path="macvlan"} 1`, `telcni_cni_call_seconds_count{command="ADD",path="none"} 1`,
		`telcni_attachments{state="ready"} 1`,
		`telcni_ipam_addresses_held{network="fronthaul"} 2`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %q:\n%s", want, out)
		}
	}
}

// podman's CNI backend passes --ip and --mac-address as CNI_ARGS IP= and
// MAC=: a bare address takes its subnet's prefix length, the capabilities
// win when both are given, and a bad value is refused naming CNI_ARGS.
func TestAttachmentModeCNIArgsIPAndMAC(t *testing.T) {
	e := newEnv(t)
	p := e.pod("podman")
	conf := `{"cniVersion":"1.0.0","name":"up","type":"telcni","network":"userplane"}`
	call := func(ifName, args, conf string) *cni.Reply {
		return e.agent.Dispatch(context.Background(), &cni.Call{Command: "ADD", ContainerID: p.cid, Netns: p.netns, IfName: ifName,
			Args: "IgnoreUnknown=1;K8S_POD_NAME=podman;IP=" + args, Config: json.RawMessage(conf)})
	}
	r := call("eth0", "10.40.0.33;MAC=02:00:00:40:00:33", conf)
	if r.Error != nil || !strings.Contains(string(r.Result), `"10.40.0.33/24"`) || !strings.Contains(string(r.Result), `"mac":"02:00:00:40:00:33"`) {
		t.Fatalf("ADD with CNI_ARGS IP and MAC: %s %+v", r.Result, r.Error)
	}
	withCaps := `{"cniVersion":"1.0.0","name":"up","type":"telcni","network":"userplane","runtimeConfig":{"ips":["10.40.0.44/24"]}}`
	if r := call("eth1", "10.40.0.45", withCaps); r.Error != nil || !strings.Contains(string(r.Result), `"10.40.0.44/24"`) {
		t.Errorf("capabilities and CNI_ARGS: %s %+v, want the capability's address", r.Result, r.Error)
	}
	if r := call("eth2", "192.0.2.9", conf); r.Error == nil || r.Error.Code != attach.CodeInvalidConfig || !strings.Contains(r.Error.Msg, `CNI_ARGS IP: "192.0.2.9" is in no subnet`) {
		t.Errorf("an address outside the network: %+v", r.Error)
	}
}

// runtimeConfig.deviceID (Multus, from the device plugin) only means
// something on a network that takes a device.
func TestDeviceIDOnlyForDevices(t *testing.T) {
	e := newEnv(t)
	p := e.pod("dev")
	conf := `{"cniVersion":"1.0.0","name":"up","type":"telcni","network":"userplane","runtimeConfig":{"deviceID":"0000:3b:02.1"}}`
	r := e.call("ADD", p, "eth0", conf)
	if r.Error == nil || r.Error.Code != attach.CodeInvalidConfig || !strings.Contains(r.Error.Msg, `runtimeConfig.deviceID: "0000:3b:02.1" is given but network userplane (path macvlan) takes no device`) {
		t.Fatalf("deviceID on a macvlan network: %+v", r.Error)
	}
	e.assertClean(p)
}
