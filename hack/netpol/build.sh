#!/usr/bin/env bash
# Build kube-network-policies (kubernetes-sigs) from its module source on the Go module
# proxy, for the local cluster's NetworkPolicy enforcement (hack/netpol/cluster.sh).
# It sends the first packet of each connection to a netfilter queue, where a userspace
# loop evaluates the policies. Upstream emits that with the nftables `queue` expression
# (nft_queue), which kernels built without CONFIG_NFT_QUEUE (ours) refuse, so every rule
# sync fails. One patch, here and nowhere else (xt-nfqueue.patch): the same rules send to
# the queue through the xtables NFQUEUE target via nft_compat, which those kernels have
# (it is what `iptables-nft -j NFQUEUE` uses). Everything else is upstream's.
# usage: hack/netpol/build.sh OUTPUT   (NETPOL_VERSION=v0.8.0 by default)
set -euo pipefail
out=${1:?usage: $0 OUTPUT}
VERSION=${NETPOL_VERSION:-v0.8.0}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
t0=$SECONDS

src=$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/kube-network-policies@$VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -d "$src" ] || { echo "netpol/build.sh: could not download kube-network-policies $VERSION" >&2; exit 1; }
cp -r "$src" "$work/knp"
chmod -R u+w "$work/knp"
cd "$work/knp"
git apply -p1 "$here/xt-nfqueue.patch" || { echo "netpol/build.sh: xt-nfqueue.patch does not apply to $VERSION" >&2; exit 1; }
if grep -q 'expr.Queue{Num: uint16(c.config.QueueID)}' pkg/networkpolicy/controller.go; then
  echo "netpol/build.sh: an nft queue expression is left in $VERSION" >&2; exit 1
fi

mkdir -p "$(dirname "$out")"
CGO_ENABLED=0 GOFLAGS=-mod=mod go build -p "${NETPOL_BUILD_JOBS:-2}" -trimpath -ldflags "-s -w" \
  -o "$out.tmp" ./cmd
mv "$out.tmp" "$out"
echo "netpol/build.sh: built kube-network-policies $VERSION (xt NFQUEUE) into $out in $((SECONDS - t0))s" >&2
