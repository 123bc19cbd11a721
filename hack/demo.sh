#!/usr/bin/env bash
# make demo / make demo-down: the operator on a real single-node cluster, with the hybrid
# sample (sticky cookie + Redis store with Sentinel) and the reference session app.
#
# usage: hack/demo.sh up|down
#
#   up    bring the cluster up (kind where Docker works, else hack/local-cluster.sh's own
#         node), build and load the images, install the chart, apply
#         config/samples/session_v1alpha1_sessioncluster_hybrid.yaml into namespace demo
#         (images pointed at the local builds, its Ingress at the cluster's Traefik),
#         wait for Ready (which needs the Ingress served) and say what to do next.
#   down  remove the cluster and everything it made.
#
# It always uses the demo cluster's own kubeconfig (bin/cluster/kubeconfig), never the
# KUBECONFIG of your shell. Environment: IMG, APP_IMG (the Makefile passes them),
# DEMO_NAMESPACE (demo), DEMO_STORE_IMAGE.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
NS=${DEMO_NAMESPACE:-demo}
SC=checkout
RELEASE=session-operator
OPERATOR_NS=session-system
IMG=${IMG:-ghcr.io/sessionops/session-operator:dev}
APP_IMG=${APP_IMG:-ghcr.io/sessionops/session-app:dev}
SAMPLE=config/samples/session_v1alpha1_sessioncluster_hybrid.yaml
export KUBECONFIG="$root/bin/cluster/kubeconfig"
HELM="$root/bin/tools/helm"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }

kind_mode() {
  case "${LOCAL_CLUSTER:-}" in kind) return 0 ;; local) return 1 ;; esac
  command -v kind >/dev/null 2>&1 && command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1
}

kubectl_bin() {
  if [ -x "$root/bin/k8s/1.37.2/kubectl" ]; then echo "$root/bin/k8s/1.37.2/kubectl"
  elif command -v kubectl >/dev/null 2>&1; then command -v kubectl
  else die "no kubectl (hack/build-k8s.sh kubectl builds one into bin/k8s/1.37.2)"; fi
}

