package binapi

// Regenerating bindings for another VPP release.
//
// telcni builds against the bindings go.fd.io/govpp ships for VPP
// 25.10-release. A user who pins another VPP runs `go generate` here on a
// machine where that VPP is installed (its API JSON under
// /usr/share/vpp/api/{core,plugins}, or VPP_API_DIR): gen.sh runs the
// binapi-generator pinned in go.mod (a tool line, govpp v0.13.0) for
// exactly the API files Groups draws from, writing ./vpp/<file>. The
// imports in binapi.go and vppagent/ are then pointed at
// github.com/telcni/telcni/binapi/vpp/<file>, and Check compares the
// running VPP against the regenerated CRCs.
//
// Without the API JSON the recipe says so and does nothing, so that
// `go generate ./...` stays harmless on machines without VPP.

//go:generate sh gen.sh
