#!/usr/bin/env bash
# telcni demo: the agent on its embedded default (bbolt, no Kubernetes), the
# example networks, three pods as network namespaces, each ADDed through the
# plugin binary exactly as a runtime calls it. Everything lives in
# namespaces the demo creates (the stand-in node NICs too) and is removed on
# exit, even when interrupted. Nothing is sent outside this machine.
#
# When a VPP is found (scripts/vpp/find.sh: VPP_BIN, PATH, /opt/vpp, or the
# copy `make deps` unpacked into .cache/vpp) the demo also starts a private
# VPP (deploy/vpp/startup-nohuge.conf, sockets in its work dir) and shows
# the fast path: two pods with memif interfaces on an L2 and an L3 network,
# pinging each other through VPP with the Go memif endpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-$PWD/bin}
PFX=telcni-demo
NODE=$PFX-node
WORK=
AGENT_PID=
VPP_PID=
MEMIF_PIDS=()
PODS=(du-1 du-2 cu-1)
FAST_PODS=(fp-1 fp-2)

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

cleanup() {
	set +e
	for pid in "${MEMIF_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
	[[ -n $AGENT_PID ]] && kill "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null
	[[ -n $VPP_PID ]] && kill "$VPP_PID" 2>/dev/null && wait "$VPP_PID" 2>/dev/null
	for p in "${PODS[@]}" "${FAST_PODS[@]}" conflict; do ip netns del "$PFX-$p" 2>/dev/null; done
	ip netns del "$NODE" 2>/dev/null
	[[ -n $WORK ]] && rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[[ $EUID -eq 0 ]] || { echo "demo: needs root (network namespaces)" >&2; exit 1; }
cleanup # a previous demo killed with -9 may have left namespaces behind
WORK=$(mktemp -d /tmp/telcni-demo.XXXXXX)
SOCK=$WORK/agent.sock

say "stand-in node: netns $NODE with NICs tcdemo0, tcdemo1 (veth pairs; never the machine's eth0)"
ip netns add "$NODE"
for nic in tcdemo0 tcdemo1; do
	ip -n "$NODE" link add "$nic" type veth peer name "${nic}p"
	ip -n "$NODE" link set "$nic" up
	ip -n "$NODE" link set "${nic}p" up
done

mkdir -p "$WORK/networks"
cp deploy/examples/*.yaml deploy/examples/*.json "$WORK/networks/"
VPP_BIN=$(./scripts/vpp/find.sh)
VPP_DIR=$WORK/vpp
if [[ -n $VPP_BIN ]]; then
	say "VPP: $VPP_BIN, private instance (no hugepages), sockets in $VPP_DIR"
	mkdir -p "$VPP_DIR"
	# The no-hugepage config, with every socket and file in the demo's dir.
	sed -e "s#/run/vpp#$VPP_DIR#g; s#/var/log/vpp#$VPP_DIR#g" deploy/vpp/startup-nohuge.conf >"$VPP_DIR/startup.conf"
	printf 'api-segment { prefix telcni-demo }\n' >>"$VPP_DIR/startup.conf"
	"$VPP_BIN" -c "$VPP_DIR/startup.conf" >"$VPP_DIR/vpp.out" 2>&1 &
	VPP_PID=$!
	cp deploy/vpp/examples/demo-l2.json deploy/vpp/examples/demo-l3.json "$WORK/networks/"
else
	say "VPP: none found, the fast-path part (memif pods through VPP) is skipped"
	echo "  set VPP_BIN to a VPP 25.10 binary, or run 'make deps' with ../shared/vpp present (see deploy/vpp/README.md)"
fi

say "agent: state in $WORK/state, networks from deploy/examples${VPP_BIN:+ and deploy/vpp/examples/demo-*}"
"$BIN/telcni-agent" -socket "$SOCK" -state-dir "$WORK/state" -legacy-state-dir "" -networks-dir "$WORK/networks" \
	-host-netns "/var/run/netns/$NODE" -log-level info -run-dir "$WORK/run" \
	-vpp-api-socket "$VPP_DIR/api.sock" -vpp-stats-socket "$VPP_DIR/stats.sock" 2>"$WORK/agent.log" &
AGENT_PID=$!
for _ in $(seq 50); do [[ -S $SOCK ]] && break; sleep 0.1; done
[[ -S $SOCK ]] || { cat "$WORK/agent.log"; echo "demo: agent did not start" >&2; exit 1; }

# cni CMD POD ANNOTATION: run the plugin as a runtime does (CNI_* env, stdin config).
cni() {
	local cmd=$1 pod=$2 annotation=${3:-}
	local conf
	conf=$(printf '{"cniVersion":"1.1.0","name":"telcni","type":"telcni","agentSocket":"%s","runtimeConfig":{"io.kubernetes.cri.pod-annotations":{"k8s.v1.cni.cncf.io/networks":%s}}}' \
		"$SOCK" "$(printf '%s' "$annotation" | jq -Rs .)")
	CNI_COMMAND=$cmd CNI_CONTAINERID="ctr-$pod" CNI_NETNS="/var/run/netns/$PFX-$pod" CNI_IFNAME=eth0 \
		CNI_ARGS="K8S_POD_NAMESPACE=ran;K8S_POD_NAME=$pod" CNI_PATH="$BIN" "$BIN/telcni" <<<"$conf"
}

declare -A ANNOTATION=(
	[du-1]='[{"name":"fronthaul","interface":"fh0","ips":["10.20.0.11/24"]},{"name":"userplane","interface":"up0"}]'
	[du-2]='[{"name":"fronthaul","interface":"fh0","ips":["10.20.0.12/24"]},{"name":"userplane","interface":"up0","ips":["10.40.0.12/24"]},{"name":"oam"}]'
	[cu-1]='userplane@up0,oam@oam0'
)

say "ADD three pods through the plugin binary"
for p in "${PODS[@]}"; do
	ip netns add "$PFX-$p"
	printf '%-5s %s\n' "$p" "${ANNOTATION[$p]}"
	cni ADD "$p" "${ANNOTATION[$p]}" >"$WORK/$p.result"
done

say "pods, interfaces, addresses (telcnictl pods)"
"$BIN/telcnictl" -socket "$SOCK" pods

say "traffic between pods (ping from inside the namespaces)"
FAILED=0
check_ping() {
	local from=$1 to=$2 dev=$3 family=${4:-4} ip
	ip=$(ip -n "$PFX-$to" -o "-$family" addr show dev "$dev" scope global | awk '{print $4}' | cut -d/ -f1)
	if [[ -n $ip ]] && ip netns exec "$PFX-$from" ping "-$family" -c 2 -W 2 -q "$ip" >/dev/null; then
		printf '  %-5s -> %-5s %-5s %-12s ok\n' "$from" "$to" "$dev" "$ip"
	else
		printf '  %-5s -> %-5s %-5s %-12s FAILED\n' "$from" "$to" "$dev" "$ip"
		FAILED=$((FAILED + 1))
	fi
}
check_ping du-1 du-2 fh0
check_ping du-2 du-1 fh0
check_ping du-1 du-2 fh0 6
check_ping du-1 cu-1 up0
check_ping cu-1 du-2 up0
check_ping cu-1 du-2 net1
((FAILED == 0)) || { echo "demo: $FAILED pings failed" >&2; exit 1; }

# ---- the fast path: memif pods through VPP ----
fastpath() {
	say "fast path: wait for the agent to reach VPP"
	local ok=
	for _ in $(seq 100); do
		if "$BIN/telcnictl" -socket "$SOCK" vpp show version >"$WORK/vpp-version" 2>/dev/null; then ok=1; break; fi
		sleep 0.1
	done
	[[ -n $ok ]] || { tail -20 "$VPP_DIR/vpp.out" "$WORK/agent.log"; echo "demo: the agent did not reach VPP" >&2; exit 1; }
	echo "  $(head -1 "$WORK/vpp-version")"

	declare -A FAST_ANN=(
		[fp-1]='[{"name":"demo-fast-l2","interface":"m0","ips":["10.70.0.11/24"]},{"name":"demo-fast-l3","interface":"m1","ips":["10.71.0.11/24"]}]'
		[fp-2]='[{"name":"demo-fast-l2","interface":"m0","ips":["10.70.0.12/24"]},{"name":"demo-fast-l3","interface":"m1","ips":["10.71.0.12/24"]}]'
	)
	say "fast path: ADD two pods with a memif interface on an L2 (bridge domain) and an L3 (routed) VPP network"
	for p in "${FAST_PODS[@]}"; do
		ip netns add "$PFX-$p"
		printf '%-5s %s\n' "$p" "${FAST_ANN[$p]}"
		cni ADD "$p" "${FAST_ANN[$p]}" >"$WORK/$p.result"
		jq -r '.interfaces[] | select(.socketPath) | "      \(.name): memif socket \(.socketPath)"' "$WORK/$p.result"
	done
	sock_of() { jq -r --arg i "$2" '.interfaces[] | select(.name==$i) | .socketPath' "$WORK/$1.result"; }

	say "fast path: fp-2 runs the Go memif responder on both interfaces; fp-1 pings it through VPP"
	local p mac n=0
	for ifc in m0:10.70.0.12 m1:10.71.0.12; do
		n=$((n + 1))
		"$BIN/telcni-memif" respond -socket "$(sock_of fp-2 "${ifc%%:*}")" -netns "/var/run/netns/$PFX-fp-2" \
			-ip "${ifc#*:}" -mac "02:fe:00:00:02:0$n" -interrupt >"$WORK/fp-2-${ifc%%:*}.out" 2>&1 &
		MEMIF_PIDS+=($!)
	done
	local failed=0
	for leg in "m0 10.70.0.11 10.70.0.12 10.70.0.12 L2" "m1 10.71.0.11 10.71.0.12 10.71.0.1 L3"; do
		read -r ifc src dst via kind <<<"$leg"
		echo "  $kind: fp-1 $ifc $src -> fp-2 $dst (next hop $via)"
		if ! timeout 30 "$BIN/telcni-memif" ping -socket "$(sock_of fp-1 "$ifc")" -netns "/var/run/netns/$PFX-fp-1" \
			-ip "$src" -mac 02:fe:00:00:01:01 -dst "$dst" -via "$via" -count 3 2>"$WORK/ping-$ifc.err" | sed 's/^/    /'; then
			cat "$WORK/ping-$ifc.err" >&2
			failed=$((failed + 1))
		fi
	done
	((failed == 0)) || { echo "demo: $failed fast-path pings failed" >&2; exit 1; }

	say "fast path: pod fp-1 followed into VPP (telcnictl pod ran/fp-1), and VPP's own view (telcnictl vpp show interface)"
	"$BIN/telcnictl" -socket "$SOCK" pod ran/fp-1
	"$BIN/telcnictl" -socket "$SOCK" vpp show interface

	say "fast path: DEL both pods; VPP keeps nothing of theirs"
	for pid in "${MEMIF_PIDS[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
	MEMIF_PIDS=()
	for p in "${FAST_PODS[@]}"; do cni DEL "$p" && echo "  DEL $p ok"; done
	local ifs socks bds
	ifs=$("$BIN/telcnictl" -socket "$SOCK" vpp show interface | grep -c memif || true)
	socks=$("$BIN/telcnictl" -socket "$SOCK" vpp show memif | grep -c 'telcni-' || true)
	bds=$("$BIN/telcnictl" -socket "$SOCK" vpp show bridge-domain | awk 'NR>1 && $1 ~ /^[0-9]+$/ && $1 != 0' | wc -l)
	echo "  left in VPP: memif interfaces $ifs, telcni memif sockets $socks, bridge domains $bds"
	((ifs + socks + bds == 0)) || { echo "demo: VPP objects left behind" >&2; exit 1; }
}

say "a fourth pod asks for du-1's fixed address: refused, naming the holder, nothing left behind"
ip netns add "$PFX-conflict"
if cni ADD conflict '[{"name":"oam"},{"name":"fronthaul","ips":["10.20.0.11/24"]}]' >"$WORK/conflict.out"; then
	echo "demo: conflicting ADD succeeded" >&2; exit 1
fi
jq -r '"  CNI error \(.code) - \(.msg)"' "$WORK/conflict.out"
echo "  links left in the refused pod: $(ip -n "$PFX-conflict" -o link show | grep -vc ' lo:' || true)"

say "IPAM (telcnictl ipam)"
"$BIN/telcnictl" -socket "$SOCK" ipam

say "DEL everything"
for p in "${PODS[@]}"; do cni DEL "$p" && echo "  DEL $p ok"; done
cni DEL du-1 && echo "  DEL du-1 again ok (idempotent)"

say "what is left"
"$BIN/telcnictl" -socket "$SOCK" ipam
records=$("$BIN/telcnictl" -socket "$SOCK" pods | tail -n +2 | wc -l)
links=0
for p in "${PODS[@]}"; do links=$((links + $(ip -n "$PFX-$p" -o link show | grep -vc ' lo:' || true))); done
echo "  attachment records: $records   pod links (besides lo): $links"
[[ $records -eq 0 && $links -eq 0 ]] || { echo "demo: something was left behind" >&2; exit 1; }

if [[ -n $VPP_BIN ]]; then
	fastpath
	say "demo complete: every pod reached its peers (kernel paths and through VPP), nothing leaked"
else
	say "demo complete: every pod reached its peers, nothing leaked (fast path skipped: no VPP)"
fi
