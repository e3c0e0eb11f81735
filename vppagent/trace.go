package vppagent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.fd.io/govpp/binapi/interface_types"

	"github.com/telcni/telcni/attach"
)

// Describe traces a recorded pod interface to its VPP objects for
// telcnictl pod (the agent's InterfaceDescriber): sw_if_index, VPP's name
// for it, the tag, the memif socket or vhost-user path, its state and its
// counters from the stats segment. What VPP cannot tell (it is down) is
// left out and the error says why; the Manager's own record is still
// returned.
func (p *Path) Describe(ctx context.Context, rec *attach.Record) (map[string]any, error) {
	return p.m.Describe(ctx, rec.ContainerID+"/"+rec.IfName)
}

// Describe is Path.Describe for the interface key "<container>/<ifname>".
func (m *Manager) Describe(ctx context.Context, key string) (map[string]any, error) {
	r, ok := m.recs.get(key)
	if !ok {
		return nil, fmt.Errorf("VPP manager serves no interface %s", key)
	}
	out := map[string]any{
		"swIfIndex": r.SwIfIndex,
		"tag":       r.Spec.Tag(),
		"kind":      string(r.Spec.Network.Kind),
	}
	if r.Socket != "" {
		out["socket"] = r.Socket
	}
	if mi := r.DeviceInfo.Memif; mi != nil {
		out["podSocket"] = mi.Path
		out["memifMode"] = mi.Mode
	}
	if vh := r.DeviceInfo.Vhost; vh != nil {
		out["vhostUserPath"] = vh.Path
		out["vhostUserPodMode"] = vh.Mode
	}
	if r.Spec.Network.L3 {
		out["l3Table"] = r.Spec.Network.Table
	} else {
		out["bridgeDomain"] = r.Spec.Network.BridgeDomain()
	}
	c, err := m.conn.API()
	if err != nil {
		return out, err
	}
	ifs, err := (&vpp{conn: c}).dumpInterfaces(ctx)
	if err != nil {
		return out, err
	}
	found := false
	for _, i := range ifs {
		if i.Tag != r.Spec.Tag() {
			continue
		}
		found = true
		out["swIfIndex"] = i.Index
		out["name"] = i.Name
		out["adminUp"] = i.Flags&interface_types.IF_STATUS_API_FLAG_ADMIN_UP != 0
		out["linkUp"] = i.Flags&interface_types.IF_STATUS_API_FLAG_LINK_UP != 0
	}
	if !found {
		return out, fmt.Errorf("VPP has no interface tagged %s", r.Spec.Tag())
	}
	cs, err := m.PodCounters()
	if err != nil {
		return out, fmt.Errorf("counters: %w", err)
	}
	for _, cn := range cs {
		if cn.ContainerID+"/"+cn.IfName == key {
			out["counters"] = map[string]any{
				"rxPackets": cn.RxPackets, "rxBytes": cn.RxBytes, "txPackets": cn.TxPackets, "txBytes": cn.TxBytes,
				"drops": cn.Drops, "rxErrors": cn.RxErrors, "txErrors": cn.TxErrors,
			}
		}
	}
	return out, nil
}

// AuditInterface says whether VPP has the interface of a recorded pod
// interface (by its tag) for the agent's IPAM audit; an error when VPP
// cannot be asked.
func (p *Path) AuditInterface(ctx context.Context, rec *attach.Record) (bool, error) {
	c, err := p.m.conn.API()
	if err != nil {
		return false, err
	}
	ifs, err := (&vpp{conn: c}).dumpInterfaces(ctx)
	if err != nil {
		return false, err
	}
	tag := (&PodInterface{ContainerID: rec.ContainerID, IfName: rec.IfName}).Tag()
	for _, i := range ifs {
		if i.Tag == tag {
			return true, nil
		}
	}
	return false, nil
}

// Orphans lists VPP pod interfaces (telcni-tagged) whose tag belongs to
// none of recorded ("<container>/<ifname>", the agent's records), for the
// agent's IPAM audit. Reconcile removes them at the next connect.
func (p *Path) Orphans(ctx context.Context, recorded map[string]bool) ([]string, error) {
	c, err := p.m.conn.API()
	if err != nil {
		return nil, err
	}
	ifs, err := (&vpp{conn: c}).dumpInterfaces(ctx)
	if err != nil {
		return nil, err
	}
	tags := map[string]bool{}
	for k := range recorded {
		cid, ifname, _ := strings.Cut(k, "/")
		tags[(&PodInterface{ContainerID: cid, IfName: ifname}).Tag()] = true
	}
	var out []string
	for _, i := range ifs {
		if !isPodTag(i.Tag) || tags[i.Tag] {
			continue
		}
		out = append(out, fmt.Sprintf("interface %s (sw_if_index %d, tag %s)", i.Name, i.Index, i.Tag))
	}
	return out, nil
}

