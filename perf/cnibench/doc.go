// Package cnibench measures CNI ADD+DEL latency of a pod with three
// interfaces (ipvlan, VLAN, macvlan; one fixed address) made by telcni,
// next to the same three interfaces made by the reference plugins
// (containernetworking/plugins ipvlan, vlan and macvlan with host-local
// IPAM), both invoked through libcni as a runtime would, in one run inside
// the kernel guest (ipvlan and VLAN are not in this host's kernel).
//
// Run it with `make bench-kernel`; the figures to compare are the ratios.
//
// `make bench-cni` runs the host-kernel version (bench_host_test.go): three
// macvlan interfaces by telcni in attachment mode and in pod mode against
// the reference macvlan + host-local chain, plus a 100-pod burst.
package cnibench
