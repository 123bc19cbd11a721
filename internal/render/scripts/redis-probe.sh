#!/bin/sh
# Probes a Redis server of the session store.
#   redis-probe.sh live   : the process answers at all (LOADING and MASTERDOWN count)
#   redis-probe.sh ready  : a primary answers PING; a replica also has its link to the
#                           primary up and is not loading, so it really holds the data
set -eu
. "$CONFIG_DIR/common.sh"
host=${BIND_PROBE_HOST:-127.0.0.1}
CLI_TIMEOUT=${PROBE_TIMEOUT:-2}
case "${1:-ready}" in
  live)
    out=$(rcli "$host" "$REDIS_PORT" PING) || exit 1
    case "$out" in PONG*|LOADING*|MASTERDOWN*) exit 0 ;; esac
    echo "ping: $out"; exit 1 ;;
  ready)
    i=$(rcli "$host" "$REDIS_PORT" INFO) || { echo "no answer"; exit 1; }
    [ "$(info_field "$i" loading)" = "0" ] || { echo "loading"; exit 1; }
    case "$(info_field "$i" role)" in
      master) remember_primary "$POD_NAME.$STORE_DOMAIN"; exit 0 ;;
      slave)
        link=$(info_field "$i" master_link_status)
        [ "$link" = "up" ] && { remember_primary "$(info_field "$i" master_host)"; exit 0; }
        echo "master_link_status:$link"; exit 1 ;;
    esac
    echo "unknown role"; exit 1 ;;
esac
