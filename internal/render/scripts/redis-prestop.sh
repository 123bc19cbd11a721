#!/bin/sh
# Runs before a Redis server stops. Rollouts and scale-downs never get here as the
# primary: the operator hands over first (internal/store Admin.Switchover). A drain or an
# eviction of the primary's pod does, and then the primary hands over without losing an
# acknowledged write: a bare SENTINEL FAILOVER would leave the old primary taking writes
# (and a replica acknowledging them) until Sentinel reconfigures it, and those writes
# vanish when that replica resyncs from the new primary. So:
#   1. never race a failover already under way: if any Sentinel reports one (or the
#      primary down), just stop;
#   2. never hand over to replicas that are stopping too (every store pod lost at once):
#      Sentinel would promote a dying replica, the failover would fail, and Sentinel would
#      not try again for 2 x failover-timeout. Their own preStop returns at once, so after
#      a moment they are gone from the replication list; with none left, just stop (the
#      primary comes back as the primary, or Sentinel promotes a replica that came back);
#   3. pause writes here;   4. wait until every replica has everything;
#   5. ask ONE Sentinel ONCE for the failover (asking again, or several, is how two
#      replicas got promoted at once);   6. follow the new primary;   7. unpause.
set -u
. "$CONFIG_DIR/common.sh"
MY_HOST="$POD_NAME.$STORE_DOMAIN"
self=${BIND_PROBE_HOST:-127.0.0.1}
budget=${PRESTOP_SECONDS:-30}
deadline=$(( $(date +%s) + budget ))
# Whatever happens next, remember who the primary is (see last_primary).
if i=$(rcli "$self" "$REDIS_PORT" INFO replication); then
  case "$(info_field "$i" role)" in
    master) remember_primary "$MY_HOST" ;;
    slave) remember_primary "$(info_field "$i" master_host)" ;;
  esac
fi
m=$(sentinel_master) || exit 0
[ "$m" = "$MY_HOST" ] || exit 0

# 1.
for s in $SENTINEL_HOSTS; do
  flags=$(rcli "$s" "$SENTINEL_PORT" SENTINEL MASTER "$MASTER_NAME" | tr -d '\r' | awk 'f { print; exit } NR % 2 == 1 && $0 == "flags" { f = 1 }')
  case "$flags" in
    *failover_in_progress*|*o_down*|*s_down*)
      log "sentinel $s reports $flags: a failover is under way, not asking for another"
      exit 0 ;;
  esac
done

# 2.
online_replicas() {
  rcli "$self" "$REDIS_PORT" INFO replication | tr -d '\r' | grep -c '^slave[0-9]*:.*state=online' || true
}
sleep "${PRESTOP_SETTLE_SECONDS:-1}"
if [ "$(online_replicas)" -eq 0 ]; then
  log "no replica left to take over (the whole store is stopping?): stopping without a failover"
  exit 0
fi
log "this server is the primary: handing over before stopping"

# 3.
rcli "$self" "$REDIS_PORT" CLIENT PAUSE $(( budget * 1000 )) WRITE >/dev/null
trap 'rcli "$self" "$REDIS_PORT" CLIENT UNPAUSE >/dev/null' EXIT

# 4. every online replica at the primary's offset
while [ "$(date +%s)" -lt "$deadline" ]; do
  i=$(rcli "$self" "$REDIS_PORT" INFO replication) || break
  want=$(info_field "$i" master_repl_offset)
  behind=$(printf '%s\n' "$i" | tr -d '\r' | sed -n 's/^slave[0-9]*:.*state=online,offset=\([0-9]*\).*/\1/p' | grep -vx "$want" | wc -l)
  [ "$behind" -eq 0 ] && break
  sleep 0.2
done
if [ "$(online_replicas)" -eq 0 ]; then
  log "the replicas went away while catching up: stopping without a failover"
  exit 0
fi

# 5.
asked=
for s in $SENTINEL_HOSTS; do
  out=$(rcli "$s" "$SENTINEL_PORT" SENTINEL FAILOVER "$MASTER_NAME")
  case "$out" in
    OK*) asked=$s; break ;;
    *INPROG*|*NOGOODSLAVE*) log "sentinel $s: $out; stopping without a handover"; exit 0 ;;
  esac
done
[ -n "$asked" ] || { log "no sentinel accepted the failover; stopping anyway"; exit 0; }

# 6.
new=
while [ "$(date +%s)" -lt "$deadline" ]; do
  sleep 0.2
  m=$(sentinel_master) || continue
  if [ "$m" != "$MY_HOST" ]; then new=$m; break; fi
done
if [ -z "$new" ]; then
  log "no failover within ${budget}s; stopping anyway"
  exit 0
fi
rcli "$self" "$REDIS_PORT" REPLICAOF "$new" "$REDIS_PORT" >/dev/null
remember_primary "$new"
log "handed over to $new (failover asked of $asked)"
