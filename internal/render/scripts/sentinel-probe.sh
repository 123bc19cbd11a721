#!/bin/sh
# Probes a Sentinel.
#   sentinel-probe.sh live   : it answers
#   sentinel-probe.sh ready  : it knows the primary, enough other Sentinels to make up the
#                              quorum with, and (when the store has replicas) a replica to
#                              promote. A Sentinel rebuilds what it knows at every start
#                              (sentinel-boot.sh), so right after a restart it could take
#                              part in no failover; a rolling update must not move on to the
#                              next one before it can.
set -eu
. "$CONFIG_DIR/common.sh"
host=${BIND_PROBE_HOST:-127.0.0.1}
CLI_TIMEOUT=${PROBE_TIMEOUT:-2}
case "${1:-ready}" in
  live) [ "$(rcli "$host" "$SENTINEL_PORT" PING)" = "PONG" ] ;;
  ready)
    out=$(rcli "$host" "$SENTINEL_PORT" SENTINEL MASTER "$MASTER_NAME") || { echo "no answer"; exit 1; }
    # field NAME: the value after NAME in the flat name/value reply.
    field() { printf '%s\n' "$out" | tr -d '\r' | awk -v k="$1" 'f { print; exit } NR % 2 == 1 && $0 == k { f = 1 }'; }
    [ -n "$(field ip)" ] || { echo "knows no primary"; exit 1; }
    sentinels=$(echo $SENTINEL_HOSTS | wc -w)
    servers=$(echo $STORE_HOSTS | wc -w)
    need=$((SENTINEL_QUORUM - 1))
    [ "$need" -lt "$sentinels" ] || need=$((sentinels - 1))
    others=$(field num-other-sentinels)
    [ "${others:-0}" -ge "$need" ] || { echo "knows ${others:-0} other sentinels, needs $need"; exit 1; }
    if [ "$servers" -gt 1 ]; then
      replicas=$(field num-slaves)
      [ "${replicas:-0}" -ge 1 ] || { echo "knows no replica"; exit 1; }
    fi ;;
esac
