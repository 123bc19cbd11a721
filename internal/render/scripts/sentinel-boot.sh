#!/bin/sh
# Boots one Sentinel. Its configuration is rebuilt at every start (Sentinel rewrites the
# file, so it lives in a private directory) with a stable id derived from its host name:
# a restarted Sentinel is the same Sentinel to its peers, so no stale entries pile up and
# the majority needed for a failover stays what the spec says.
set -eu
. "$CONFIG_DIR/common.sh"

MY_HOST="$POD_NAME.$SENTINEL_DOMAIN"
MY_ID=$(printf '%s' "$MY_HOST" | sha1sum | cut -c1-40)
: "${BIND_ADDRESS:=* -::*}"

others=
for s in $SENTINEL_HOSTS; do [ "$s" = "$MY_HOST" ] || others="$others $s"; done

# The primary: as another Sentinel knows it, else as the servers do. When neither knows
# (every pod restarting at once), wait for the servers to settle it among themselves
# (redis-boot.sh: the one that was the primary elects itself) rather than name the first
# server, which may hold older data; only after SENTINEL_BOOT_WAIT seconds (default 30,
# a first start's first server elects itself at once) fall back to the first server.
master=
n=0
while :; do
  for s in $others; do
    master=$(rcli "$s" "$SENTINEL_PORT" SENTINEL get-master-addr-by-name "$MASTER_NAME" | head -n 1 | tr -d '\r')
    [ -n "$master" ] && break
  done
  [ -n "$master" ] && break
  master=$(MY_HOST=; peer_master) && break
  if [ "$n" -ge "${SENTINEL_BOOT_WAIT:-30}" ]; then
    master=${STORE_HOSTS%% *}
    log "no sentinel or server names a primary after ${n}s: monitoring the first server"
    break
  fi
  [ $((n % 10)) -eq 0 ] && log "no sentinel or server names a primary yet: waiting"
  n=$((n + 1))
  sleep 1
done
# Sentinel refuses a monitor line whose host does not resolve; a first primary's DNS name
# appears only once its pod has an address.
until resolves "$master"; do log "waiting for $master to resolve"; sleep 1; done
log "monitoring $master as primary of $MASTER_NAME"

conf="$RUN_DIR/sentinel.conf"
umask 077
{
  echo "bind $BIND_ADDRESS"
  echo "port $SENTINEL_PORT"
  echo "dir $RUN_DIR"
  echo "sentinel myid $MY_ID"
  cat "$CONFIG_DIR/sentinel.conf"
  echo "sentinel announce-ip $MY_HOST"
  echo "sentinel announce-port $SENTINEL_PORT"
  cat "$USERS_DIR/sentinel-users.acl"
  echo "sentinel sentinel-user sentinel"
  echo "sentinel sentinel-pass \"$(cat "$USERS_DIR/sentinel")\""
  echo "sentinel monitor $MASTER_NAME $master $REDIS_PORT $SENTINEL_QUORUM"
  echo "sentinel auth-user $MASTER_NAME sentinel"
  echo "sentinel auth-pass $MASTER_NAME \"$(cat "$USERS_DIR/sentinel")\""
  cat "$CONFIG_DIR/sentinel-master.conf"
} >"$conf"
exec redis-sentinel "$conf"
