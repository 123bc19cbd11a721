#!/bin/sh
# Boots one Redis server of a session store. The rules, in order:
#   1. Whoever the Sentinels name as primary is followed; failing that, whoever the
#      other servers follow.
#   2. A server named primary that restarted while others hold its data asks the
#      Sentinels to fail over and waits: it never comes back as an empty primary.
#   3. Only when nobody knows a primary (the very first start) does the first server
#      elect itself; the others wait for it.
set -eu
. "$CONFIG_DIR/common.sh"

MY_HOST="$POD_NAME.$STORE_DOMAIN"
FIRST_HOST=${STORE_HOSTS%% *}
: "${BIND_ADDRESS:=* -::*}"

decide_master() {
  while :; do
    if m=$(sentinel_master); then
      if [ "$m" != "$MY_HOST" ]; then echo "$m"; return; fi
      if ! peers_hold_data; then echo "$MY_HOST"; return; fi
      log "sentinels name this server primary but replicas hold its data: asking for a failover"
      for s in $SENTINEL_HOSTS; do
        rcli "$s" "$SENTINEL_PORT" SENTINEL FAILOVER "$MASTER_NAME" >/dev/null || true
      done
    elif m=$(peer_master); then
      echo "$m"; return
    elif [ "$MY_HOST" = "$FIRST_HOST" ]; then
      log "no sentinel or server knows a primary: first start, electing $MY_HOST"
      echo "$MY_HOST"; return
    else
      log "waiting for $FIRST_HOST to become the first primary"
    fi
    sleep 2
  done
}

master=$(decide_master)
conf="$RUN_DIR/redis.conf"
umask 077
{
  echo "include $CONFIG_DIR/redis.conf"
  echo "bind $BIND_ADDRESS"
  echo "port $REDIS_PORT"
  echo "dir $DATA_DIR"
  echo "replica-announce-ip $MY_HOST"
  echo "replica-announce-port $REDIS_PORT"
  echo "requirepass \"$REDISCLI_AUTH\""
  echo "masterauth \"$REDISCLI_AUTH\""
  if [ "$master" != "$MY_HOST" ]; then echo "replicaof $master $REDIS_PORT"; fi
} >"$conf"
if [ "$master" = "$MY_HOST" ]; then log "starting as primary"; else log "starting as replica of $master"; fi
exec redis-server "$conf"
