package vppagent

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"go.fd.io/govpp/api"
)

// Counters are one pod interface's counters from VPP's stats segment.
type Counters struct {
	ContainerID string
	IfName      string
	Network     string
	SwIfIndex   uint32
	RxPackets   uint64
	RxBytes     uint64
	TxPackets   uint64
	TxBytes     uint64
	Drops       uint64 // packets VPP dropped on this interface
	RxErrors    uint64
	TxErrors    uint64
}

// StatsSource is the part of govpp's stats connection Counters reads.
type StatsSource interface {
	GetInterfaceStats(*api.InterfaceStats) error
}

// PodCounters reads the counters of every recorded pod interface.
func (m *Manager) PodCounters() ([]Counters, error) {
	s := m.conn.Stats()
	if s == nil {
		return nil, &UnavailableError{Socket: m.conn.cfg.StatsSocket, Err: errors.New("stats not connected")}
	}
	return podCounters(s, m.recs.list())
}

func podCounters(s StatsSource, recs []Record) ([]Counters, error) {
	var is api.InterfaceStats
	if err := s.GetInterfaceStats(&is); err != nil {
		return nil, fmt.Errorf("read interface stats: %w", err)
	}
	byIdx := make(map[uint32]api.InterfaceCounters, len(is.Interfaces))
	for _, c := range is.Interfaces {
		byIdx[c.InterfaceIndex] = c
	}
	out := make([]Counters, 0, len(recs))
	for _, r := range recs {
		c, ok := byIdx[r.SwIfIndex]
		if !ok {
			continue
		}
		out = append(out, Counters{
			ContainerID: r.Spec.ContainerID, IfName: r.Spec.IfName, Network: r.Spec.Network.Name,
			SwIfIndex: r.SwIfIndex,
			RxPackets: c.Rx.Packets, RxBytes: c.Rx.Bytes, TxPackets: c.Tx.Packets, TxBytes: c.Tx.Bytes,
			Drops: c.Drops, RxErrors: c.RxErrors, TxErrors: c.TxErrors,
		})
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].ContainerID+out[i].IfName < out[j].ContainerID+out[j].IfName
	})
	return out, nil
}

// WritePrometheus writes counters in the Prometheus text exposition
// format, so that whichever HTTP endpoint the agent grows can serve them
// without telcni depending on a metrics library here.
func WritePrometheus(w io.Writer, cs []Counters) error {
	type metric struct {
		name, help string
		get        func(Counters) uint64
	}
	ms := []metric{
		{"telcni_vpp_pod_rx_packets_total", "Packets VPP received from the pod interface.", func(c Counters) uint64 { return c.RxPackets }},
		{"telcni_vpp_pod_rx_bytes_total", "Bytes VPP received from the pod interface.", func(c Counters) uint64 { return c.RxBytes }},
		{"telcni_vpp_pod_tx_packets_total", "Packets VPP sent to the pod interface.", func(c Counters) uint64 { return c.TxPackets }},
		{"telcni_vpp_pod_tx_bytes_total", "Bytes VPP sent to the pod interface.", func(c Counters) uint64 { return c.TxBytes }},
		{"telcni_vpp_pod_drops_total", "Packets VPP dropped on the pod interface.", func(c Counters) uint64 { return c.Drops }},
		{"telcni_vpp_pod_rx_errors_total", "Receive errors on the pod interface.", func(c Counters) uint64 { return c.RxErrors }},
		{"telcni_vpp_pod_tx_errors_total", "Transmit errors on the pod interface.", func(c Counters) uint64 { return c.TxErrors }},
	}
	var b strings.Builder
	for _, m := range ms {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s counter\n", m.name, m.help, m.name)
		for _, c := range cs {
			fmt.Fprintf(&b, "%s{container_id=%q,interface=%q,network=%q} %d\n", m.name, c.ContainerID, c.IfName, c.Network, m.get(c))
		}
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write metrics: %w", err)
	}
	return nil
}
