package vppagent

import (
	"net/http/httptest"
	"strings"
	"testing"

	"go.fd.io/govpp/api"
)

type fakeStats struct{ is api.InterfaceStats }

func (f fakeStats) GetInterfaceStats(s *api.InterfaceStats) error { *s = f.is; return nil }

func TestPodCountersAndPrometheus(t *testing.T) {
	src := fakeStats{api.InterfaceStats{Interfaces: []api.InterfaceCounters{
		{InterfaceIndex: 1, Rx: api.InterfaceCounterCombined{Packets: 10, Bytes: 640}, Tx: api.InterfaceCounterCombined{Packets: 7, Bytes: 448}, Drops: 3},
		{InterfaceIndex: 2, Rx: api.InterfaceCounterCombined{Packets: 99}},
	}}}
	recs := []Record{
		{Spec: PodInterface{ContainerID: "c1", IfName: "fh0", Network: Network{Name: "fh"}}, SwIfIndex: 1},
		{Spec: PodInterface{ContainerID: "c2", IfName: "fh0", Network: Network{Name: "fh"}}, SwIfIndex: 5}, // gone from VPP
	}
	cs, err := podCounters(src, recs)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 1 || cs[0].RxPackets != 10 || cs[0].TxBytes != 448 || cs[0].Drops != 3 {
		t.Fatalf("counters %+v", cs)
	}
	var b strings.Builder
	if err := WritePrometheus(&b, cs); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"# TYPE telcni_vpp_pod_rx_packets_total counter",
		`telcni_vpp_pod_rx_packets_total{container_id="c1",interface="fh0",network="fh"} 10`,
		`telcni_vpp_pod_drops_total{container_id="c1",interface="fh0",network="fh"} 3`,
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("metrics lack %q:\n%s", want, b.String())
		}
	}
}

func TestMetricsHandlerWithoutStats(t *testing.T) {
	m := fakeManager(newFakeVPP(), t.TempDir())
	rec := httptest.NewRecorder()
	m.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "telcni_vpp_up 0") {
		t.Errorf("metrics without stats: %d\n%s", rec.Code, rec.Body.String())
	}
}
