#!/usr/bin/env bash
# telcni demo: the agent on its embedded default (bbolt, no Kubernetes), the
# example networks, three pods as network namespaces, each ADDed through the
# plugin binary exactly as a runtime calls it. Everything lives in
# namespaces the demo creates (the stand-in node NICs too) and is removed on
# exit, even when interrupted. Nothing is sent outside this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-$PWD/bin}
PFX=telcni-demo
NODE=$PFX-node
WORK=
AGENT_PID=
PODS=(du-1 du-2 cu-1)

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

cleanup() {
	set +e
	[[ -n $AGENT_PID ]] && kill "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null
	for p in "${PODS[@]}" conflict; do ip netns del "$PFX-$p" 2>/dev/null; done
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

say "agent: state in $WORK/state, networks from deploy/examples"
"$BIN/telcni-agent" -socket "$SOCK" -state-dir "$WORK/state" -networks-dir deploy/examples \
	-host-netns "/var/run/netns/$NODE" -log-level info 2>"$WORK/agent.log" &
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
say "demo complete: every pod reached its peers, nothing leaked"