up() {
  local start=$SECONDS
  say "cluster: hack/local-cluster.sh up"
  hack/local-cluster.sh up
  KUBECTL=$(kubectl_bin)
  k() { "$KUBECTL" "$@"; }

  say "images: make image-tar app-image-tar helm"
  make --no-print-directory image-tar app-image-tar helm IMG="$IMG" APP_IMG="$APP_IMG" >/dev/null
  hack/local-cluster.sh load bin/images/session-operator.tar bin/images/session-app.tar
  # The store image: Debian's Redis in an image made by hack/local-cluster.sh (loaded at
  # every up); a kind cluster without Debian's redis packages on this machine pulls the
  # public one instead.
  local store_img=${DEMO_STORE_IMAGE:-docker.io/library/session-redis:7.0}
  if [ -z "${DEMO_STORE_IMAGE:-}" ] && kind_mode && [ ! -s bin/cluster/images/session-redis.tar ]; then
    store_img=docker.io/library/redis:7.4
  fi

  say "operator: helm upgrade --install $RELEASE charts/session-operator -n $OPERATOR_NS"
  for ns in "$OPERATOR_NS" "$NS"; do
    k get namespace "$ns" >/dev/null 2>&1 || k create namespace "$ns" >/dev/null
    k label namespace "$ns" --overwrite pod-security.kubernetes.io/enforce=restricted >/dev/null
  done
  "$HELM" upgrade --install "$RELEASE" charts/session-operator --namespace "$OPERATOR_NS" \
    --set image.repository="${IMG%:*}" --set image.tag="${IMG##*:}" --set image.pullPolicy=IfNotPresent \
    --wait --timeout 5m >/dev/null

  # The local cluster serves Ingresses with Traefik (hack/traefik); Ready waits for the
  # Ingress to be served, so the sample's class follows the controller that runs.
  local class=nginx controller=IngressNginx
  if k get ingressclass traefik >/dev/null 2>&1; then class=traefik controller=Traefik; fi
  say "sample: $SAMPLE into namespace $NS (app image $APP_IMG, store image $store_img, ingress class $class)"
  local t0=$SECONDS
  sed -E \
    -e "s#^( *)className: nginx\$#\1className: $class#" \
    -e "s#^( *)controller: IngressNginx\$#\1controller: $controller#" \
    -e "s#^( *)image: ghcr.io/sessionops/session-app:dev\$#\1image: $APP_IMG\n\1imagePullPolicy: IfNotPresent#" \
    -e "s#^( *)image: redis:7.4\$#\1image: $store_img\n\1imagePullPolicy: IfNotPresent#" \
    "$SAMPLE" | k apply -n "$NS" -f -
  say "waiting for $SC to be Ready"
  if ! k -n "$NS" wait --for=condition=Ready "sessioncluster/$SC" --timeout=5m >/dev/null; then
    k -n "$NS" get sessionclusters,pods >&2 || true
    k -n "$NS" get events --sort-by=.metadata.creationTimestamp 2>/dev/null | tail -20 >&2 || true
    die "$SC did not become Ready; see the events above and: kubectl -n $NS describe sessioncluster $SC"
  fi
  local ready=$((SECONDS - t0))
  local addr
  addr=$(k -n "$NS" get ingress "$SC-web" -o jsonpath='{.status.loadBalancer.ingress[0].ip}{.status.loadBalancer.ingress[0].hostname}')

  local kc="kubectl"
  [ "$KUBECTL" = "$(command -v kubectl 2>/dev/null)" ] || kc="$KUBECTL"
  cat <<EOF

$(k get sessionclusters -n "$NS")

The hybrid SessionCluster is Ready ($ready s after apply; $((SECONDS - start)) s for the whole demo).
Mode Sticky with a store: 3 app pods, a Redis primary with 2 replicas, 3 Sentinels.

Use the cluster from this shell:
  export KUBECONFIG=$KUBECONFIG
  alias kubectl=$kc
  kubectl -n $NS get sessionclusters,pods,svc,ingress

Open the app through the ingress controller, at the address it published in the
Ingress's status ($addr), with the Ingress's host:
  curl -s -c /tmp/demo.jar -X POST -H 'Host: checkout.example.com' http://$addr/login
                                                             # new session: cookies "sid" and "route"
  curl -s -b /tmp/demo.jar -H 'Host: checkout.example.com' http://$addr/session
                                                             # counter +1; "instance" stays the same pod
  (or, without the ingress: kubectl -n $NS port-forward service/$SC-web 8080:8080, then
   curl -s -c /tmp/demo.jar -X POST localhost:8080/login; curl -s -b /tmp/demo.jar localhost:8080/session)

Watch a failover:
  kubectl -n $NS get sessionclusters -w                      # terminal 1: watch PRIMARY
  kubectl -n $NS delete pod \$(kubectl -n $NS get sessc $SC -o jsonpath='{.status.store.primary}')
                                                             # terminal 2: planned (preStop hands over)
  kubectl -n $NS delete pod \$(kubectl -n $NS get sessc $SC -o jsonpath='{.status.store.primary}') --grace-period=0 --force
                                                             # or abrupt: Sentinel fails over
  kubectl -n $NS get sessc $SC -o jsonpath='{.status.store.lastFailover}{"\n"}'
  curl -s -b /tmp/demo.jar -H 'Host: checkout.example.com' http://$addr/session
                                                             # same session, the counter goes on

The operator:  kubectl -n $OPERATOR_NS logs deploy/$RELEASE
Clean up:      make demo-down
EOF
}

down() {
  say "removing the demo cluster: hack/local-cluster.sh down"
  hack/local-cluster.sh down
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
