#!/usr/bin/env bash
# Runs the session-tomcat image's own files (no container runtime) as three Tomcat servers
# on loopback addresses and checks what the cluster must do: a session made on one server
# is read on the others, a server started later copies every session, a stopped server
# loses nothing. Needs root (chroot, bind mounts).
#
#   examples/tomcat/loopback-test.sh [bin/images/session-tomcat.tar]
#
# The three servers resolve one name, peers.test, to 127.0.0.2-4 through a hosts file
# (-Djdk.net.hosts.file), which stands in for the headless peer Service.
set -euo pipefail
tar=${1:-bin/images/session-tomcat.tar}
[ "$(id -u)" = 0 ] || { echo "loopback-test.sh: run as root" >&2; exit 1; }
work=$(mktemp -d)
root=$work/rootfs
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 2
  umount "$root/proc" "$root/dev" 2>/dev/null || true
  if [ "${KEEP:-}" = 1 ]; then echo "logs in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
mkdir -p "$work/oci" "$root"
tar -xf "$tar" -C "$work/oci"
layer=$(ls -S "$work"/oci/blobs/sha256/* | head -1)
tar -xzf "$layer" -C "$root"
mkdir -p "$root/proc" "$root/dev" "$root/run"
mount --bind /proc "$root/proc"
mount --bind /dev "$root/dev"
host=$(hostname)

start() { # start N ADDRESS HTTP_PORT
  local n=$1 addr=$2 port=$3
  cp -a "$root/usr/local/tomcat" "$root/run/$n"
  chown -R 65532:65532 "$root/run/$n"
  printf '127.0.0.1 localhost\n%s %s\n127.0.0.2 peers.test\n127.0.0.3 peers.test\n127.0.0.4 peers.test\n' "$addr" "$host" >"$root/tmp/hosts-$n"
  setsid chroot --userspec=65532:65532 "$root" /bin/env -i PATH=/usr/bin:/bin HOME=/tmp \
    CATALINA_HOME=/usr/share/tomcat10 CATALINA_BASE="/run/$n" \
    POD_NAME="tomcat-$n" PORT="$port" SESSION_PEERS_PORT=4000 DNS_MEMBERSHIP_SERVICE_NAME=peers.test \
    "JAVA_OPTS=-XX:+UseSerialGC -Xmx192m -XX:TieredStopAtLevel=1 -Djdk.net.hosts.file=/tmp/hosts-$n" \
    /usr/local/bin/tomcat-start >"$work/$n.log" 2>&1 &
  pids+=($!)
  local i
  for i in $(seq 60); do
    curl -sf "localhost:$port/healthz" >/dev/null 2>&1 && return 0
    sleep 1
  done
  echo "server $n did not become healthy; its log:" >&2
  tail -30 "$work/$n.log" >&2
  return 1
}
counter() { sed -n 's/.*"counter":\([0-9-]*\).*/\1/p'; }
fail=0
check() { # check WHAT WANT GOT
  if [ "$2" = "$3" ]; then echo "ok   $1"; else echo "FAIL $1: want $2, got $3"; fail=1; fi
}

start a 127.0.0.2 18080
start b 127.0.0.3 18081
ids=()
for i in $(seq 20); do
  id=$(curl -s -X POST localhost:18080/login | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
  curl -s -H "Cookie: JSESSIONID=$id" localhost:18080/session >/dev/null
  ids+=("$id")
done
got=0
for id in "${ids[@]}"; do
  [ "$(curl -s -H "Cookie: JSESSIONID=$id" 'localhost:18081/session?read=1' | counter)" = 1 ] && got=$((got + 1))
done
check "20 sessions made on a, read on b" 20 "$got"
check "an unknown session is 404, not a new one" 404 "$(curl -s -o /dev/null -w '%{http_code}' -H 'Cookie: JSESSIONID=nope' 'localhost:18081/session?read=1')"

start c 127.0.0.4 18082
got=0
for id in "${ids[@]}"; do
  [ "$(curl -s -H "Cookie: JSESSIONID=$id" 'localhost:18082/session?read=1' | counter)" = 1 ] && got=$((got + 1))
done
check "c, started later, copied every session" 20 "$got"
curl -s -H "Cookie: JSESSIONID=${ids[0]}" localhost:18082/session >/dev/null
check "a write on c is read on a" 2 "$(curl -s -H "Cookie: JSESSIONID=${ids[0]}" 'localhost:18080/session?read=1' | counter)"

kill "${pids[0]}"
sleep 3
got=0
for id in "${ids[@]}"; do
  [ -n "$(curl -s -H "Cookie: JSESSIONID=$id" 'localhost:18081/session?read=1' | counter)" ] && got=$((got + 1))
done
check "a stopped: b still holds every session" 20 "$got"
exit $fail
