package binapi

// Regenerating bindings for another VPP release.
//
// telcni builds against the bindings go.fd.io/govpp ships for VPP
// 25.10-release. A user who pins another VPP runs `go generate` here on a
// machine where that VPP is installed (its API JSON under
// /usr/share/vpp/api, or VPP_API_DIR): the generator writes bindings for
// exactly the API files Groups draws from into ./vpp, and the imports in
// binapi.go and vppagent/ are then pointed at
// github.com/telcni/telcni/binapi/vpp/<file>. Check then compares the
// running VPP against the regenerated CRCs.
//
// Without the API JSON the recipe says so and does nothing, so that
// `go generate ./...` stays harmless on machines without VPP.

//go:generate sh -c "d=${VPP_API_DIR:-/usr/share/vpp/api}; if [ ! -d \"$d\" ]; then echo \"binapi: no VPP API JSON at $d (install VPP or set VPP_API_DIR); nothing generated\"; exit 0; fi; go run go.fd.io/govpp/cmd/binapi-generator@v0.13.0 --input=\"$d\" --output-dir=./vpp --import-prefix=github.com/telcni/telcni/binapi/vpp memclnt vpe vlib interface interface_types ip_types ethernet_types fib_types l2 ip arp ip6_nd memif vhost_user virtio_types af_packet af_xdp avf"
