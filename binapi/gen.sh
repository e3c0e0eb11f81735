#!/bin/sh
# Regenerates Go bindings for the API files binapi.go draws from, from an
# installed VPP's API JSON (VPP_API_DIR, default /usr/share/vpp/api), into
# ./vpp. Run by `go generate` in this directory; see gen.go.
set -eu
d=${VPP_API_DIR:-/usr/share/vpp/api}
if [ ! -d "$d" ]; then
	echo "binapi: no VPP API JSON at $d (install VPP or set VPP_API_DIR); nothing generated"
	exit 0
fi
exec go tool binapi-generator --input="$d" --output-dir=./vpp \
	--import-prefix=github.com/telcni/telcni/binapi/vpp \
	memclnt vpe vlib interface interface_types ip_types ethernet_types fib_types \
	l2 ip arp ip6_nd memif vhost_user virtio_types af_packet af_xdp avf acl acl_types
