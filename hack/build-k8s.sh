#!/usr/bin/env bash
# Builds Kubernetes and etcd binaries from Go module sources, for machines where
# setup-envtest cannot download and kind cannot run. Results are cached under
# bin/k8s/<version>/ so a second call returns at once.
#
# usage: hack/build-k8s.sh [binary ...]   (default: etcd kube-apiserver)
# binaries: etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-1.37.2}
ETCD_VERSION=${ETCD_VERSION:-3.6.16}
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/bin/k8s/$K8S_VERSION"
work="$root/bin/k8s/.build"
mkdir -p "$out" "$work"
# One build at a time: two callers (say envtest and the local cluster) would otherwise
# write the same module directory and output files at once.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$work/.lock"
  flock 9
fi

want=("$@")
[ ${#want[@]} -gt 0 ] || want=(etcd kube-apiserver)

staging_minor="0.${K8S_VERSION#1.}"

k8s_module() {
  local dir="$work/kubernetes-$K8S_VERSION"
  if [ ! -f "$dir/go.mod" ] || ! grep -q '^replace' "$dir/go.mod"; then
    rm -rf "$dir" && mkdir -p "$dir"
    (
      cd "$dir"
      go mod init scratch/k8s-build >/dev/null 2>&1
      # k8s.io/kubernetes replaces its staging modules with local paths that a module
      # download does not carry; point each at the published module of the same release.
      local gomod
      gomod=$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
      local mods
      mods=$(grep -E '=> \./staging/' "$gomod" | awk '{print $1}' | sort -u)
      {
        echo "require k8s.io/kubernetes v$K8S_VERSION"
        for m in $mods; do echo "replace $m => $m v$staging_minor"; done
      } >>go.mod
      go mod tidy >/dev/null 2>&1 || true
      cat >tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
      # Quiet unless it fails: its "go: finding module" lines would bury the progress.
      go mod tidy 2>"$work/tidy.log" || { cat "$work/tidy.log" >&2; exit 1; }
    )
  fi
  echo "$dir"
}

ldflags() {
  local pkg=k8s.io/component-base/version
  echo "-s -w -X $pkg.gitVersion=v$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2) -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z -X k8s.io/client-go/pkg/version.gitVersion=v$K8S_VERSION"
}

build_etcd() {
  [ -x "$out/etcd" ] && return
  local dir="$work/etcd-$ETCD_VERSION"
  mkdir -p "$dir"
  (
    cd "$dir"
    [ -f go.mod ] || go mod init scratch/etcd-build >/dev/null 2>&1
    go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" >/dev/null 2>&1
    CGO_ENABLED=0 go build -ldflags '-s -w' -o "$out/etcd.tmp" go.etcd.io/etcd/server/v3
  )
  mv "$out/etcd.tmp" "$out/etcd"
}

build_k8s() {
  local bin=$1
  [ -x "$out/$bin" ] && return
  local dir
  dir=$(k8s_module | tail -n1)
  (cd "$dir" && CGO_ENABLED=0 go build -ldflags "$(ldflags)" -o "$out/$bin.tmp" "k8s.io/kubernetes/cmd/$bin")
  mv "$out/$bin.tmp" "$out/$bin"
}

# Rough first-build times on 2 cores with an empty Go cache (a warm cache makes each a few
# seconds of linking); printed so that a long build is not mistaken for a hang.
declare -A first_build=(
  [etcd]="1-2 min" [kube-apiserver]="4-15 min" [kubectl]="1-4 min" [kubelet]="1-4 min"
  [kube-controller-manager]="1-4 min" [kube-scheduler]="1-3 min" [kube-proxy]="1-3 min"
)

for b in "${want[@]}"; do
  start=$(date +%s)
  if [ ! -x "$out/$b" ]; then
    ver=$K8S_VERSION
    [ "$b" = etcd ] && ver=$ETCD_VERSION
    echo "building $b v$ver from Go module sources (first time: ${first_build[$b]:-a few min}; cached in bin/k8s/$K8S_VERSION)" >&2
  fi
  case "$b" in
    etcd) build_etcd ;;
    kube-apiserver|kube-controller-manager|kube-scheduler|kubelet|kube-proxy|kubectl) build_k8s "$b" ;;
    *) echo "unknown binary $b" >&2; exit 2 ;;
  esac
  took=$(( $(date +%s) - start ))
  [ "$took" -gt 1 ] && echo "built $b in ${took}s" >&2
done
echo "$out"
