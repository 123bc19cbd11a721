#!/bin/sh
# Boots one Redis Cluster server of a sharded session store. Unlike a Sentinel store's
# server it decides nothing at boot: the node table (nodes.conf, next to the data, on the
# claim with persistence) says which shard this node is in and whether it is a primary or a
# replica, and the operator (internal/rediscluster) meets, places and heals the nodes. A
# rescheduled pod with a new address comes back with its node ID and tells the others its
# new address; it announces its stable DNS name, which clients are redirected to.
#
# One rule, as for a Sentinel store's server: a primary that restarted (its container
# killed, its node table still there) does not come back while a replica of its shard
# runs and has not taken over. Back at once, it would be the primary again with only what
# its append-only file held (up to a second less than its replicas acknowledged with WAIT),
# and the replicas would resynchronise from it and drop the rest. Waiting, the replicas
# see it fail after cluster-node-timeout and promote one; the restarted node then finds
# its slots taken at a newer epoch and follows the new primary. A replica that does not
# answer holds nothing to protect: then it starts at once.
set -eu
. "$CONFIG_DIR/common.sh"

MY_HOST="$POD_NAME.$STORE_DOMAIN"
: "${BIND_ADDRESS:=* -::*}"
nodes="$DATA_DIR/nodes.conf"

# replica_addrs: where the replicas are that nodes.conf says this node, a primary with
# slots, has, as "host:port" words: each by its host name (stable) and by its last known
# address (for a harness without DNS); empty when this node is not such a primary.
replica_addrs() {
  awk -v port="$REDIS_PORT" '$3 ~ /myself/ && $3 ~ /master/ && NF > 8 { me = $1 } { id[NR] = $4; addr[NR] = $2 }
    END { if (me == "") exit
      for (i in id) if (id[i] == me) {
        n = split(addr[i], a, ","); split(a[1], ip, "@")
        if (n > 1 && a[2] != "") print a[2] ":" port
        print ip[1]
      } }' "$nodes" 2>/dev/null
}

wait_for_takeover() {
  [ -s "$nodes" ] || return 0
  hosts=$(replica_addrs | tr "\n" " ") || return 0
  [ -n "$hosts" ] || return 0
  me=$(awk '$3 ~ /myself/ { print $1 }' "$nodes")
  timeout_ms=$(sed -n 's/^cluster-node-timeout //p' "$CONFIG_DIR/redis.conf" | head -n 1)
  deadline=$(( $(date +%s) + 3 * ${timeout_ms:-5000} / 1000 + 30 ))
  n=0
  while [ "$(date +%s)" -lt "$deadline" ]; do
    answered=
    for h in $hosts; do
      out=$(rcli "${h%:*}" "${h##*:}" CLUSTER NODES) || continue
      [ -n "$out" ] || continue
      answered=1
      # The replica took over (it is a primary now), or it knows this node is gone and
      # follows nobody: either way the data is safe with it.
      if printf '%s\n' "$out" | awk '$3 ~ /myself/ && $3 ~ /master/ { ok = 1 } END { exit !ok }'; then
        log "replica $h took over this node's shard: starting, to follow it"
        return 0
      fi
    done
    if [ -z "$answered" ]; then
      log "no replica of this node's shard answers: starting as its primary"
      return 0
    fi
    [ $((n % 10)) -eq 0 ] && log "this node was a primary and its replicas ($hosts) hold its writes: waiting for one to take over (node $me)"
    n=$((n + 1))
    sleep 1
  done
  log "no replica took over in time: starting anyway"
}

wait_for_takeover
conf="$RUN_DIR/redis.conf"
umask 077
{
  echo "include $CONFIG_DIR/redis.conf"
  echo "bind $BIND_ADDRESS"
  echo "port $REDIS_PORT"
  echo "dir $DATA_DIR"
  echo "cluster-announce-hostname $MY_HOST"
  cat "$USERS_DIR/users.acl"
  echo "masteruser replication"
  echo "masterauth \"$(cat "$USERS_DIR/replication")\""
} >"$conf"
if [ -s "$DATA_DIR/nodes.conf" ]; then log "starting as $MY_HOST with its node table"; else log "starting as $MY_HOST, a new node"; fi
exec redis-server "$conf"
