#!/usr/bin/env bash
# Installs DPDK's dpdk-testpmd and the net_memif PMD into .cache/dpdk for the
# memif interop tests and benchmark, without installing the dpdk-dev package
# (whose dependency chain pulls in a systemd upgrade). Idempotent: a second
# run with the tree already unpacked does nothing.
#
# Layout: .cache/dpdk/root is the unpacked file tree; the tests run
# root/usr/bin/dpdk-testpmd with LD_LIBRARY_PATH=root/usr/lib/x86_64-linux-gnu
# and load PMDs with -d root/usr/lib/x86_64-linux-gnu/dpdk/pmds-23.0.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=$PWD/.cache/dpdk
root=$dir/root
libdir=$root/usr/lib/x86_64-linux-gnu
stamp=$dir/.installed-22.11
if [[ -f $stamp && -x $root/usr/bin/dpdk-testpmd ]]; then
	exit 0
fi
export DEBIAN_FRONTEND=noninteractive
mkdir -p "$dir/debs" "$root"
# apt's _apt user must be able to write the download directory.
chmod 0777 "$dir/debs" || true
if ! apt-cache show dpdk-dev >/dev/null 2>&1; then
	apt-get update -qq
fi
# System libraries testpmd links against: ordinary, small Debian packages.
sys_pkgs=(libnuma1 libpcap0.8 libbsd0 libjansson4 libelf1 libfdt1 libibverbs1 zlib1g libarchive13 libatomic1 ibverbs-providers)
need=()
for p in "${sys_pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if ((${#need[@]})); then
	apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

fetch() { # fetch PKG...: download and unpack Debian packages into $root
	(cd "$dir/debs" && apt-get download "$@" >/dev/null)
	for p in "$@"; do
		for f in "$dir"/debs/"${p}"_*.deb; do dpkg -x "$f" "$root"; done
	done
}
fetch dpdk-dev librte-net-memif23 librte-mempool-ring23

# Resolve the shared-library closure of testpmd and the PMDs we load:
# librte_foo_bar.so.23 comes from librte-foo-bar23 (librte-common-mlx5-23 when
# the name ends in a digit). Loop until every DT_NEEDED is found.
syslibs=$(ldconfig -p)
for _ in $(seq 1 10); do
	missing=()
	for bin in "$root/usr/bin/dpdk-testpmd" "$libdir"/librte_*.so.23* "$libdir"/dpdk/pmds-23.0/librte_net_memif.so.23* "$libdir"/dpdk/pmds-23.0/librte_mempool_ring.so.23*; do
		[[ -e $bin ]] || continue
		while read -r lib; do
			[[ -e $libdir/$lib || -e $libdir/dpdk/pmds-23.0/$lib ]] && continue
			grep -q "^[[:space:]]*$lib " <<<"$syslibs" && continue
			missing+=("$lib")
		done < <(readelf -d "$bin" 2>/dev/null | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p')
	done
	((${#missing[@]})) || break
	pkgs=()
	for lib in $(printf '%s\n' "${missing[@]}" | sort -u); do
		case $lib in
		librte_*.so.23)
			base=${lib%.so.23}; base=${base//_/-}
			[[ $base =~ [0-9]$ ]] && pkgs+=("$base-23") || pkgs+=("${base}23") ;;
		*) echo "deps-memif: $lib is not a librte library and is not installed" >&2; exit 1 ;;
		esac
	done
	fetch "${pkgs[@]}"
done
# Every library testpmd and the memif PMD need must resolve.
for bin in "$root/usr/bin/dpdk-testpmd" "$libdir"/dpdk/pmds-23.0/librte_net_memif.so.23.0; do
	if LD_LIBRARY_PATH=$libdir ldd "$bin" | grep -q 'not found'; then
		echo "deps-memif: unresolved libraries for $bin:" >&2
		LD_LIBRARY_PATH=$libdir ldd "$bin" | grep 'not found' >&2
		exit 1
	fi
done
touch "$stamp"
echo "deps-memif: dpdk-testpmd ready in $root/usr/bin"
