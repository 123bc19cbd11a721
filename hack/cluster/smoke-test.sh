#!/usr/bin/env bash
# Proves a cluster from hack/local-cluster.sh (or any cluster in $KUBECONFIG with the
# session-redis:7.0 image and a default StorageClass) does what the e2e suite needs:
# restricted Pod Security enforced, a StatefulSet with a headless Service and 1Gi claims
# (claims bind), per-pod DNS names (also for not-ready pods with
# publishNotReadyAddresses), a ClusterIP Service, and kubectl logs / exec /
# port-forward from the host. Cleans up after itself.
#
# usage: hack/cluster/smoke-test.sh       (exit 0 and "N passed, 0 failed" when all pass)
set -uo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
export KUBECONFIG=${KUBECONFIG:-$root/bin/cluster/kubeconfig}
K=${KUBECTL:-$root/bin/k8s/${K8S_VERSION:-1.37.2}/kubectl}
[ -x "$K" ] || K=kubectl
NS=${SMOKE_NAMESPACE:-smoke}
IMAGE=${SMOKE_IMAGE:-session-redis:7.0}
PF_PORT=${SMOKE_PF_PORT:-16379}
pass=0 fail=0

check() { # DESCRIPTION COMMAND...
  local what=$1; shift
  local out
  if out=$("$@" 2>&1); then
    pass=$((pass + 1)); echo "ok   $what"
  else
    fail=$((fail + 1)); echo "FAIL $what"; echo "$out" | tail -15 | sed 's/^/     /'
  fi
}

k() { "$K" "$@"; }
kx() { "$K" -n "$NS" "$@"; }

cleanup() {
  [ -n "${pf_pid:-}" ] && kill "$pf_pid" 2>/dev/null
  k delete namespace "$NS" --wait=false --ignore-not-found >/dev/null 2>&1
}
trap cleanup EXIT

t0=$(date +%s)
check "node is Ready" k wait --for=condition=Ready node --all --timeout=60s
k delete namespace "$NS" --ignore-not-found --timeout=120s >/dev/null 2>&1
k create namespace "$NS" >/dev/null
k label namespace "$NS" pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/enforce-version=latest >/dev/null

check "restricted PSS rejects a root, privileged pod" bash -c "'$K' -n '$NS' run bad --image='$IMAGE' --image-pull-policy=Never --restart=Never \
  --overrides='{\"spec\":{\"containers\":[{\"name\":\"bad\",\"image\":\"$IMAGE\",\"securityContext\":{\"privileged\":true}}]}}' 2>&1 | tee /dev/stderr | grep -q 'violates PodSecurity'"

sc='securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}, runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}'
kx apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Service
metadata: {name: x}
spec:
  clusterIP: None
  publishNotReadyAddresses: true
  selector: {app: x}
  ports: [{name: redis, port: 6379}]
---
apiVersion: v1
kind: Service
metadata: {name: x-svc}
spec:
  selector: {app: x}
  ports: [{name: redis, port: 6379, targetPort: 6379}]
---
apiVersion: v1
kind: Service
metadata: {name: x0-only}
spec:
  selector: {statefulset.kubernetes.io/pod-name: x-0}
  ports: [{name: redis, port: 6379}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: x}
spec:
  serviceName: x
  replicas: 2
  podManagementPolicy: Parallel
  selector: {matchLabels: {app: x}}
  template:
    metadata: {labels: {app: x}}
    spec:
      securityContext: {runAsNonRoot: true, runAsUser: 999, runAsGroup: 999, fsGroup: 999, seccompProfile: {type: RuntimeDefault}}
      terminationGracePeriodSeconds: 2
      containers:
      - name: redis
        image: $IMAGE
        imagePullPolicy: IfNotPresent
        command: [sh, -c, 'echo "booting \$(hostname) as \$(id -u)"; exec redis-server --dir /data --appendonly yes --protected-mode no']
        ports: [{containerPort: 6379, name: redis}]
        readinessProbe:
          exec: {command: [redis-cli, ping]}
          periodSeconds: 2
        $sc
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: Service
metadata: {name: nr}
spec:
  clusterIP: None
  publishNotReadyAddresses: true
  selector: {app: nr}
  ports: [{name: redis, port: 6379}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: nr}
spec:
  serviceName: nr
  replicas: 1
  selector: {matchLabels: {app: nr}}
  template:
    metadata: {labels: {app: nr}}
    spec:
      securityContext: {runAsNonRoot: true, runAsUser: 999, seccompProfile: {type: RuntimeDefault}}
      terminationGracePeriodSeconds: 1
      containers:
      - name: never-ready
        image: $IMAGE
        imagePullPolicy: Never
        command: [sleep, "3600"]
        readinessProbe:
          exec: {command: ["false"]}
          periodSeconds: 2
        $sc
YAML

