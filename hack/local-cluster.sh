#!/usr/bin/env bash
# A real single-node Kubernetes cluster on this machine, for the end-to-end tests and
# `make demo`. See hack/README-cluster.md.
#
# usage: hack/local-cluster.sh up|down|status|images|load IMAGE.tar...|env
#
#   up      start the cluster (idempotent: what already runs is kept; a second `up`
#           returns in seconds). Writes bin/cluster/kubeconfig.
#   down    stop it and remove every process, namespace, interface, mount, cgroup and
#           file it made (bin/cluster/images and bin/cluster/logs are kept as caches).
#   status  say what runs.
#   images  build the image tarballs the cluster needs (pause, coredns, session-redis:7.0,
#           traefik, kube-network-policies).
#   load    import OCI/Docker image tarballs into the cluster's containerd (or kind).
#   env     print `export KUBECONFIG=...` for the shell.
#
# With a working Docker engine and `kind` on PATH it uses kind (LOCAL_CLUSTER=kind|local
# forces one). Otherwise the node runs in its own network namespace, built from:
#   hack/build-k8s.sh binaries (etcd, kube-*, kubectl), CoreDNS from its Go module,
#   Debian's containerd/runc/CNI plugins, and images made by hack/imagetar.
# Addons: Traefik (hack/traefik; LOCAL_CLUSTER_INGRESS=none skips it) and NetworkPolicy
# enforcement by kube-network-policies (hack/netpol; LOCAL_CLUSTER_NETPOL=none skips it).
# Nothing in the node namespace has a default route: pods reach only the cluster.
# The apiserver is reachable from the host at https://127.0.0.1:$LOCAL_CLUSTER_API_PORT.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
K8S_VERSION=${K8S_VERSION:-1.37.2}
COREDNS_VERSION=${COREDNS_VERSION:-v1.15.0}
KBIN="$root/bin/k8s/$K8S_VERSION"
TOOLS="$root/bin/tools"
D="$root/bin/cluster"          # everything the cluster has lives here
IMAGES="$D/images"             # cached image tarballs (kept by down)
LOGS="$D/logs"                 # logs of the last run (kept by down, wiped by up)
S="$D/state"                   # removed by down
PKI="$S/pki" CFG="$S/config" DATA="$S/data" PIDS="$S/pids" RUN="$S/run"
KUBECONFIG_OUT="$D/kubeconfig"
PRESTATE="$D/prestate"         # what existed before the first up (for down)

NAME=${LOCAL_CLUSTER_NAME:-sessops}
NODE="$NAME-node"
NETNS="$NAME-node"
NSPATH="/var/run/netns/$NETNS"
VETH_HOST="$NAME-h"
VETH_NODE="$NAME-n"
SUBNET_PREFIX=${LOCAL_CLUSTER_SUBNET:-10.213.0}   # node link: .1 host side, .2 node
HOST_IP="$SUBNET_PREFIX.1"
NODE_IP="$SUBNET_PREFIX.2"
POD_CIDR=${LOCAL_CLUSTER_POD_CIDR:-10.214.0.0/16}
NODE_POD_CIDR=${POD_CIDR%.0.0/16}.0.0/24
SERVICE_CIDR=${LOCAL_CLUSTER_SERVICE_CIDR:-10.96.0.0/16}
SVC_PREFIX=${SERVICE_CIDR%.0.0/16}
API_SVC_IP="$SVC_PREFIX.0.1"
DNS_IP="$SVC_PREFIX.0.10"
DOMAIN=cluster.local
API_PORT=${LOCAL_CLUSTER_API_PORT:-16443}
CGROUP_NAME=$NAME              # /sys/fs/cgroup/<hierarchy>/$NAME/daemons holds our daemons
# (containerd puts containers in /sys/fs/cgroup/<hierarchy>/k8s.io/<container id>)
PROVISIONER=sessionops.dev/local-path
# Paths outside bin/cluster that the kubelet (device-plugins socket, container log links),
# containerd (shim sockets), the CNI plugins (result cache) and libmount (utab) create
# wherever they are told otherwise; `down` removes those that did not exist before `up`.
OUTSIDE_PATHS="/var/lib/kubelet /var/lib/cni /var/log/containers /var/log/pods /run/containerd /opt/containerd /etc/cni /run/mount"

PAUSE_IMAGE=registry.k8s.io/pause:3.10
COREDNS_IMAGE=localhost/sessionops/coredns:${COREDNS_VERSION#v}
REDIS_IMAGE=session-redis:7.0

KUBECTL="$KBIN/kubectl"
CTR_SOCK="$RUN/containerd.sock"

# shellcheck source=hack/traefik/cluster.sh
. "$root/hack/traefik/cluster.sh"
# shellcheck source=hack/netpol/cluster.sh
. "$root/hack/netpol/cluster.sh"

log() { printf '%s local-cluster: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

use_kind() {
  case "${LOCAL_CLUSTER:-}" in
    kind) return 0 ;;
    local) return 1 ;;
  esac
  command -v kind >/dev/null 2>&1 && command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1
}

