#!/bin/sh
# Runs before a Redis server stops. A primary hands over first, without losing an
# acknowledged write: a bare SENTINEL FAILOVER would leave the old primary taking writes
# (and a replica acknowledging them) until Sentinel reconfigures it, and those writes
# vanish when that replica resyncs from the new primary. So:
#   1. pause writes here;   2. wait until every replica has everything;
#   3. ask for the failover;   4. follow the new primary;   5. unpause.
# A rolling update or a drain then costs clients one brief pause instead of a down-after
# wait on a dead primary.
set -u
. "$CONFIG_DIR/common.sh"
MY_HOST="$POD_NAME.$STORE_DOMAIN"
self=${BIND_PROBE_HOST:-127.0.0.1}
budget=${PRESTOP_SECONDS:-30}
deadline=$(( $(date +%s) + budget ))
m=$(sentinel_master) || exit 0
[ "$m" = "$MY_HOST" ] || exit 0
log "this server is the primary: handing over before stopping"

rcli "$self" "$REDIS_PORT" CLIENT PAUSE $(( budget * 1000 )) WRITE >/dev/null
trap 'rcli "$self" "$REDIS_PORT" CLIENT UNPAUSE >/dev/null' EXIT

# 2. every online replica at the primary's offset
while [ "$(date +%s)" -lt "$deadline" ]; do
  i=$(rcli "$self" "$REDIS_PORT" INFO replication) || break
  want=$(info_field "$i" master_repl_offset)
  behind=$(printf '%s\n' "$i" | tr -d '\r' | sed -n 's/^slave[0-9]*:.*state=online,offset=\([0-9]*\).*/\1/p' | grep -vx "$want" | wc -l)
  [ "$behind" -eq 0 ] && break
  sleep 0.2
done

# 3. and 4.
new=
while [ "$(date +%s)" -lt "$deadline" ]; do
  for s in $SENTINEL_HOSTS; do
    out=$(rcli "$s" "$SENTINEL_PORT" SENTINEL FAILOVER "$MASTER_NAME")
    case "$out" in OK*|*INPROG*) break ;; esac
  done
  sleep 0.5
  m=$(sentinel_master) || continue
  if [ "$m" != "$MY_HOST" ]; then new=$m; break; fi
done
if [ -z "$new" ]; then
  log "no failover within ${budget}s; stopping anyway"
  exit 0
fi
rcli "$self" "$REDIS_PORT" REPLICAOF "$new" "$REDIS_PORT" >/dev/null
log "handed over to $new"
