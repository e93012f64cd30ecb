#!/usr/bin/env bash
# Starts, for the tests, a plain Redis and a Redis Cluster (three primaries,
# one replica each) on loopback, each server in its own folder under DIR.
# Writes DIR/env with LLMCACHE_TEST_REDIS and LLMCACHE_TEST_REDIS_CLUSTER and
# prints the same two lines. Stop them with: bash scripts/redis-down.sh DIR
#
#   usage: bash scripts/redis-up.sh DIR
set -Eeuo pipefail

here=$(cd "$(dirname "$0")" && pwd)
[ $# -eq 1 ] || { echo "usage: bash scripts/redis-up.sh DIR" >&2; exit 2; }
mkdir -p "$1"
# Absolute, because redis-server changes into --dir before it opens the rest.
dir=$(cd "$1" && pwd)

fail() {
  echo "redis-up: $*" >&2
  exit 1
}

# Whatever made us exit early, stop what we started: a half-made cluster is
# no use to anyone and would hold its ports.
started=0
on_exit() {
  local status=$?
  if [ "$status" -ne 0 ] && [ "$started" -eq 1 ]; then
    bash "$here/redis-down.sh" "$dir" >/dev/null 2>&1 || true
  fi
}
trap on_exit EXIT
trap 'fail "unexpected failure at line $LINENO: $BASH_COMMAND"' ERR

command -v redis-server >/dev/null || fail "redis-server is not on PATH (install it: sudo apt-get install redis-server)"
command -v redis-cli >/dev/null || fail "redis-cli is not on PATH (install it: sudo apt-get install redis-server)"

# Nothing listening there. A cluster node also needs PORT+10000 for its bus;
# asking it of every port keeps the search simple.
is_free() {
  ! (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && ! (echo >"/dev/tcp/127.0.0.1/$(($1 + 10000))") 2>/dev/null
}

# Functions here hand results back in globals, not through $(...): a subshell
# would lose next_port and "started", and its exit would not stop the script.
#
# A random start, so that runs side by side on one machine rarely probe the
# same ports.
next_port=$((20000 + RANDOM % 20000))
free_port() {
  while [ "$next_port" -le 55000 ]; do
    port=$next_port
    next_port=$((next_port + 1))
    is_free "$port" && return 0
  done
  return 1
}

# True once the server in SUBDIR answers PING and is the one whose pidfile is
# there: another process may have taken the port between probe and bind.
answers() {
  local sub=$1 port=$2 pid info
  [ -s "$sub/redis.pid" ] || return 1
  pid=$(cat "$sub/redis.pid")
  # One round trip: INFO answers only once the server is up. Read whole, not
  # piped into grep -q, which would end redis-cli with SIGPIPE under pipefail.
  info=$(redis-cli -p "$port" info server 2>/dev/null) || return 1
  [[ $info == *$'\n'"process_id:${pid}"$'\r\n'* ]]
}

# Starts a redis-server in DIR/NAME on a free port, with any extra options,
# and sets port once it answers. A port lost to a race is retried.
start_server() {
  local name=$1 sub=$dir/$1 attempt i
  shift
  mkdir -p "$sub"
  for attempt in 1 2 3 4 5; do
    free_port || fail "no free loopback port found for $name"
    rm -f "$sub/redis.pid"
    : >"$sub/redis.log"
    echo "$port" >"$sub/port"
    started=1
    redis-server --port "$port" --bind 127.0.0.1 --dir "$sub" --save "" --appendonly no \
      --daemonize yes --pidfile "$sub/redis.pid" --logfile "$sub/redis.log" "$@" >/dev/null ||
      fail "redis-server for $name did not start; see $sub/redis.log"
    for i in $(seq 100); do
      answers "$sub" "$port" && return 0
      # It cannot bind: someone took the port after we probed it. Try another.
      grep -q "Address already in use" "$sub/redis.log" 2>/dev/null && break
      sleep 0.05
    done
    grep -q "Address already in use" "$sub/redis.log" 2>/dev/null ||
      fail "redis-server for $name on port $port did not answer PING within 5 s; see $sub/redis.log"
  done
  fail "redis-server for $name found every port it tried taken"
}

start_server single
single=$port

cluster_ports=()
# How long a node waits for a silent peer before it counts it as failed
# (Redis's default, 15 s, unless a failover test wants it sooner).
node_timeout=${LLMCACHE_REDIS_CLUSTER_NODE_TIMEOUT_MS:-15000}
for n in 1 2 3 4 5 6; do
  # A replica is of use (it can take over) once its first sync is done;
  # Redis waits 5 s by default before starting a diskless one.
  start_server "cluster-$n" --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout "$node_timeout" \
    --repl-diskless-sync-delay 0
  cluster_ports+=("$port")
done
nodes=()
for port in "${cluster_ports[@]}"; do nodes+=("127.0.0.1:$port"); done

redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$dir/cluster-create.log" 2>&1 ||
  fail "redis-cli --cluster create failed: $(grep -m1 -E '\[ERR\]|ERR|Error' "$dir/cluster-create.log" || tail -n1 "$dir/cluster-create.log")"

# The cluster is usable once every node, not just the first, has seen all
# slots covered: a client may be sent to any of them.
cluster_ok() {
  local port info
  for port in "${cluster_ports[@]}"; do
    info=$(redis-cli -p "$port" cluster info 2>/dev/null) || return 1
    [[ $info == cluster_state:ok$'\r\n'* ]] || return 1
  done
}
# And once every replica holds its primary's data: until then a killed
# primary has no replica that may take over.
replicas_synced() {
  local port info
  for port in "${cluster_ports[@]}"; do
    info=$(redis-cli -p "$port" info replication 2>/dev/null) || return 1
    [[ $info != *$'\n'"role:slave"$'\r\n'* || $info == *$'\n'"master_link_status:up"$'\r\n'* ]] || return 1
  done
}
for i in $(seq 300); do
  cluster_ok && replicas_synced && break
  [ "$i" -lt 300 ] || fail "the cluster did not reach cluster_state:ok on every node, with every replica in sync, within 30 s; see $dir/cluster-*/redis.log"
  sleep 0.1
done

cluster_url="redis-cluster://$(IFS=,; echo "${nodes[*]}")"
printf 'LLMCACHE_TEST_REDIS=redis://127.0.0.1:%s\nLLMCACHE_TEST_REDIS_CLUSTER=%s\n' "$single" "$cluster_url" >"$dir/env.tmp"
mv "$dir/env.tmp" "$dir/env"
cat "$dir/env"
