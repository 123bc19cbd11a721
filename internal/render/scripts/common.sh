# Shared helpers for the store's boot and probe scripts. POSIX sh; needs redis-cli and
# timeout. redis-cli authenticates as REDISCLI_USER (the operator user); the password
# reaches it through REDISCLI_AUTH, never an argument.
#
# Environment (set by the operator's StatefulSets; the data-path harness sets the same):
#   POD_NAME             this pod's name, e.g. shop-store-1
#   STORE_DOMAIN         the store's headless Service domain; a server is $POD_NAME.$STORE_DOMAIN
#   MASTER_NAME          the Sentinel master name
#   REDIS_PORT SENTINEL_PORT
#   REDISCLI_USER        the ACL user the scripts' redis-cli authenticates as
#   REDISCLI_AUTH        its password (from the users Secret)
#   USERS_DIR            the users Secret: ACL lines (users.acl, sentinel-users.acl) and
#                        the replication and sentinel users' passwords
#   CONFIG_DIR           the rendered configuration (read only)
#   RUN_DIR              a private writable directory for the runtime configuration
#   DATA_DIR             Redis data directory
#   BIND_ADDRESS         optional: where to listen (the harness's address hook); default all
#
# The host lists come from the ConfigMap, not the env, so that scaling rolls no pod:
#   $CONFIG_DIR/store-hosts     every Redis server's host name, space separated, ordinal order
#   $CONFIG_DIR/sentinel-hosts  every Sentinel's host name, space separated
# A running pod sees a scale once the kubelet refreshes the volume; nothing it does in
# steady state depends on the lists.
STORE_HOSTS=$(cat "$CONFIG_DIR/store-hosts")
SENTINEL_HOSTS=$(cat "$CONFIG_DIR/sentinel-hosts")

log() { echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $*" >&2; }

# resolves HOST: the name has an address (getent where libc has it, else nslookup).
resolves() {
  if command -v getent >/dev/null 2>&1; then getent hosts "$1" >/dev/null 2>&1
  else nslookup "$1" >/dev/null 2>&1; fi
}

# rcli HOST PORT ARGS...: one redis-cli call bounded in time, raw output.
rcli() {
  _h=$1 _p=$2
  shift 2
  timeout "${CLI_TIMEOUT:-3}" redis-cli --no-auth-warning --raw ${REDISCLI_USER:+--user "$REDISCLI_USER"} -h "$_h" -p "$_p" "$@" 2>/dev/null
}

# info_field TEXT FIELD: the value of FIELD in INFO output.
info_field() { printf '%s\n' "$1" | tr -d '\r' | sed -n "s/^$2://p" | head -n 1; }

# sentinel_masters: the primary's host name as each reachable Sentinel names it, one line
# per Sentinel that knows one.
sentinel_masters() {
  for _s in $SENTINEL_HOSTS; do
    _m=$(rcli "$_s" "$SENTINEL_PORT" SENTINEL get-master-addr-by-name "$MASTER_NAME" | head -n 1 | tr -d '\r')
    [ -n "$_m" ] && echo "$_m"
  done
  return 0
}

# sentinel_master: the primary the Sentinels name; fails when none knows one. Every
# Sentinel is asked, not just the first: while a failover is being announced they
# disagree, and then a host other than MY_HOST wins (the most named, then the first by
# name). So a restarting server never takes itself for the primary while any Sentinel
# already names another one.
sentinel_master() {
  _all=$(sentinel_masters)
  [ -n "$_all" ] || return 1
  _other=$(printf '%s\n' "$_all" | grep -vxF "${MY_HOST:-}" | sort | uniq -c | sort -k1,1nr -k2,2 | head -n 1 | awk '{print $2}')
  if [ -n "$_other" ]; then echo "$_other"; else printf '%s\n' "$_all" | head -n 1; fi
}

# peer_master: a primary named by the Redis servers themselves, for when no Sentinel knows
# (every Sentinel restarted at once). A replica's master wins over a lone primary without
# replicas, since that is the one holding the data.
peer_master() {
  _lone=
  for _h in $STORE_HOSTS; do
    [ "$_h" = "$MY_HOST" ] && continue
    _i=$(rcli "$_h" "$REDIS_PORT" INFO replication) || continue
    case "$(info_field "$_i" role)" in
      slave)
        _m=$(info_field "$_i" master_host)
        if [ -n "$_m" ] && [ "$_m" != "$MY_HOST" ]; then echo "$_m"; return 0; fi ;;
      master)
        if [ "$(info_field "$_i" connected_slaves)" != "0" ]; then echo "$_h"; return 0; fi
        _lone=$_h ;;
    esac
  done
  [ -n "$_lone" ] && { echo "$_lone"; return 0; }
  return 1
}

# peers_hold_data: true when another server holds a replication stream, i.e. this server
# was a primary before it restarted and must not come back empty for them to copy.
peers_hold_data() {
  for _h in $STORE_HOSTS; do
    [ "$_h" = "$MY_HOST" ] && continue
    _i=$(rcli "$_h" "$REDIS_PORT" INFO replication) || continue
    _o=$(info_field "$_i" master_repl_offset)
    [ -n "$_o" ] && [ "$_o" != "0" ] && return 0
  done
  return 1
}

# The primary this server last knew, kept in its data directory (the readiness probe and
# the preStop write it): after every server and Sentinel restarted at once (a cluster
# restart) nobody else knows, and the server that was the primary, with the newest data,
# must be the one elected, not the first by ordinal.
last_primary() { cat "$DATA_DIR/last-primary" 2>/dev/null || true; }
remember_primary() {
  [ -n "$1" ] || return 0
  [ "$(last_primary)" = "$1" ] && return 0
  printf '%s\n' "$1" >"$DATA_DIR/last-primary.tmp" 2>/dev/null && mv "$DATA_DIR/last-primary.tmp" "$DATA_DIR/last-primary" 2>/dev/null
  return 0
}
