#!/usr/bin/env bash
# Installs the Debian packages every telcni build and test needs.
# Idempotent: packages already present are not reinstalled.
set -euo pipefail
need=()
for pkg in iproute2 iputils-ping jq ca-certificates make git; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
command -v go >/dev/null || { echo "deps-base: Go is required (/usr/local/go/bin/go)" >&2; exit 1; }
