// Package dataplane measures telcni's data paths the way the telco world
// does (RFC 2544 throughput as refined by FD.io CSIT's MLRsearch): for each
// scenario and frame size it searches the highest rate with no loss (NDR)
// and with loss within 0.5 % (PDR), measures latency at 10, 50 and 90 % of
// NDR, and writes a report (markdown tables, PNG plots, every trial in
// JSON).
//
// A scenario is a device under test with two ports a generator attaches to:
//
//   - vpp-l2: VPP configured by telcni's vppagent for two memif pods on an
//     L2 network (one bridge domain);
//   - vpp-l3: the same on a routed network (VPP routes between the pods);
//   - vpp-xconnect: VPP configured by hand with two memif interfaces in an
//     l2 xconnect, the ceiling the telcni paths are compared with;
//   - kernel-veth and kernel-macvlan: a veth pair, and two macvlan
//     interfaces (bridge mode) on one parent, in two network namespaces.
//
// Generators: TRex (stateless, memif ports as the pods' memif clients)
// where it is installed, else a Go memif generator; the Go generator also
// measures latency (a timestamp in each frame) and drives the kernel
// scenarios over AF_PACKET. Traffic is unidirectional, port 0 to port 1;
// everything runs on links and sockets the suite creates.
//
// The suite runs as a test (root, VPP, optionally TRex): `make perf` for
// the full run, `make test-perf` for the short acceptance run in `make
// test`.
package dataplane
