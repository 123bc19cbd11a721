#!/bin/sh
# Runs before a Redis Cluster server stops (a drain, a rollout, a deleted pod). A primary
# first hands its shard to one of its replicas with CLUSTER FAILOVER, sent to that replica:
# Redis pauses the primary's clients, lets the replica reach the primary's offset, then
# swaps them, so no acknowledged write is lost and clients follow the MOVED replies. With
# no replica online, or no handover within PRESTOP_SECONDS, it just stops: the replicas
# fail it over after cluster-node-timeout, or it comes back as the primary it was.
set -u
. "$CONFIG_DIR/common.sh"
self=${BIND_PROBE_HOST:-127.0.0.1}
budget=${PRESTOP_SECONDS:-30}
deadline=$(( $(date +%s) + budget ))
i=$(rcli "$self" "$REDIS_PORT" INFO replication) || exit 0
[ "$(info_field "$i" role)" = "master" ] || exit 0
# The online replica furthest along: "slaveN:ip=...,port=...,state=online,offset=N,lag=N".
best=$(printf '%s\n' "$i" | tr -d '\r' | sed -n 's/^slave[0-9]*:ip=\([^,]*\),port=\([0-9]*\),state=online,offset=\([0-9]*\).*/\3 \1 \2/p' | sort -nr | head -n 1)
if [ -z "$best" ]; then
  log "this server is a primary with no replica online: stopping without a handover"
  exit 0
fi
set -- $best
out=$(rcli "$2" "$3" CLUSTER FAILOVER)
case "$out" in
  OK*) log "this server is a primary: handing its shard to $2 before stopping" ;;
  *) log "replica $2 refused the handover ($out): stopping anyway"; exit 0 ;;
esac
while [ "$(date +%s)" -lt "$deadline" ]; do
  sleep 0.2
  if [ "$(rcli "$self" "$REDIS_PORT" ROLE | head -n 1 | tr -d '\r')" = "slave" ]; then
    log "handed over to $2"
    exit 0
  fi
done
log "no handover within ${budget}s; stopping anyway"
