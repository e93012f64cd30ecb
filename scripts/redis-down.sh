#!/usr/bin/env bash
# Stops every redis-server that scripts/redis-up.sh started under DIR. Safe to
# run again, or on a DIR where redis-up.sh failed half way.
#
#   usage: bash scripts/redis-down.sh DIR
set -uo pipefail

[ $# -eq 1 ] || { echo "usage: bash scripts/redis-down.sh DIR" >&2; exit 2; }
dir=$1
[ -d "$dir" ] || exit 0

# Running, and still a redis-server: the pid of one that died long ago may
# have been given to something else. A zombie counts as gone, since where
# nothing reaps orphans (some containers) it stays in the table.
is_redis() {
  local pid=$1 state
  [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = redis-server ] || return 1
  state=$(sed -E 's/^.*\) (.).*$/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
  [ "$state" != Z ] && [ "$state" != X ]
}

# Every server is told at once, then waited for, so that a cluster of six
# stops in the time of one.
pids=()
for pidfile in "$dir"/*/redis.pid; do
  [ -s "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  port=$(cat "$(dirname "$pidfile")/port" 2>/dev/null)
  if ! is_redis "$pid"; then
    rm -f "$pidfile"
    continue
  fi
  pids+=("$pid:$pidfile")
  [ -n "$port" ] && timeout 5 redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 &
done
wait

for entry in "${pids[@]}"; do
  pid=${entry%%:*}
  pidfile=${entry#*:}
  for _ in $(seq 50); do
    is_redis "$pid" || break
    sleep 0.1
  done
  # SHUTDOWN did not reach it or it hangs: it does not get a say.
  is_redis "$pid" && kill -KILL "$pid" 2>/dev/null
  rm -f "$pidfile"
done
exit 0
