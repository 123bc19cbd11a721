# NetworkPolicy enforcement for the local cluster; sourced by hack/local-cluster.sh.
# The bridge CNI filters nothing, so `up` runs kubernetes-sigs/kube-network-policies
# (nftables rules that send each pod's first packet of a connection to a netfilter queue,
# where the policies are evaluated), built from the Go module proxy with `go install` (no
# patches) into bin/tools and run as a DaemonSet on the node's network from an image made
# by hack/imagetar. LOCAL_CLUSTER_NETPOL=none leaves it out.

NETPOL_VERSION=${NETPOL_VERSION:-v0.8.0}
NETPOL_IMAGE=localhost/sessionops/kube-network-policies:${NETPOL_VERSION#v}
LOCAL_CLUSTER_NETPOL=${LOCAL_CLUSTER_NETPOL:-kube-network-policies}

netpol_wanted() { [ "$LOCAL_CLUSTER_NETPOL" = kube-network-policies ]; }

netpol_build() {
  netpol_wanted || return 0
  local out="$TOOLS/kube-network-policies-$NETPOL_VERSION"
  [ -x "$out" ] && return 0
  log "building kube-network-policies $NETPOL_VERSION"
  local tmp; tmp=$(mktemp -d)
  (cd "$tmp" && GOBIN="$tmp" CGO_ENABLED=0 GOFLAGS=-mod=mod nice -n 10 go install -trimpath -ldflags '-s -w' \
    "sigs.k8s.io/kube-network-policies/cmd@$NETPOL_VERSION")
  mv "$tmp/cmd" "$out"
  rm -rf "$tmp"
}

netpol_image() {
  netpol_wanted || return 0
  local bin="$TOOLS/kube-network-policies-$NETPOL_VERSION"
  if [ ! -s "$IMAGES/netpol.tar" ] || [ "$bin" -nt "$IMAGES/netpol.tar" ]; then
    imagetar --name "$NETPOL_IMAGE" --out "$IMAGES/netpol.tar" \
      --file "$bin:/netpol:0755" --entrypoint /netpol
  fi
}

netpol_images() {
  netpol_wanted || return 0
  ctr_ images ls -q | grep -qx "$NETPOL_IMAGE" || echo "$IMAGES/netpol.tar"
}

netpol_addon() {
  netpol_wanted || return 0
  kc apply -f - >/dev/null <<YAML
apiVersion: v1
kind: ServiceAccount
metadata: {name: kube-network-policies, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "sessionops:kube-network-policies"}
rules:
- apiGroups: [""]
  resources: [pods, namespaces]
  verbs: [list, watch]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "sessionops:kube-network-policies"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "sessionops:kube-network-policies"}
subjects: [{kind: ServiceAccount, name: kube-network-policies, namespace: kube-system}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: kube-network-policies
  namespace: kube-system
  labels: {app.kubernetes.io/name: kube-network-policies}
spec:
  selector: {matchLabels: {app.kubernetes.io/name: kube-network-policies}}
  template:
    metadata:
      labels: {app.kubernetes.io/name: kube-network-policies}
    spec:
      serviceAccountName: kube-network-policies
      priorityClassName: system-node-critical
      hostNetwork: true
      tolerations: [{operator: Exists}]
      containers:
      - name: kube-network-policies
        image: $NETPOL_IMAGE
        imagePullPolicy: Never
        args: [--hostname-override=$NODE, --disable-nri, --nfqueue-id=98, --metrics-bind-address=127.0.0.1:9080, --v=1]
        env:
        # The node's namespace has no route to Service addresses: reach the apiserver directly.
        - {name: KUBERNETES_SERVICE_HOST, value: "$NODE_IP"}
        - {name: KUBERNETES_SERVICE_PORT, value: "6443"}
        resources:
          requests: {cpu: 50m, memory: 50Mi}
        securityContext:
          privileged: true
          capabilities: {add: [NET_ADMIN]}
YAML
}

netpol_wait() {
  netpol_wanted || return 0
  kc -n kube-system rollout status daemonset/kube-network-policies --timeout=120s >/dev/null
}
