#!/bin/sh
# Runs before a Redis server stops. A primary hands over first: it asks the Sentinels for
# a failover and waits until they name someone else, so a rolling update or a drain costs
# clients one brief switch instead of a down-after wait on a dead primary.
set -u
. "$CONFIG_DIR/common.sh"
MY_HOST="$POD_NAME.$STORE_DOMAIN"
deadline=$(( $(date +%s) + ${PRESTOP_SECONDS:-30} ))
m=$(sentinel_master) || exit 0
[ "$m" = "$MY_HOST" ] || exit 0
log "this server is the primary: asking for a failover before stopping"
while [ "$(date +%s)" -lt "$deadline" ]; do
  for s in $SENTINEL_HOSTS; do
    out=$(rcli "$s" "$SENTINEL_PORT" SENTINEL FAILOVER "$MASTER_NAME")
    case "$out" in OK*|*INPROG*) break ;; esac
  done
  sleep 1
  m=$(sentinel_master) || continue
  if [ "$m" != "$MY_HOST" ]; then log "handed over to $m"; exit 0; fi
done
log "no failover within ${PRESTOP_SECONDS:-30}s; stopping anyway"