// isPodTag is true for the tag of a pod interface, not of a network's or
// an uplink's object.
func isPodTag(tag string) bool {
	rest, ok := strings.CutPrefix(tag, tagPrefix)
	if !ok {
		return false
	}
	for _, p := range []string{"net:", "uplink:", "acl:"} {
		if strings.HasPrefix(rest, p) {
			return false
		}
	}
	return true
}

// Trace is a VPP packet trace of one pod interface.
type Trace struct {
	Interface string `json:"interface"` // VPP's name for it
	SwIfIndex uint32 `json:"swIfIndex"`
	HwIfIndex int    `json:"hwIfIndex,omitempty"`
	Tag       string `json:"tag"`
	// Node is the input node traced (memif-input, vhost-user-input).
	Node string `json:"node"`
	// Wanted is how many of the interface's packets were asked for;
	// Complete says they were all seen before the wait ended.
	Wanted   int  `json:"wanted"`
	Complete bool `json:"complete"`
	// Traced is how many packets VPP traced on the node, for every
	// interface of its kind; Packets are the interface's.
	Traced  int           `json:"traced"`
	Packets []TracePacket `json:"packets"`
	Took    string        `json:"took"`
}

// TracePacket is one packet's trace: VPP's text for it, node by node.
type TracePacket struct {
	Number int    `json:"number"` // VPP's packet number in the trace buffer
	Trace  string `json:"trace"`
}

// TraceBusyError refuses a trace while another runs on the same VPP (VPP
// has one trace buffer).
type TraceBusyError struct{ Socket string }

func (e *TraceBusyError) Error() string {
	return "another packet trace is running on the VPP at " + e.Socket + "; try again when it ends"
}

// HTTPStatus is 409 Conflict.
func (e *TraceBusyError) HTTPStatus() int { return http.StatusConflict }

// traceLocks holds one mutex per VPP API socket: VPP has one trace buffer,
// so traces of one VPP run one at a time.
var traceLocks sync.Map

// TracePackets is Manager.Trace for a recorded interface (the agent's
// PacketTracer).
func (p *Path) TracePackets(ctx context.Context, rec *attach.Record, count int, wait time.Duration) (any, error) {
	t, err := p.m.Trace(ctx, rec.ContainerID+"/"+rec.IfName, count, wait)
	var ue *UnavailableError
	if errors.As(err, &ue) {
		return nil, unavailable{err}
	}
	return t, err
}

// unavailable answers 503 (VPP down).
type unavailable struct{ error }

func (u unavailable) HTTPStatus() int { return http.StatusServiceUnavailable }
func (u unavailable) Unwrap() error   { return u.error }

// tracePoll is how often a running trace is read.
const tracePoll = 200 * time.Millisecond

