#!/bin/sh
# Boots one Redis server of a session store. The rules, in order:
#   1. Whoever the Sentinels name as primary is followed; failing that, whoever the
#      other servers follow.
#   2. A server named primary that restarted while others hold its data does not start:
#      it waits until the Sentinels, finding it down, promote a replica, then follows
#      that one. It never comes back as an empty primary. It does not force the
#      failover (SENTINEL FAILOVER): a forced failover skips the Sentinels' election, so
#      when more than one Sentinel fails over at once (several asked, or one asked while
#      another starts its own after down-after) two replicas get promoted; the data-path
#      harness saw that end in two primaries, then a replication loop. Waiting costs
#      down-after plus the failover, the same as a crash.
#   3. When nobody knows a primary (every server and Sentinel restarted at once), the
#      server that was the primary when it stopped (its data directory says so, see
#      last_primary) elects itself; the others wait for it (LAST_PRIMARY_WAIT seconds,
#      default 60, in case it never comes back).
#   4. Only when nobody knows a primary and no server remembers one (the very first
#      start) does the first server elect itself; the others wait for it.
set -eu
. "$CONFIG_DIR/common.sh"

MY_HOST="$POD_NAME.$STORE_DOMAIN"
FIRST_HOST=${STORE_HOSTS%% *}
: "${BIND_ADDRESS:=* -::*}"

decide_master() {
  n=0
  last=$(last_primary)
  while :; do
    if m=$(sentinel_master); then
      if [ "$m" != "$MY_HOST" ]; then echo "$m"; return; fi
      if ! peers_hold_data; then echo "$MY_HOST"; return; fi
      [ $((n % 10)) -eq 0 ] && log "the sentinels name this server primary but replicas hold its data: waiting for them to promote one"
    elif m=$(peer_master); then
      echo "$m"; return
    elif [ "$last" = "$MY_HOST" ]; then
      log "no sentinel or server knows a primary; this server was the primary when it stopped: electing it"
      echo "$MY_HOST"; return
    elif [ -n "$last" ] && [ "$n" -lt "${LAST_PRIMARY_WAIT:-60}" ]; then
      [ $((n % 10)) -eq 0 ] && log "no sentinel or server knows a primary: waiting for $last, the primary when this server stopped"
    elif [ "$MY_HOST" = "$FIRST_HOST" ]; then
      log "no sentinel or server knows a primary: first start, electing $MY_HOST"
      echo "$MY_HOST"; return
    else
      [ $((n % 10)) -eq 0 ] && log "waiting for $FIRST_HOST to become the first primary"
    fi
    n=$((n + 1))
    sleep 1
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
  cat "$USERS_DIR/users.acl"
  echo "masteruser replication"
  echo "masterauth \"$(cat "$USERS_DIR/replication")\""
  if [ "$master" != "$MY_HOST" ]; then echo "replicaof $master $REDIS_PORT"; fi
} >"$conf"
if [ "$master" = "$MY_HOST" ]; then log "starting as primary"; else log "starting as replica of $master"; fi
exec redis-server "$conf"
