#!/usr/bin/env bash
# Build Traefik from its module source on the Go module proxy, for the local cluster's
# ingress controller (hack/local-cluster.sh). `go install` refuses it (its go.mod has
# replace directives), and a plain build of the source zip fails in three places, each
# patched here and nowhere else:
#   1. its fork of go-http-auth is pinned to a pseudo-version the proxy refuses: use the
#      fork's older version (the basic-auth middleware, unused here, is the only user);
#   2. lego's DNS-provider registry pulls 14 provider modules the proxy refuses: ACME DNS
#      challenges are useless in a test cluster, so the registry is a stub that says so;
#   3. its nested module pkg/config/dynamic/ext is not in the zip: it holds two empty
#      extension structs, recreated below.
# usage: hack/traefik/build.sh OUTPUT   (VERSION=v3.7.13 by default)
set -euo pipefail
out=${1:?usage: $0 OUTPUT}
VERSION=${TRAEFIK_VERSION:-v3.7.13}
HTTP_AUTH=github.com/containous/go-http-auth@v0.4.1-0.20200324110947-a37a7636d23e
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
t0=$SECONDS

src=$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "github.com/traefik/traefik/v3@$VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -d "$src" ] || { echo "traefik/build.sh: could not download traefik $VERSION" >&2; exit 1; }
cp -r "$src" "$work/traefik"
chmod -R u+w "$work/traefik"
cd "$work/traefik"

# 1. go-http-auth
go mod edit -replace "github.com/abbot/go-http-auth=$HTTP_AUTH"
# 2. lego's DNS providers
mkdir -p pkg/provider/acme/nodns
cp "$here/nodns.go.txt" pkg/provider/acme/nodns/nodns.go
sed -i 's#"github.com/go-acme/lego/v5/providers/dns"#dns "github.com/traefik/traefik/v3/pkg/provider/acme/nodns"#' pkg/provider/acme/provider.go
grep -q 'acme/nodns"' pkg/provider/acme/provider.go || { echo "traefik/build.sh: lego import not found in $VERSION" >&2; exit 1; }
# 3. the nested ext module
mkdir -p pkg/config/dynamic/ext
cp "$here/ext.go.txt" pkg/config/dynamic/ext/ext.go
printf 'module github.com/traefik/traefik/dynamic/ext\n\ngo 1.24.0\n' >pkg/config/dynamic/ext/go.mod

mkdir -p "$(dirname "$out")"
CGO_ENABLED=0 GOFLAGS=-mod=mod go build -p "${TRAEFIK_BUILD_JOBS:-2}" -trimpath \
  -ldflags "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$VERSION" \
  -o "$out.tmp" ./cmd/traefik
mv "$out.tmp" "$out"
echo "traefik/build.sh: built traefik $VERSION into $out in $((SECONDS - t0))s" >&2
