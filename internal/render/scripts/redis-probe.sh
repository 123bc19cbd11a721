#!/bin/sh
# Probes a Redis server of the session store.
#   redis-probe.sh live   : the process answers at all (LOADING and MASTERDOWN count)
#   redis-probe.sh ready  : a primary answers and is the one the Sentinels name; a
#                           replica also has its link to the primary up and is not
#                           loading, so it really holds the data
#
# role:master alone does not make a primary: an old primary that was frozen (SIGSTOP) or cut
# off still says master when it comes back, until a Sentinel turns it into a replica, and
# clients that reach it then write where nobody reads. So a master is ready only when at
# least as many reachable Sentinels name it as name any other server (asked at once, one
# second each, as the operator user whose password reaches redis-cli through REDISCLI_AUTH).
# When no Sentinel answers or knows a primary (a first start, every Sentinel restarting) the
# probe cannot tell, and passes: it must not take the only primary away.
set -eu
. "$CONFIG_DIR/common.sh"
host=${BIND_PROBE_HOST:-127.0.0.1}
CLI_TIMEOUT=${PROBE_TIMEOUT:-2}
# named_elsewhere: the host most reachable Sentinels name instead of this server, when they
# outnumber those naming this server; fails otherwise.
named_elsewhere() {
  _me="$POD_NAME.$STORE_DOMAIN"
  _named=$(for _s in $SENTINEL_HOSTS; do
    (CLI_TIMEOUT=1 rcli "$_s" "$SENTINEL_PORT" SENTINEL get-master-addr-by-name "$MASTER_NAME" | head -n 1 | tr -d '\r') &
  done; wait)
  _named=$(printf '%s\n' "$_named" | grep -v -e '^$' -e ' ' || true)
  [ -n "$_named" ] || return 1
  _mine=$(printf '%s\n' "$_named" | grep -cxF "$_me" || true)
  printf '%s\n' "$_named" | grep -vxF "$_me" | sort | uniq -c | sort -k1,1nr -k2,2 | head -n 1 |
    awk -v mine="$_mine" '$1 > mine { print $2; found = 1 } END { exit !found }'
}

case "${1:-ready}" in
  live)
    out=$(rcli "$host" "$REDIS_PORT" PING) || exit 1
    case "$out" in PONG*|LOADING*|MASTERDOWN*) exit 0 ;; esac
    echo "ping: $out"; exit 1 ;;
  ready)
    i=$(rcli "$host" "$REDIS_PORT" INFO) || { echo "no answer"; exit 1; }
    [ "$(info_field "$i" loading)" = "0" ] || { echo "loading"; exit 1; }
    case "$(info_field "$i" role)" in
      master)
        if other=$(named_elsewhere); then echo "role:master, but the sentinels name $other"; exit 1; fi
        remember_primary "$POD_NAME.$STORE_DOMAIN"; exit 0 ;;
      slave)
        link=$(info_field "$i" master_link_status)
        [ "$link" = "up" ] && { remember_primary "$(info_field "$i" master_host)"; exit 0; }
        echo "master_link_status:$link"; exit 1 ;;
    esac
    echo "unknown role"; exit 1 ;;
esac