// Trace traces the packets of the pod interface key ("<container>/<ifname>")
// through VPP's own CLI: clear trace; trace add <input node> N; wait until
// count of the interface's packets are traced or wait ends; show trace;
// keep the packets whose trace names the interface (its sw_if_index, its
// hw_if_index on the input node, or its name: received on it, or sent to
// it from another interface of the same kind); clear trace. VPP traces
// every interface of the node's kind, so N is larger than count.
func (m *Manager) Trace(ctx context.Context, key string, count int, wait time.Duration) (*Trace, error) {
	r, ok := m.recs.get(key)
	if !ok {
		return nil, fmt.Errorf("VPP manager serves no interface %s", key)
	}
	c, err := m.conn.API()
	if err != nil {
		return nil, err
	}
	mu, _ := traceLocks.LoadOrStore(m.conn.Socket(), &sync.Mutex{})
	if !mu.(*sync.Mutex).TryLock() {
		return nil, &TraceBusyError{Socket: m.conn.Socket()}
	}
	defer mu.(*sync.Mutex).Unlock()
	v := &vpp{conn: c}
	t := &Trace{Tag: r.Spec.Tag(), Wanted: max(count, 1), Packets: []TracePacket{}, Node: "memif-input"}
	if r.Spec.Network.Kind == KindVhostUser {
		t.Node = "vhost-user-input"
	}
	ifs, err := v.dumpInterfaces(ctx)
	if err != nil {
		return nil, err
	}
	found := false
	for _, i := range ifs {
		if i.Tag == t.Tag {
			t.Interface, t.SwIfIndex, found = i.Name, i.Index, true
		}
	}
	if !found {
		return nil, fmt.Errorf("VPP has no interface tagged %s", t.Tag)
	}
	if out, err := v.cli(ctx, "show hardware-interfaces "+t.Interface); err == nil {
		t.HwIfIndex = hwIndex(out, t.Interface)
	}
	match := packetMatcher(t.Interface, t.SwIfIndex, t.HwIfIndex)
	limit := min(max(t.Wanted*20, 100), 5000)
	start := time.Now()
	if _, err := v.cli(ctx, "clear trace"); err != nil {
		return nil, err
	}
	// Whatever happens, VPP stops tracing and its buffer is emptied.
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := v.cli(cctx, "clear trace"); err != nil {
			m.log.Warn("clear trace after a packet trace", "err", err)
		}
	}()
	if out, err := v.cli(ctx, fmt.Sprintf("trace add %s %d", t.Node, limit)); err != nil {
		return nil, err
	} else if strings.TrimSpace(out) != "" {
		return nil, fmt.Errorf("trace add %s: %s", t.Node, strings.TrimSpace(out))
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(tracePoll)
	defer tick.Stop()
	var mine []TracePacket
	for done := false; !done; {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline.C:
			done = true
		case <-tick.C:
		}
		out, err := v.cli(ctx, fmt.Sprintf("show trace max %d", limit))
		if err != nil {
			return nil, err
		}
		all := parseTrace(out)
		t.Traced = len(all)
		mine = mine[:0]
		for _, p := range all {
			if match(p.Trace) {
				mine = append(mine, p)
			}
		}
		if len(mine) >= t.Wanted || len(all) >= limit {
			done = true
		}
	}
	t.Complete = len(mine) >= t.Wanted
	if len(mine) > t.Wanted {
		mine = mine[:t.Wanted]
	}
	t.Packets = append(t.Packets, mine...)
	t.Took = time.Since(start).Round(time.Millisecond).String()
	return t, nil
}

var packetLine = regexp.MustCompile(`^Packet ([0-9]+)$`)

// parseTrace splits show trace's output into packets.
func parseTrace(out string) []TracePacket {
	var pkts []TracePacket
	var cur *TracePacket
	var b strings.Builder
	flush := func() {
		if cur != nil {
			cur.Trace = strings.TrimSpace(b.String())
			pkts = append(pkts, *cur)
			cur = nil
		}
		b.Reset()
	}
	for _, line := range strings.Split(out, "\n") {
		trimmed := strings.TrimSpace(line)
		if m := packetLine.FindStringSubmatch(trimmed); m != nil {
			flush()
			n, _ := strconv.Atoi(m[1])
			cur = &TracePacket{Number: n}
			continue
		}
		if strings.HasPrefix(trimmed, "---") && strings.Contains(trimmed, "thread") {
			flush()
			continue
		}
		if cur != nil {
			b.WriteString(strings.TrimRight(line, " \t"))
			b.WriteByte('\n')
		}
	}
	flush()
	return pkts
}

// packetMatcher is true for a packet trace that concerns the interface:
// its sw_if_index (ethernet-input, l2-input, l2-output, ip4-lookup...), its
// hw_if_index (memif-input, vhost-user-input), or its name (<name>-output,
// <name>-tx).
func packetMatcher(name string, sw uint32, hw int) func(string) bool {
	pats := []string{
		fmt.Sprintf(`sw[-_]if[-_]index[ :=]*%d\b`, sw),
		`(^|[^A-Za-z0-9/])` + regexp.QuoteMeta(name) + `($|[^0-9])`,
	}
	if hw > 0 {
		pats = append(pats, fmt.Sprintf(`hw[-_]if[-_]index[ :=]*%d\b`, hw))
	}
	re := regexp.MustCompile(strings.Join(pats, "|"))
	return re.MatchString
}

// hwIndex reads the hw_if_index ("Idx") of name from show
// hardware-interfaces: "<name>  <idx>  up  <name>".
func hwIndex(out, name string) int {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == name {
			if n, err := strconv.Atoi(f[1]); err == nil {
				return n
			}
		}
	}
	return -1
}
