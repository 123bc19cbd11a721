#!/bin/sh
# Probes a Sentinel: it answers, and (for readiness) it knows a primary.
set -eu
. "$CONFIG_DIR/common.sh"
host=${BIND_PROBE_HOST:-127.0.0.1}
CLI_TIMEOUT=${PROBE_TIMEOUT:-2}
case "${1:-ready}" in
  live) [ "$(rcli "$host" "$SENTINEL_PORT" PING)" = "PONG" ] ;;
  ready) [ -n "$(rcli "$host" "$SENTINEL_PORT" SENTINEL get-master-addr-by-name "$MASTER_NAME" | head -n 1)" ] ;;
esac
