# Traefik as the local cluster's ingress controller; sourced by hack/local-cluster.sh.
# Built from the Go module proxy's source (hack/traefik/build.sh, cached in bin/tools),
# run from an image made by hack/imagetar, serving Ingresses of class "traefik" on the
# node's address: the Service "kube-system/traefik" has the node IP as its external IP,
# so kube-proxy sends $NODE_IP:80 to Traefik from pods, the node and the host alike, and
# Traefik publishes that address in each Ingress's status.loadBalancer.
# LOCAL_CLUSTER_INGRESS=none leaves it out.

TRAEFIK_VERSION=${TRAEFIK_VERSION:-v3.7.13}
TRAEFIK_IMAGE=localhost/sessionops/traefik:${TRAEFIK_VERSION#v}
LOCAL_CLUSTER_INGRESS=${LOCAL_CLUSTER_INGRESS:-traefik}

traefik_wanted() { [ "$LOCAL_CLUSTER_INGRESS" = traefik ]; }

traefik_build() {
  traefik_wanted || return 0
  local out="$TOOLS/traefik-$TRAEFIK_VERSION"
  if [ ! -x "$out" ] || [ "$root/hack/traefik/build.sh" -nt "$out" ]; then
    log "building traefik $TRAEFIK_VERSION from its module source (first time: several minutes)"
    TRAEFIK_VERSION=$TRAEFIK_VERSION nice -n 10 "$root/hack/traefik/build.sh" "$out"
  fi
}

traefik_image() {
  traefik_wanted || return 0
  local bin="$TOOLS/traefik-$TRAEFIK_VERSION"
  if [ ! -s "$IMAGES/traefik.tar" ] || [ "$bin" -nt "$IMAGES/traefik.tar" ]; then
    imagetar --name "$TRAEFIK_IMAGE" --out "$IMAGES/traefik.tar" \
      --file "$bin:/traefik:0755" --mkdir /tmp:1777 --entrypoint /traefik --user 65532:65532 \
      --expose 8000 --expose 9000
  fi
}

# traefik_images: the tarballs start_node imports when containerd lacks them.
traefik_images() {
  traefik_wanted || return 0
  ctr_ images ls -q | grep -qx "$TRAEFIK_IMAGE" || echo "$IMAGES/traefik.tar"
}

traefik_addon() {
  traefik_wanted || return 0
  kc apply -f - >/dev/null <<YAML
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: traefik}
spec: {controller: traefik.io/ingress-controller}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: traefik, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "local-cluster:traefik"}
rules:
- apiGroups: [""]
  resources: [services, secrets, nodes]
  verbs: [get, list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
- apiGroups: [networking.k8s.io]
  resources: [ingresses, ingressclasses]
  verbs: [get, list, watch]
- apiGroups: [networking.k8s.io]
  resources: [ingresses/status]
  verbs: [update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "local-cluster:traefik"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "local-cluster:traefik"}
subjects: [{kind: ServiceAccount, name: traefik, namespace: kube-system}]
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: traefik
  namespace: kube-system
  labels: {app.kubernetes.io/name: traefik}
spec:
  replicas: 1
  selector: {matchLabels: {app.kubernetes.io/name: traefik}}
  template:
    metadata:
      labels: {app.kubernetes.io/name: traefik}
    spec:
      serviceAccountName: traefik
      priorityClassName: system-cluster-critical
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        seccompProfile: {type: RuntimeDefault}
      containers:
      - name: traefik
        image: $TRAEFIK_IMAGE
        imagePullPolicy: Never
        args:
        - --global.checknewversion=false
        - --global.sendanonymoususage=false
        - --log.level=INFO
        - --accesslog=false
        - --entrypoints.web.address=:8000
        - --entrypoints.traefik.address=:9000
        - --ping=true
        - --providers.kubernetesingress=true
        - --providers.kubernetesingress.ingressclass=traefik
        - --providers.kubernetesingress.ingressendpoint.publishedservice=kube-system/traefik
        ports:
        - {name: web, containerPort: 8000}
        - {name: admin, containerPort: 9000}
        readinessProbe:
          httpGet: {path: /ping, port: 9000}
          periodSeconds: 2
        livenessProbe:
          httpGet: {path: /ping, port: 9000}
          periodSeconds: 10
          failureThreshold: 5
        resources:
          requests: {cpu: 50m, memory: 64Mi}
          limits: {memory: 256Mi}
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL]}
---
apiVersion: v1
kind: Service
metadata:
  name: traefik
  namespace: kube-system
  labels: {app.kubernetes.io/name: traefik}
spec:
  selector: {app.kubernetes.io/name: traefik}
  externalIPs: [$NODE_IP]
  ports:
  - {name: web, port: 80, targetPort: web}
YAML
}

traefik_wait() {
  traefik_wanted || return 0
  kc -n kube-system rollout status deployment/traefik --timeout=120s >/dev/null
}
