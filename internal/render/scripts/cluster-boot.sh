#!/bin/sh
# Boots one Redis Cluster server of a sharded session store. Unlike a Sentinel store's
# server it decides nothing at boot: the node table (nodes.conf, next to the data, on the
# claim with persistence) says which shard this node is in and whether it is a primary or a
# replica, and the operator (internal/rediscluster) meets, places and heals the nodes. A
# rescheduled pod with a new address comes back with its node ID and tells the others its
# new address; it announces its stable DNS name, which clients are redirected to.
set -eu
. "$CONFIG_DIR/common.sh"

MY_HOST="$POD_NAME.$STORE_DOMAIN"
: "${BIND_ADDRESS:=* -::*}"
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