# ---------------------------------------------------------------- kind ----------
KIND_NAME=${KIND_CLUSTER_NAME:-session-operator}

kind_up() {
  mkdir -p "$D"
  if ! kind get clusters 2>/dev/null | grep -qx "$KIND_NAME"; then
    kind create cluster --name "$KIND_NAME" --wait 180s --kubeconfig "$KUBECONFIG_OUT"
  fi
  kind export kubeconfig --name "$KIND_NAME" --kubeconfig "$KUBECONFIG_OUT" >/dev/null
  if [ -x /usr/bin/redis-check-rdb ] && [ -x /usr/bin/redis-cli ] && [ -x /bin/busybox ]; then
    go_tool imagetar ./hack/imagetar
    build_redis_image
    kind load image-archive "$IMAGES/session-redis.tar" --name "$KIND_NAME"
  else
    log "not building $REDIS_IMAGE (needs Debian's redis-server, redis-tools and busybox-static); kind can pull public images"
  fi
  log "kind cluster $KIND_NAME is up; export KUBECONFIG=$KUBECONFIG_OUT"
}

kind_down() {
  kind delete cluster --name "$KIND_NAME" || true
  rm -f "$KUBECONFIG_OUT"
}

kind_status() {
  if kind get clusters 2>/dev/null | grep -qx "$KIND_NAME"; then
    echo "kind cluster $KIND_NAME: present"
    kubectl --kubeconfig "$KUBECONFIG_OUT" get nodes -o wide 2>/dev/null ||
      "$KUBECTL" --kubeconfig "$KUBECONFIG_OUT" get nodes -o wide || true
  else
    echo "kind cluster $KIND_NAME: absent"
    return 3
  fi
}

kind_load() {
  local t
  for t in "$@"; do kind load image-archive "$t" --name "$KIND_NAME"; done
}

# ---------------------------------------------------------------- tools ---------
need_root() { [ "$(id -u)" = 0 ] || die "the local cluster needs root (namespaces, mounts, cgroups)"; }

