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

//go:generate sh gen.sh
