# NetworkPolicy enforcement for the local cluster; sourced by hack/local-cluster.sh.
# The bridge CNI filters nothing, so `up` runs kubernetes-sigs/kube-network-policies: for
# the pods some NetworkPolicy selects, netfilter rules send the first packet of each
# connection to a queue where the policies are evaluated (accepted or dropped). Built
# from the Go module proxy's source with one patch (hack/netpol/build.sh: NFQUEUE through
# xtables, as this kernel has no nftables queue expression), cached in bin/tools, and run
# as a DaemonSet on the node's network from an image made by hack/imagetar.
# LOCAL_CLUSTER_NETPOL=none leaves it out (then no NetworkPolicy is enforced).

NETPOL_VERSION=${NETPOL_VERSION:-v0.8.0}
NETPOL_IMAGE=localhost/sessionops/kube-network-policies:${NETPOL_VERSION#v}-xtq
NETPOL_QUEUE=98
LOCAL_CLUSTER_NETPOL=${LOCAL_CLUSTER_NETPOL:-kube-network-policies}

netpol_wanted() { [ "$LOCAL_CLUSTER_NETPOL" = kube-network-policies ]; }

netpol_build() {
  netpol_wanted || return 0
  local out="$TOOLS/kube-network-policies-$NETPOL_VERSION-xtq"
  if [ ! -x "$out" ] || [ "$root/hack/netpol/build.sh" -nt "$out" ] || [ "$root/hack/netpol/xt-nfqueue.patch" -nt "$out" ]; then
    log "building kube-network-policies $NETPOL_VERSION from its module source (first time: a few minutes)"
    NETPOL_VERSION=$NETPOL_VERSION nice -n 10 "$root/hack/netpol/build.sh" "$out"
  fi
}

netpol_image() {
  netpol_wanted || return 0
  local bin="$TOOLS/kube-network-policies-$NETPOL_VERSION-xtq"
  if [ ! -s "$IMAGES/netpol.tar" ] || [ "$bin" -nt "$IMAGES/netpol.tar" ]; then
    imagetar --name "$NETPOL_IMAGE" --out "$IMAGES/netpol.tar" \
      --file "$bin:/kube-network-policies:0755" --entrypoint /kube-network-policies
  fi
}

# netpol_images: the tarball start_node imports when containerd lacks it.
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
metadata: {name: "local-cluster:kube-network-policies"}
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
metadata: {name: "local-cluster:kube-network-policies"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "local-cluster:kube-network-policies"}
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
        # Fail closed (no --fail-open): while the engine is down, new connections to and
        # from the selected pods are dropped rather than let through. The kernel is
        # 6.12+, which has the conntrack fix the DNS workaround is for.
        args:
        - --hostname-override=$NODE
        - --disable-nri
        - --nfqueue-id=$NETPOL_QUEUE
        - --netfilter-bug-1766-fix=false
        - --metrics-bind-address=127.0.0.1:9080
        - --v=1
        env:
        # The node's namespace has no route to Service addresses: reach the apiserver directly.
        - {name: KUBERNETES_SERVICE_HOST, value: "$NODE_IP"}
        - {name: KUBERNETES_SERVICE_PORT, value: "6443"}
        resources:
          requests: {cpu: 50m, memory: 50Mi}
          limits: {memory: 200Mi}
        securityContext:
          privileged: true
          capabilities: {add: [NET_ADMIN]}
YAML
}

netpol_wait() {
  netpol_wanted || return 0
  kc -n kube-system rollout status daemonset/kube-network-policies --timeout=120s >/dev/null
}