install_packages() {
  local want=() p
  for p in containerd runc containernetworking-plugins iptables conntrack iproute2 \
           util-linux busybox-static redis-server redis-sentinel socat openssl curl; do
    dpkg -s "$p" >/dev/null 2>&1 || want+=("$p")
  done
  [ ${#want[@]} -eq 0 ] && return
  log "installing Debian packages: ${want[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${want[@]}" >/dev/null 2>&1 || {
    apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${want[@]}" >/dev/null
  }
  # On a machine with an init system Debian also starts containerd and redis services;
  # this cluster does not use them (its containerd has its own socket, root and state).
}

build_binaries() {
  local missing=() b
  for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
    [ -x "$KBIN/$b" ] || missing+=("$b")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "building ${missing[*]} (cached in $KBIN)"
    "$root/hack/build-k8s.sh" "${missing[@]}" >/dev/null
  fi
  build_tools
}

# build_tools: CoreDNS and this module's helpers (imagetar, provisioner, pause).
build_tools() {
  mkdir -p "$TOOLS"
  if [ ! -x "$TOOLS/coredns" ]; then
    log "building coredns $COREDNS_VERSION"
    (cd "$TOOLS" && GOBIN="$TOOLS" CGO_ENABLED=0 GOFLAGS=-mod=mod go install -ldflags '-s -w' \
      "github.com/coredns/coredns@$COREDNS_VERSION")
  fi
  go_tool imagetar ./hack/imagetar
  go_tool local-path-provisioner ./hack/cluster/provisioner
  go_tool pause ./hack/images/pause
  traefik_build
  netpol_build
}

# go_tool NAME PKG: build a tool of this module into bin/tools when its sources changed.
go_tool() {
  local name=$1 pkg=$2 out="$TOOLS/$1"
  mkdir -p "$TOOLS"
  if [ -x "$out" ] && [ -z "$(find "$root/${pkg#./}" "$root/go.mod" "$root/go.sum" -newer "$out" -print -quit)" ]; then
    return
  fi
  log "building $name"
  (cd "$root" && CGO_ENABLED=0 go build -p 1 -ldflags '-s -w' -o "$out.tmp" "$pkg")
  mv "$out.tmp" "$out"
}

# ---------------------------------------------------------------- images --------
imagetar() { "$TOOLS/imagetar" "$@"; }

build_images() {
  mkdir -p "$IMAGES"
  if [ ! -s "$IMAGES/pause.tar" ] || [ "$TOOLS/pause" -nt "$IMAGES/pause.tar" ]; then
    imagetar --name "$PAUSE_IMAGE" --out "$IMAGES/pause.tar" \
      --file "$TOOLS/pause:/pause:0755" --entrypoint /pause --user 65535:65535
  fi
  if [ ! -s "$IMAGES/coredns.tar" ] || [ "$TOOLS/coredns" -nt "$IMAGES/coredns.tar" ]; then
    imagetar --name "$COREDNS_IMAGE" --out "$IMAGES/coredns.tar" \
      --file "$TOOLS/coredns:/coredns:0755" --entrypoint /coredns --user 65532:65532 --expose 1053/udp
  fi
  build_redis_image
  traefik_image
  netpol_image
}

# session-redis:7.0: Debian's redis-server, redis-sentinel and redis-cli with their
# shared libraries, busybox as /bin/sh and friends, running as uid 999 ("redis").
build_redis_image() {
  local out="$IMAGES/session-redis.tar"
  mkdir -p "$IMAGES"
  local bins=(/usr/bin/redis-check-rdb /usr/bin/redis-cli /bin/busybox)
  local b
  for b in "${bins[@]}"; do [ -e "$b" ] || die "$b missing (apt-get install redis-server redis-sentinel busybox-static)"; done
  if [ -s "$out" ] && [ -z "$(find "${bins[@]}" "$0" -newer "$out" -print -quit)" ]; then return; fi
  local tmp; tmp=$(mktemp -d)
  printf 'root:x:0:0:root:/root:/bin/sh\nredis:x:999:999:redis:/data:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$tmp/passwd"
  printf 'root:x:0:\nredis:x:999:\nnogroup:x:65534:\n' >"$tmp/group"
  printf 'hosts: files dns\n' >"$tmp/nsswitch.conf"
  local args=(--name "$REDIS_IMAGE" --out "$out"
    --file /usr/bin/redis-check-rdb:/usr/bin/redis-check-rdb:0755
    --symlink redis-check-rdb:/usr/bin/redis-server
    --symlink redis-check-rdb:/usr/bin/redis-sentinel
    --file /usr/bin/redis-cli:/usr/bin/redis-cli:0755
    --file /bin/busybox:/bin/busybox:0755
    --file "$tmp/passwd:/etc/passwd:0644" --file "$tmp/group:/etc/group:0644"
    --file "$tmp/nsswitch.conf:/etc/nsswitch.conf:0644"
    --mkdir /data:0775:999:999 --mkdir /etc/redis:0775:999:999 --mkdir /tmp:1777 --mkdir /var/run/redis:0775:999:999
    --user 999:999 --workdir /data --cmd redis-server --expose 6379 --expose 26379
    --label org.opencontainers.image.description="Debian redis-server/redis-sentinel $(redis-server --version 2>/dev/null | sed -n 's/.*v=\([^ ]*\).*/\1/p')")
  local lib
  for lib in $(ldd /usr/bin/redis-check-rdb /usr/bin/redis-cli | awk '/=>/ {print $3} /^\t\/.*ld-linux/ {print $1}' | sort -u); do
    args+=(--file "$lib:$lib:0755")
  done
  local applet
  for applet in $(/bin/busybox --list); do
    case "$applet" in busybox|redis-*) continue ;; esac
    args+=(--symlink "/bin/busybox:/bin/$applet")
  done
  imagetar "${args[@]}"
  rm -rf "$tmp"
}

# ---------------------------------------------------------------- helpers -------
pidfile() { echo "$PIDS/$1.pid"; }

# alive NAME: the recorded process runs and is still the binary we started.
alive() {
  local f pid exe
  f=$(pidfile "$1")
  [ -s "$f" ] || return 1
  read -r pid exe <"$f"
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
  [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$exe" ]
}

cg_hierarchies() {
  local h
  for h in /sys/fs/cgroup/*/; do
    h=${h%/}
    [ -f "$h/cgroup.procs" ] || continue
    [ "$h" = /sys/fs/cgroup/unified ] && continue
    echo "$h"
  done
  [ -f /sys/fs/cgroup/cgroup.controllers ] && echo /sys/fs/cgroup
  return 0
}

cg_setup() {
  local h sub
  for h in $(cg_hierarchies); do
    for sub in "$CGROUP_NAME" "$CGROUP_NAME/daemons"; do
      mkdir -p "$h/$sub"
      if [ -f "$h/$sub/cpuset.cpus" ] && [ -z "$(cat "$h/$sub/cpuset.cpus")" ]; then
        cat "$(dirname "$h/$sub")/cpuset.cpus" >"$h/$sub/cpuset.cpus"
        cat "$(dirname "$h/$sub")/cpuset.mems" >"$h/$sub/cpuset.mems"
      fi
    done
  done
}

# start NAME [--host] BINARY ARGS...: run a daemon in the node's network namespace (or,
# with --host, in the host's), in its own session and in our cgroup, logging to
# $LOGS/NAME.log and recording its PID and binary.
start() {
  local name=$1; shift
  local enter=(nsenter "--net=$NSPATH" --)
  if [ "$1" = --host ]; then enter=(); shift; fi
  alive "$name" && return 0
  local bin; bin=$(readlink -f "$(command -v "$1")")
  local f; f=$(pidfile "$name")
  rm -f "$f"
  local procs=()
  local h
  for h in $(cg_hierarchies); do procs+=("$h/$CGROUP_NAME/daemons/cgroup.procs"); done
  setsid bash -c 'f=$1; exe=$2; shift 2
    echo "$$ $exe" >"$f.tmp"
    while [ "$1" != -- ]; do echo $$ >"$1" 2>/dev/null || true; shift; done; shift
    mv "$f.tmp" "$f"
    exec "$@"' start "$f" "$bin" "${procs[@]}" -- "${enter[@]}" "$@" \
    >>"$LOGS/$name.log" 2>&1 </dev/null 8>&- &
  local i
  for i in $(seq 50); do
    alive "$name" && return 0
    sleep 0.1
  done
  die "$name did not start; see $LOGS/$name.log"
}

# stop NAME: TERM the recorded process group, then KILL it.
stop() {
  local name=$1 f pid exe i
  f=$(pidfile "$name")
  [ -s "$f" ] || return 0
  if alive "$name"; then
    read -r pid exe <"$f"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 100); do alive "$name" || break; sleep 0.1; done
    if alive "$name"; then
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
      sleep 0.2
    fi
  fi
  rm -f "$f"
}

in_node() { nsenter "--net=$NSPATH" -- "$@"; }

wait_for() { # SECONDS DESCRIPTION COMMAND...
  local secs=$1 what=$2 i; shift 2
  for i in $(seq $((secs * 5))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  die "timed out after ${secs}s waiting for $what"
}

kc() { "$KUBECTL" --kubeconfig "$KUBECONFIG_OUT" "$@"; }

# ---------------------------------------------------------------- network -------
record_prestate() {
  [ -f "$PRESTATE" ] && return
  mkdir -p "$D"
  local p
  {
    for p in $OUTSIDE_PATHS /run/netns; do
      [ -e "$p" ] && echo "exists $p"
    done
    grep -q " /run/netns " /proc/self/mountinfo && echo "mounted /run/netns"
    ls -d /sys/fs/cgroup/*/k8s.io >/dev/null 2>&1 && echo "exists cgroup k8s.io"
  } >"$PRESTATE.tmp" || true
  mv "$PRESTATE.tmp" "$PRESTATE"
}

# clean_stale_net: remove a node namespace left by a cluster whose processes were ended
# without `down` (say, by another checkout), before recording what the machine had.
clean_stale_net() {
  [ -e "$NSPATH" ] && [ ! -f "$PIDS/net.done" ] || return 0
  local users; users=$(ip netns pids "$NETNS" 2>/dev/null | tr '\n' ' ')
  [ -z "${users// /}" ] || die "network namespace $NETNS is in use by PIDs $users (another local cluster?); run its down first"
  log "removing a stale network namespace $NETNS"
  ip netns delete "$NETNS"
  ip link del "$VETH_HOST" 2>/dev/null || true
  if [ -z "$(ls -A /run/netns 2>/dev/null)" ] && [ ! -f "$PRESTATE" ]; then
    local had_utab_dir=0
    [ -e /run/mount ] && had_utab_dir=1
    umount /run/netns 2>/dev/null || true
    rmdir /run/netns 2>/dev/null || true
    [ $had_utab_dir = 1 ] || rmdir /run/mount 2>/dev/null || true
  fi
}

net_up() {
  if [ ! -e "$NSPATH" ]; then
    ip netns add "$NETNS"
  fi
  if ! ip link show "$VETH_HOST" >/dev/null 2>&1; then
    ip link add "$VETH_HOST" type veth peer name "$VETH_NODE"
    ip link set "$VETH_NODE" netns "$NETNS"
  fi
  ip addr replace "$HOST_IP/24" dev "$VETH_HOST"
  ip link set "$VETH_HOST" up
  in_node ip link set lo up
  in_node ip addr replace "$NODE_IP/24" dev "$VETH_NODE"
  in_node ip link set "$VETH_NODE" up
  # The node forwards between its pods and services; the host is not touched.
  in_node sh -c 'echo 1 >/proc/sys/net/ipv4/ip_forward
    echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null || true
    echo 1 >/proc/sys/net/bridge/bridge-nf-call-ip6tables 2>/dev/null || true'
  # Pods and node processes may not open connections to the host side of the link.
  if ! in_node iptables -C OUTPUT -d "$HOST_IP" -m conntrack --ctstate NEW -j REJECT 2>/dev/null; then
    in_node iptables -I OUTPUT -d "$HOST_IP" -m conntrack --ctstate NEW -j REJECT
    in_node iptables -I FORWARD -d "$HOST_IP" -m conntrack --ctstate NEW -j REJECT
  fi
  touch "$PIDS/net.done"
}

# ---------------------------------------------------------------- certificates --
# cert NAME CN O(or "") EXTKEYUSAGE [SAN]
cert() {
  local name=$1 cn=$2 org=$3 eku=$4 san=${5:-}
  [ -s "$PKI/$name.crt" ] && return
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/$name.key" 2>/dev/null
  local subj="/CN=$cn"
  [ -n "$org" ] && subj="/O=$org$subj"
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"
    [ -n "$san" ] && echo "subjectAltName=$san"
  } >"$PKI/$name.ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -set_serial "0x$(openssl rand -hex 16)" \
    -days 3650 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}

kubeconfig() { # FILE SERVER CERTNAME
  local file=$1 server=$2 c=$3
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $NAME
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 <"$PKI/ca.crt")
users:
- name: $c
  user:
    client-certificate-data: $(base64 -w0 <"$PKI/$c.crt")
    client-key-data: $(base64 -w0 <"$PKI/$c.key")
contexts:
- name: $NAME
  context: {cluster: $NAME, user: $c}
current-context: $NAME
EOF
  chmod 600 "$file"
}

pki_up() {
  mkdir -p "$PKI"
  if [ ! -s "$PKI/ca.crt" ]; then
    openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/ca.key" 2>/dev/null
    openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=$NAME-ca" -days 3650 -out "$PKI/ca.crt" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
  fi
  cert apiserver kube-apiserver "" serverAuth \
    "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.$DOMAIN,DNS:localhost,DNS:$NODE,IP:127.0.0.1,IP:$NODE_IP,IP:$API_SVC_IP"
  cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters clientAuth
  cert admin kubernetes-admin system:masters clientAuth
  cert controller-manager system:kube-controller-manager "" clientAuth
  cert scheduler system:kube-scheduler "" clientAuth
  cert kube-proxy system:kube-proxy "" clientAuth
  cert kubelet "system:node:$NODE" system:nodes clientAuth
  cert kubelet-serving "system:node:$NODE" system:nodes serverAuth "DNS:$NODE,IP:$NODE_IP"
  if [ ! -s "$PKI/sa.key" ]; then
    openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
    openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  fi
  local internal="https://$NODE_IP:6443"
  kubeconfig "$CFG/admin.kubeconfig" "$internal" admin
  kubeconfig "$CFG/controller-manager.kubeconfig" "$internal" controller-manager
  kubeconfig "$CFG/scheduler.kubeconfig" "$internal" scheduler
  kubeconfig "$CFG/kube-proxy.kubeconfig" "$internal" kube-proxy
  kubeconfig "$CFG/kubelet.kubeconfig" "$internal" kubelet
  kubeconfig "$KUBECONFIG_OUT" "https://127.0.0.1:$API_PORT" admin
}

# ---------------------------------------------------------------- configs -------
write_configs() {
  mkdir -p "$CFG/cni" "$DATA/containerd" "$DATA/kubelet" "$DATA/pod-logs" "$DATA/cni" "$DATA/pv" "$DATA/kubelet-plugins"
  cat >"$CFG/containerd.toml" <<EOF
version = 2
root = "$DATA/containerd/root"
state = "$DATA/containerd/state"
plugin_dir = ""
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
oom_score = 0

[grpc]
  address = "$CTR_SOCK"

[ttrpc]
  address = "$RUN/containerd-ttrpc.sock"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$DATA/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_unprivileged_ports = true
  enable_unprivileged_icmp = true
  max_container_log_line_size = 16384
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$DATA/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$CFG/cni"
    max_conf_num = 1
EOF
  cat >"$CFG/cni/10-$NAME.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$NAME",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$DATA/cni",
        "ranges": [[{"subnet": "$NODE_POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  # Pods with dnsPolicy Default (CoreDNS) get no upstream resolver: nothing leaves the node.
  printf '# no upstream resolver: the local cluster answers %s itself\n' "$DOMAIN" >"$CFG/resolv.conf"
  cat >"$CFG/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
containerRuntimeEndpoint: unix://$CTR_SOCK
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failCgroupV1: false
failSwapOn: false
clusterDNS: [$DNS_IP]
clusterDomain: $DOMAIN
resolvConf: $CFG/resolv.conf
podLogsDir: $DATA/pod-logs
volumePluginDir: $DATA/kubelet-plugins
staticPodPath: ""
serializeImagePulls: false
rotateCertificates: false
serverTLSBootstrap: false
protectKernelDefaults: false
evictionHard: {memory.available: 50Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
shutdownGracePeriod: 0s
shutdownGracePeriodCriticalPods: 0s
maxPods: 110
EOF
  cat >"$CFG/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $CFG/kube-proxy.kubeconfig}
mode: iptables
hostnameOverride: $NODE
clusterCIDR: $POD_CIDR
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
}

# ---------------------------------------------------------------- processes -----
start_control_plane() {
  mkdir -p "$DATA/etcd"
  start etcd "$KBIN/etcd" --name "$NAME" --data-dir "$DATA/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster "$NAME=http://127.0.0.1:2380" --listen-metrics-urls "" \
    --unsafe-no-fsync --log-level warn
  wait_for 30 etcd in_node curl -fsS http://127.0.0.1:2379/health

  start kube-apiserver "$KBIN/kube-apiserver" \
    --advertise-address "$NODE_IP" --bind-address 0.0.0.0 --secure-port 6443 \
    --etcd-servers http://127.0.0.1:2379 \
    --client-ca-file "$PKI/ca.crt" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types InternalIP \
    --service-account-issuer "https://kubernetes.default.svc.$DOMAIN" \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --allow-privileged=true --profiling=false --event-ttl 2h --v 1
  # The host reaches the apiserver on loopback only.
  start api-forward --host socat "TCP-LISTEN:$API_PORT,bind=127.0.0.1,reuseaddr,fork" "TCP:$NODE_IP:6443"
  wait_for 90 "the apiserver (https://127.0.0.1:$API_PORT/readyz)" kc get --raw /readyz

  start kube-controller-manager "$KBIN/kube-controller-manager" \
    --kubeconfig "$CFG/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$CFG/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$CFG/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port 10257 --leader-elect=false \
    --use-service-account-credentials=true \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --allocate-node-cidrs=true --cluster-cidr "$POD_CIDR" --node-cidr-mask-size 24 \
    --service-cluster-ip-range "$SERVICE_CIDR" --profiling=false --v 1
  start kube-scheduler "$KBIN/kube-scheduler" \
    --kubeconfig "$CFG/scheduler.kubeconfig" \
    --authentication-kubeconfig "$CFG/scheduler.kubeconfig" \
    --authorization-kubeconfig "$CFG/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port 10259 --leader-elect=false --profiling=false --v 1
}

ctr_() { ctr --address "$CTR_SOCK" --namespace k8s.io "$@"; }

import_images() {
  local t
  for t in "$@"; do
    ctr_ images import "$t" >/dev/null
  done
}

start_node() {
  start containerd containerd --config "$CFG/containerd.toml"
  wait_for 30 containerd ctr --address "$CTR_SOCK" version
  local missing=()
  ctr_ images ls -q | grep -qx "$PAUSE_IMAGE" || missing+=("$IMAGES/pause.tar")
  ctr_ images ls -q | grep -qx "$COREDNS_IMAGE" || missing+=("$IMAGES/coredns.tar")
  ctr_ images ls -q | grep -qx "docker.io/library/$REDIS_IMAGE" || missing+=("$IMAGES/session-redis.tar")
  local t
  for t in $(traefik_images) $(netpol_images); do missing+=("$t"); done
  [ ${#missing[@]} -eq 0 ] || import_images "${missing[@]}"

  start kubelet "$KBIN/kubelet" --config "$CFG/kubelet.yaml" --kubeconfig "$CFG/kubelet.kubeconfig" \
    --root-dir "$DATA/kubelet" --cert-dir "$PKI" --node-ip "$NODE_IP" --hostname-override "$NODE" --v 1
  start kube-proxy "$KBIN/kube-proxy" --config "$CFG/kube-proxy.yaml" --v 1
  start provisioner "$TOOLS/local-path-provisioner" --kubeconfig "$CFG/admin.kubeconfig" \
    --name "$PROVISIONER" --root "$DATA/pv" --node "$NODE"
}

addons() {
  kc apply -f - >/dev/null <<EOF
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: $PROVISIONER
reclaimPolicy: Delete
volumeBindingMode: WaitForFirstConsumer
allowVolumeExpansion: true
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects: [{kind: ServiceAccount, name: coredns, namespace: kube-system}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  Corefile: |
    .:1053 {
        errors
        health :8080
        ready :8181
        kubernetes $DOMAIN in-addr.arpa ip6.arpa {
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
            ttl 5
        }
        reload
    }
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: coredns
  namespace: kube-system
  labels: {k8s-app: kube-dns}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata:
      labels: {k8s-app: kube-dns}
    spec:
      serviceAccountName: coredns
      priorityClassName: system-cluster-critical
      dnsPolicy: Default
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        seccompProfile: {type: RuntimeDefault}
      containers:
      - name: coredns
        image: $COREDNS_IMAGE
        imagePullPolicy: Never
        args: [-conf, /etc/coredns/Corefile]
        ports:
        - {name: dns, containerPort: 1053, protocol: UDP}
        - {name: dns-tcp, containerPort: 1053, protocol: TCP}
        readinessProbe:
          httpGet: {path: /ready, port: 8181}
          periodSeconds: 2
        livenessProbe:
          httpGet: {path: /health, port: 8080}
          periodSeconds: 10
          failureThreshold: 5
        resources:
          requests: {cpu: 50m, memory: 32Mi}
          limits: {memory: 170Mi}
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL]}
        volumeMounts: [{name: config, mountPath: /etc/coredns, readOnly: true}]
      volumes:
      - name: config
        configMap: {name: coredns}
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns}
spec:
  clusterIP: $DNS_IP
  selector: {k8s-app: kube-dns}
  ports:
  - {name: dns, port: 53, targetPort: 1053, protocol: UDP}
  - {name: dns-tcp, port: 53, targetPort: 1053, protocol: TCP}
EOF
}

# ---------------------------------------------------------------- up / down -----
local_up() {
  need_root
  local t0=$SECONDS
  if [ -f "$PIDS/up.done" ] && all_alive && kc get --raw /readyz >/dev/null 2>&1; then
    if traefik_wanted && ! kc -n kube-system get deployment traefik >/dev/null 2>&1; then
      # brought up by a checkout without the ingress controller
      build_tools
      traefik_image
      local t
      for t in $(traefik_images); do import_images "$t"; done
      traefik_addon
      traefik_wait
    fi
    if netpol_wanted && ! kc -n kube-system get daemonset kube-network-policies >/dev/null 2>&1; then
      # brought up by a checkout without NetworkPolicy enforcement
      build_tools
      netpol_image
      local t
      for t in $(netpol_images); do import_images "$t"; done
      netpol_addon
      netpol_wait
    fi
    log "already up (export KUBECONFIG=$KUBECONFIG_OUT)"
    return 0
  fi
  if [ -d "$PIDS" ] && ! any_alive; then
    log "the previous cluster no longer runs; removing what is left of it"
    local_down
  fi
  install_packages
  command -v go >/dev/null || die "go is not on PATH"
  build_binaries
  build_images
  clean_stale_net
  record_prestate
  if [ ! -d "$PIDS" ]; then rm -rf "$LOGS"; fi
  mkdir -p "$S" "$PIDS" "$RUN" "$LOGS" "$CFG"
  local longest="$DATA/kubelet/plugins_registry/x-reg.sock"
  [ ${#longest} -lt 100 ] || die "$S is too deep for unix socket paths (108 bytes); use a shorter checkout path"
  cg_setup
  net_up
  pki_up
  write_configs
  start_control_plane
  start_node
  wait_for 60 "node $NODE to register" kc get node "$NODE"
  addons
  traefik_addon
  netpol_addon
  kc wait --for=condition=Ready "node/$NODE" --timeout=120s >/dev/null
  kc -n kube-system rollout status deployment/coredns --timeout=120s >/dev/null
  traefik_wait
  netpol_wait
  wait_for 30 "the default ServiceAccount" kc -n default get serviceaccount default
  touch "$PIDS/up.done"
  log "up in $((SECONDS - t0))s: node $NODE ($NODE_IP), apiserver https://127.0.0.1:$API_PORT"
  log "export KUBECONFIG=$KUBECONFIG_OUT"
}

DAEMONS=(etcd kube-apiserver api-forward kube-controller-manager kube-scheduler containerd kubelet kube-proxy provisioner)

any_alive() {
  local n
  for n in "${DAEMONS[@]}"; do alive "$n" && return 0; done
  return 1
}

all_alive() {
  local n
  for n in "${DAEMONS[@]}"; do alive "$n" || return 1; done
}

# kill_cgroups DIR...: SIGKILL every process left in the cgroups DIR (relative to each
# hierarchy) and below.
kill_cgroups() {
  local h d pids i
  for i in 1 2 3 4 5; do
    pids=""
    for h in $(cg_hierarchies); do
      for d in "$@"; do
        [ -d "$h/$d" ] || continue
        pids="$pids $(find "$h/$d" -name cgroup.procs -exec cat {} + 2>/dev/null || true)"
      done
    done
    pids=$(echo $pids)
    [ -n "$pids" ] || return 0
    kill -KILL $pids 2>/dev/null || true
    sleep 0.3
  done
}

rm_cgroups() {
  local h d
  for h in $(cg_hierarchies); do
    for d in "$@"; do
      [ -d "$h/$d" ] && find "$h/$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
  done
}

# container_ids: the containers (and sandboxes) our containerd has run since up.
container_ids() {
  ls "$DATA/containerd/state/io.containerd.runtime.v2.task/k8s.io" 2>/dev/null || true
}

unmount_under() {
  local dir=$1 m i
  for i in 1 2 3 4 5; do
    # mountinfo field 5 is the mount point (octal-escaped); deepest first
    m=$(awk -v d="$dir" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -r)
    [ -n "$m" ] || return 0
    local p
    for p in $m; do
      p=$(printf '%b' "$p")
      umount "$p" 2>/dev/null || umount -l "$p" 2>/dev/null || true
    done
  done
}

prestate_has() { [ -f "$PRESTATE" ] && grep -qx "$1" "$PRESTATE"; }

local_down() {
  need_root
  local t0=$SECONDS n
  # Kubelet first, so that it restarts nothing; then the pods (via containerd while it
  # runs), then the rest of the daemons in reverse order.
  stop provisioner
  stop kubelet
  local ids n cgs=()
  ids=$(container_ids)
  for n in $ids; do cgs+=("k8s.io/$n"); done
  if alive containerd; then
    for n in $ids; do ctr_ tasks kill -s SIGKILL "$n" >/dev/null 2>&1 || true; done
  fi
  [ ${#cgs[@]} -eq 0 ] || kill_cgroups "${cgs[@]}"
  if alive containerd; then
    for n in $ids; do ctr_ tasks delete "$n" >/dev/null 2>&1 || true; done
  fi
  for n in kube-proxy containerd kube-scheduler kube-controller-manager api-forward kube-apiserver etcd; do
    stop "$n"
  done
  # containerd's shims and anything else started from our daemons
  kill_cgroups "$CGROUP_NAME"
  ids=$(container_ids)
  for n in $ids; do cgs+=("k8s.io/$n"); done
  [ ${#cgs[@]} -eq 0 ] || { kill_cgroups "${cgs[@]}"; rm_cgroups "${cgs[@]}"; }
  rm_cgroups "$CGROUP_NAME"
  prestate_has "exists cgroup k8s.io" || rmdir /sys/fs/cgroup/*/k8s.io 2>/dev/null || true
  unmount_under "$S"
  if [ -e "$NSPATH" ]; then ip netns delete "$NETNS" 2>/dev/null || true; fi
  ip link del "$VETH_HOST" 2>/dev/null || true
  if [ -f "$PRESTATE" ] && ! prestate_has "mounted /run/netns" && [ -z "$(ls -A /run/netns 2>/dev/null)" ]; then
    umount /run/netns 2>/dev/null || true
    prestate_has "exists /run/netns" || rmdir /run/netns 2>/dev/null || true
  fi
  # Files the kubelet, containerd and the CNI plugins put outside bin/cluster.
  local p
  for p in $OUTSIDE_PATHS; do
    if [ -e "$p" ] && [ -f "$PRESTATE" ] && ! prestate_has "exists $p"; then
      if [ "$p" = /run/mount ]; then rmdir "$p" 2>/dev/null || true; else rm -rf "$p"; fi
    fi
  done
  if [ -d /var/log/containers ]; then
    find /var/log/containers -maxdepth 1 -type l -lname "$DATA/*" -delete 2>/dev/null || true
  fi
  if [ -d /var/lib/cni/results ]; then
    find /var/lib/cni/results -maxdepth 1 -name "$NAME-*" -delete 2>/dev/null || true
  fi
  if grep -q " $S" /proc/self/mountinfo; then
    log "warning: mounts under $S remain:"; grep " $S" /proc/self/mountinfo | awk '{print $5}' >&2
    die "not removing $S"
  fi
  rm -rf "$S" "$KUBECONFIG_OUT" "$PRESTATE"
  log "down in $((SECONDS - t0))s (logs of this run kept in $LOGS)"
}

local_status() {
  local n rc=0 pid exe
  echo "local cluster $NAME (node $NODE, $NODE_IP; apiserver https://127.0.0.1:$API_PORT)"
  for n in "${DAEMONS[@]}"; do
    if alive "$n"; then
      read -r pid exe <"$(pidfile "$n")"
      printf '  %-24s running  pid %s\n' "$n" "$pid"
    else
      printf '  %-24s stopped\n' "$n"
      rc=3
    fi
  done
  if [ -e "$NSPATH" ]; then echo "  netns $NETNS: present"; else echo "  netns $NETNS: absent"; fi
  if [ $rc = 0 ]; then
    kc get nodes -o wide 2>&1 | sed 's/^/  /' || true
    kc get pods -A -o wide 2>&1 | sed 's/^/  /' || true
    echo "  export KUBECONFIG=$KUBECONFIG_OUT"
  fi
  return $rc
}

local_load() {
  alive containerd || die "the local cluster is not up"
  [ $# -gt 0 ] || die "usage: $0 load IMAGE.tar..."
  local t
  for t in "$@"; do
    [ -f "$t" ] || die "$t: no such file"
    ctr_ images import "$t"
  done
}

# ---------------------------------------------------------------- main ----------
cmd=${1:-}
shift || true
if [ "$cmd" = up ] || [ "$cmd" = down ]; then
  mkdir -p "$D"
  exec 8>"$D/.lock"
  flock 8 || die "cannot lock $D/.lock"
fi
case "$cmd" in
  up) if use_kind; then kind_up; else local_up; fi ;;
  down) if use_kind; then kind_down; else local_down; fi ;;
  status) if use_kind; then kind_status; else local_status; fi ;;
  images) install_packages; build_tools; build_images ;;
  load) if use_kind; then kind_load "$@"; else local_load "$@"; fi ;;
  env) echo "export KUBECONFIG=$KUBECONFIG_OUT" ;;
  *) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