check "StatefulSet x (2 pods, restricted, 1Gi claims) becomes ready" kx rollout status statefulset/x --timeout=180s
check "both claims are Bound" bash -c "test \"\$('$K' -n '$NS' get pvc -o jsonpath='{range .items[*]}{.status.phase}{\"\\n\"}{end}' | grep -c '^Bound$')\" = 2"
check "claims are 1Gi local volumes of class standard" bash -c "'$K' get pv -o jsonpath='{range .items[?(@.spec.claimRef.namespace==\"$NS\")]}{.spec.capacity.storage} {.spec.storageClassName} {.spec.local.path}{\"\\n\"}{end}' | tee /dev/stderr | grep -c '^1Gi standard /' | grep -qx 2"
check "pods run as uid 999 under the restricted profile" bash -c "'$K' -n '$NS' exec x-0 -- id -u | grep -qx 999"
check "x-1 resolves x-0.x.$NS.svc.cluster.local" kx exec x-1 -- nslookup "x-0.x.$NS.svc.cluster.local"
check "x-1 reaches x-0 by its DNS name with redis-cli" bash -c "'$K' -n '$NS' exec x-1 -- redis-cli -h x-0.x.$NS.svc.cluster.local set smoke hello | grep -qx OK &&
  '$K' -n '$NS' exec x-1 -- redis-cli -h x-0.x.$NS.svc.cluster.local get smoke | grep -qx hello"
check "x-0 writes to its volume (/data/appendonlydir)" kx exec x-0 -- sh -c 'redis-cli bgrewriteaof >/dev/null; sleep 1; ls /data/appendonlydir | grep -q aof'
check "not-ready pod nr-0 has a DNS name (publishNotReadyAddresses)" bash -c "
  for i in \$(seq 30); do '$K' -n '$NS' exec x-1 -- nslookup nr-0.nr.$NS.svc.cluster.local >/dev/null 2>&1 && exit 0; sleep 1; done; exit 1"
check "nr-0 is indeed not ready" bash -c "test \"\$('$K' -n '$NS' get pod nr-0 -o jsonpath='{.status.containerStatuses[0].ready}')\" = false"
check "ClusterIP Service x-svc answers from a pod (short name)" bash -c "'$K' -n '$NS' exec x-1 -- redis-cli -h x-svc ping | grep -qx PONG"
check "ClusterIP Service answers by FQDN" bash -c "'$K' -n '$NS' exec x-0 -- redis-cli -h x-svc.$NS.svc.cluster.local ping | grep -qx PONG"
check "kubernetes Service (apiserver) reachable from a pod" kx exec x-0 -- sh -c 'echo | timeout 5 nc -w 3 kubernetes.default.svc.cluster.local 443'
check "a pod reaches itself through its own Service (hairpin)" bash -c "'$K' -n '$NS' exec x-0 -- redis-cli -h x0-only ping | grep -qx PONG"
if [ -e /var/run/netns/sessops-node ]; then
  check "the node has no route out (local cluster)" bash -c "! nsenter --net=/var/run/netns/sessops-node ip route get 203.0.113.1"
  check "pods cannot open connections to the host side of the node link" bash -c "! '$K' -n '$NS' exec x-0 -- sh -c 'echo | timeout 5 nc -w 3 10.213.0.1 22'"
fi
check "names outside cluster.local do not resolve (nothing forwarded)" bash -c "! '$K' -n '$NS' exec x-0 -- timeout 5 nslookup example.com"
check "kubectl logs" bash -c "'$K' -n '$NS' logs x-0 | tee /dev/stderr | grep -q 'Ready to accept connections'"
"$K" -n "$NS" port-forward svc/x-svc "$PF_PORT:6379" >/tmp/smoke-port-forward.log 2>&1 &
pf_pid=$!
check "kubectl port-forward to the Service, redis-cli from the host" bash -c "
  for i in \$(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$PF_PORT) 2>/dev/null && break; sleep 0.2; done
  if command -v redis-cli >/dev/null; then redis-cli -p $PF_PORT ping | grep -qx PONG
  else exec 3<>/dev/tcp/127.0.0.1/$PF_PORT; printf 'PING\r\n' >&3; timeout 3 head -c 7 <&3 | grep -q PONG; fi"
kill "$pf_pid" 2>/dev/null; pf_pid=

check "deleting the claims removes their volumes" bash -c "
  pvs=\$('$K' get pv -o jsonpath='{range .items[?(@.spec.claimRef.namespace==\"$NS\")]}{.metadata.name} {end}')
  '$K' -n '$NS' delete statefulset x nr --wait=true --timeout=60s >/dev/null &&
  '$K' -n '$NS' delete pvc --all --wait=true --timeout=60s >/dev/null &&
  for i in \$(seq 60); do left=0; for pv in \$pvs; do '$K' get pv \$pv >/dev/null 2>&1 && left=1; done; [ \$left = 0 ] && exit 0; sleep 1; done; exit 1"

echo "smoke test took $(( $(date +%s) - t0 ))s"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
