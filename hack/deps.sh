#!/usr/bin/env bash
# Installs the Debian packages a make target needs before it starts, so that a fresh
# machine fails in the first second (with the command to run) or not at all, never after
# a 30-minute build. Every install is announced on one line with the reason.
#
# usage: hack/deps.sh GROUP...
#   redis   redis-server, redis-sentinel, redis-cli, redis-benchmark: the Store-mode tests,
#           the data-path harness and its benchmark run real Redis processes
#   node    node and npm: the day-2 suite runs an unmodified express-session app
#
# As root with apt-get, it installs what is missing; otherwise it stops and prints the
# command. DEPS_INSTALL=0 never installs (only checks).
set -euo pipefail

declare -A packages=(
  [redis]="redis-server redis-sentinel redis-tools"
  [node]="nodejs npm"
)
declare -A commands=(
  [redis]="redis-server redis-sentinel redis-cli redis-benchmark"
  [node]="node npm"
)
declare -A why=(
  [redis]="the Store-mode tests run real redis-server and redis-sentinel processes"
  [node]="the day-2 suite runs a real express-session + connect-redis app"
)

say() { printf 'deps: %s\n' "$*" >&2; }
joined() { local IFS=';'; local s="$*"; echo "${s//;/; }"; }

missing_pkgs=()
reasons=()
for group in "$@"; do
  [ -n "${packages[$group]:-}" ] || { say "unknown group $group (known: ${!packages[*]})"; exit 2; }
  for c in ${commands[$group]}; do
    if ! command -v "$c" >/dev/null 2>&1; then
      # shellcheck disable=SC2206
      missing_pkgs+=(${packages[$group]})
      reasons+=("${why[$group]}")
      break
    fi
  done
done
[ ${#missing_pkgs[@]} -eq 0 ] && exit 0

mapfile -t missing_pkgs < <(printf '%s\n' "${missing_pkgs[@]}" | sort -u)
cmd="apt-get install -y --no-install-recommends ${missing_pkgs[*]}"
if [ "${DEPS_INSTALL:-1}" = 0 ] || [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  say "missing ${missing_pkgs[*]}: $(joined "${reasons[@]}")"
  say "install them first, as root on Debian: $cmd"
  exit 1
fi

say "installing ${missing_pkgs[*]} from Debian ($(joined "${reasons[@]}")); once, about a minute"
export DEBIAN_FRONTEND=noninteractive
apt() { apt-get -o DPkg::Lock::Timeout=600 "$@"; }
if ! apt install -y -qq --no-install-recommends "${missing_pkgs[@]}" >/dev/null 2>&1; then
  # A fresh machine has no package lists yet.
  apt update -qq >/dev/null
  apt install -y -qq --no-install-recommends "${missing_pkgs[@]}" >/dev/null
fi

# Debian starts a redis-server and a redis-sentinel service on install, on the ports the
# tests render (6379, 26379). The tests start their own processes; stop and disable the
# services this run installed (never one that was there before).
for svc in redis-server redis-sentinel; do
  if [[ " ${missing_pkgs[*]} " == *" $svc "* ]]; then
    service "$svc" stop >/dev/null 2>&1 || true
    update-rc.d "$svc" disable >/dev/null 2>&1 || true
    systemctl disable --now "$svc" >/dev/null 2>&1 || true
  fi
done
say "installed ${missing_pkgs[*]}"
