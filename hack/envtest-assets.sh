#!/usr/bin/env bash
# Prints a directory holding etcd, kube-apiserver and kubectl for envtest
# (KUBEBUILDER_ASSETS). In order: an existing KUBEBUILDER_ASSETS, the cached build in
# bin/k8s/<version>, setup-envtest where it can download, else a build from Go module
# sources (hack/build-k8s.sh; 5 to 15 minutes the first time on 2 cores, depending on the
# machine's load: kube-apiserver alone took 907 s on a loaded fresh machine).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
K8S_VERSION=${K8S_VERSION:-1.37.2}
cached="$root/bin/k8s/$K8S_VERSION"

complete() { [ -x "$1/etcd" ] && [ -x "$1/kube-apiserver" ] && [ -x "$1/kubectl" ]; }

if [ -n "${KUBEBUILDER_ASSETS:-}" ] && complete "$KUBEBUILDER_ASSETS"; then
  echo "$KUBEBUILDER_ASSETS"; exit 0
fi
if complete "$cached"; then
  echo "$cached"; exit 0
fi
if [ "${ENVTEST_TRY_DOWNLOAD:-1}" = 1 ]; then
  dir=$(timeout 120 go run sigs.k8s.io/controller-runtime/tools/setup-envtest@latest \
    use "${K8S_VERSION%.*}.x" --bin-dir "$root/bin/setup-envtest" -p path 2>/dev/null || true)
  if [ -n "$dir" ] && complete "$dir"; then
    echo "$dir"; exit 0
  fi
  echo "setup-envtest could not download; building the control plane from Go module sources" >&2
fi
echo "envtest: building etcd, kube-apiserver and kubectl from Go module sources into bin/k8s/$K8S_VERSION;" \
  "the first time takes 5 to 15 minutes on 2 cores (it has not hung), later runs reuse them" >&2
# Only the path goes to stdout (the Makefile reads it); progress goes to stderr.
"$root/hack/build-k8s.sh" etcd kube-apiserver kubectl >/dev/null
echo "$cached"
