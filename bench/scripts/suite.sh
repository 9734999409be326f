#!/usr/bin/env bash
# Runs the benchmarks recorded in docs/benchmarks.md on this machine: builds the
# release binaries, starts the node(s) it needs (and, for the cluster part, a
# private redis-server on 127.0.0.1:$REDIS_PORT), runs switchboard-bench against
# them, and stops everything it started. All traffic stays on 127.0.0.1.
#
#   bench/scripts/suite.sh [single|idle|cluster|redis|flood|floor|all]...   (default: all)
#
# Set NO_BUILD=1 to reuse existing release binaries. On a machine shared with
# other work, PRIO='chrt -r 10' runs the node(s), Redis and the bench ahead of
# it (SCHED_RR; needs CAP_SYS_NICE); the kernel still keeps 5% for the rest.
set -euo pipefail
cd "$(dirname "$0")/../.."

# SERVER may name another build of the server, e.g. to compare commits.
SERVER=${SERVER:-target/release/switchboard}
BENCH=target/release/switchboard-bench
REDIS_PORT=${REDIS_PORT:-6399}
# The relay runs exceed the default 100 msgs/s per connection on purpose.
UNLIMITED=(RATE_LIMIT_PER_SEC=1000000 RATE_LIMIT_BURST=1000000)
PIDS=()
read -ra PRIO <<<"${PRIO:-}"

cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

say() { printf '\n## %s (load average: %s)\n' "$*" "$(cut -d' ' -f1-3 /proc/loadavg)"; }
run() { echo "+ $*"; "$@"; }
bench() { run "${PRIO[@]}" "$BENCH" "$@"; }

# start_node NAME [ENV=VALUE...]: sets NODE_PID and NODE_PORT.
start_node() {
  local name=$1 log
  shift
  log=$(mktemp -t "switchboard-$name.XXXXXX")
  echo "+ ${PRIO[*]} env HOST=127.0.0.1 PORT=0 LOG_FORMAT=json $* $SERVER   # $name"
  "${PRIO[@]}" env HOST=127.0.0.1 PORT=0 LOG_FORMAT=json "$@" "$SERVER" >"$log" 2>&1 &
  NODE_PID=$!
  PIDS+=("$NODE_PID")
  for _ in $(seq 100); do
    grep -q '"listening"' "$log" && break
    sleep 0.1
  done
  NODE_PORT=$(grep -o '"addr":"[^"]*"' "$log" | head -1 | sed 's/.*:\([0-9]*\)"$/\1/')
  if [ -z "$NODE_PORT" ]; then
    echo "node $name did not start:" >&2
    cat "$log" >&2
    exit 1
  fi
}

stop() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

start_redis() {
  echo "+ ${PRIO[*]} redis-server --port $REDIS_PORT --bind 127.0.0.1 --save '' --appendonly no"
  "${PRIO[@]}" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize no >/dev/null 2>&1 &
  REDIS_PID=$!
  PIDS+=("$REDIS_PID")
  for _ in $(seq 50); do
    redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && return
    sleep 0.1
  done
  echo "redis-server did not start" >&2
  exit 1
}

single() {
  say "single node"
  start_node single "${UNLIMITED[@]}"
  local url=ws://127.0.0.1:$NODE_PORT/ws
  say "single node: maximum relay throughput (closed loop)"
  bench relay --url "$url" --connections 100 --in-flight 16 --duration 10s \
    --server-pid "$NODE_PID"
  say "single node: latency at 50,000 signals/s"
  bench relay --url "$url" --connections 100 --in-flight 8 --rate 50000 \
    --duration 10s --server-pid "$NODE_PID"
  say "single node: latency at 50,000 signals/s over 1,000 connections in rooms of 10"
  bench relay --url "$url" --connections 1000 --room-size 10 --in-flight 4 --rate 50000 \
    --duration 10s --server-pid "$NODE_PID"
  say "single node: joins"
  bench joins --url "$url" --count 10000 --concurrency 64 --source-addrs 4 \
    --server-pid "$NODE_PID"
  stop "$NODE_PID"
}

idle() {
  # 19,500 rather than 20,000: the open-files hard limit here is 20,000 for the
  # server and the bench alike (see docs/benchmarks.md). The soft limit is
  # raised to it for the node(s) started from here; the bench raises its own.
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  local n
  for n in 5000 19500; do
    say "single node: idle memory, $n connections"
    start_node idle MAX_CONNECTIONS=30000
    bench idle --url "ws://127.0.0.1:$NODE_PORT/ws" --connections "$n" --room-size 10 \
      --hold 20s --source-addrs 4 --server-pid "$NODE_PID"
    stop "$NODE_PID"
  done
  # The same on the Redis backend: the node's memory only (--server-pid is
  # the node, not Redis).
  start_redis
  for n in 5000 19500; do
    say "single node on Redis: idle memory, $n connections"
    start_node idle-redis MAX_CONNECTIONS=30000 REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
    bench idle --url "ws://127.0.0.1:$NODE_PORT/ws" --connections "$n" --room-size 10 \
      --hold 20s --source-addrs 4 --server-pid "$NODE_PID"
    stop "$NODE_PID"
    redis-cli -p "$REDIS_PORT" flushall >/dev/null
  done
  stop "$REDIS_PID"
}

cluster() {
  say "two nodes, one Redis"
  start_redis
  start_node node-a REDIS_URL="redis://127.0.0.1:$REDIS_PORT" "${UNLIMITED[@]}"
  local a_pid=$NODE_PID a=ws://127.0.0.1:$NODE_PORT/ws
  start_node node-b REDIS_URL="redis://127.0.0.1:$REDIS_PORT" "${UNLIMITED[@]}"
  local b=ws://127.0.0.1:$NODE_PORT/ws
  # CPU is reported for both nodes and Redis together.
  local pids=(--server-pid "$a_pid" --server-pid "$NODE_PID" --server-pid "$REDIS_PID")
  say "cross-node: maximum relay throughput (closed loop)"
  bench relay --url "$a" --url "$b" --connections 100 --in-flight 16 --duration 10s \
    "${pids[@]}"
  # One signal in flight per pair: nothing for a node to batch per connection,
  # only across connections.
  say "cross-node: relay throughput with one signal in flight per pair"
  bench relay --url "$a" --url "$b" --connections 100 --in-flight 1 --duration 10s \
    "${pids[@]}"
  say "cross-node: latency at 25,000 signals/s"
  bench relay --url "$a" --url "$b" --connections 100 --in-flight 8 --rate 25000 \
    --duration 10s "${pids[@]}"
  # Paced like real signaling (5 signals/s per connection, 205-byte payloads):
  # CPU per relayed signal of the nodes and of Redis, apart.
  local split=(--server-pid "$a_pid" --server-pid "$NODE_PID" --redis-pid "$REDIS_PID")
  say "cross-node: CPU per signal at 5 signals/s per connection (1,000 connections)"
  bench relay --url "$a" --url "$b" --connections 1000 --in-flight 8 --rate 5000 \
    --payload-bytes 175 --duration 10s "${split[@]}"
  say "cross-node: joins"
  bench joins --url "$a" --url "$b" --count 10000 --concurrency 64 --source-addrs 4 \
    "${pids[@]}"
  stop "$a_pid"
  stop "$NODE_PID"
  stop "$REDIS_PID"
}

# The replay-buffer floods of the issue that introduced the replay budgets,
# with every setting at its default: peers that join and drop their
# connection, flooded with 60 KB messages; server RSS and Redis memory.
flood() {
  say "flood: one node, 40 rooms x 99 away peers, 8 broadcasts of 60 KB per room"
  start_node flood
  bench flood --url "ws://127.0.0.1:$NODE_PORT/ws" --rooms 40 --away 99 --broadcasts 8 \
    --server-pid "$NODE_PID"
  stop "$NODE_PID"
  # Signals have one recipient each, so nothing is shared: the room and node
  # budgets are what bounds this one.
  say "flood: one node, 40 rooms x 99 away peers, 2 signals of 60 KB to each"
  start_node flood
  bench flood --url "ws://127.0.0.1:$NODE_PORT/ws" --rooms 40 --away 99 --broadcasts 0 \
    --signals 2 --server-pid "$NODE_PID"
  stop "$NODE_PID"
  say "flood: two nodes, one Redis, 50 away peers, 100 broadcasts of 60 KB"
  flood_cluster --broadcasts 100
  say "flood: two nodes, one Redis, 50 away peers, 8 signals of 60 KB to each"
  flood_cluster --broadcasts 0 --signals 8
}

# flood_cluster FLAGS...: one room of 50 away peers on fresh nodes and a fresh
# Redis, so that each run's peak is its own.
flood_cluster() {
  start_redis
  start_node node-a REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
  local a_pid=$NODE_PID a=ws://127.0.0.1:$NODE_PORT/ws
  start_node node-b REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
  local b=ws://127.0.0.1:$NODE_PORT/ws
  bench flood --url "$a" --url "$b" --rooms 1 --away 50 "$@" \
    --redis "127.0.0.1:$REDIS_PORT" --server-pid "$a_pid" --server-pid "$NODE_PID"
  stop "$a_pid"
  stop "$NODE_PID"
  stop "$REDIS_PID"
}

redis() {
  say "reference: raw redis-benchmark PUBLISH"
  start_redis
  # -q still redraws a progress line with \r; keep only the result.
  run "${PRIO[@]}" redis-benchmark -p "$REDIS_PORT" -q -n 200000 PUBLISH chan hello |
    tr '\r' '\n' | grep -v -e 'rps=' -e '^ *$'
  run "${PRIO[@]}" redis-benchmark -p "$REDIS_PORT" -q -n 200000 -P 16 PUBLISH chan hello |
    tr '\r' '\n' | grep -v -e 'rps=' -e '^ *$'
  stop "$REDIS_PID"
}

# What a paced signal cannot cost less than on this machine (docs/benchmarks.md,
# "Issue 19, fourth round"): Redis's CPU per request when requests come one at
# a time; one node's CPU per relayed signal at the paced rate with no Redis at
# all; and the signal function's own cost in Redis, pipelined (no wake-ups),
# against an empty function.
floor() {
  say "floor: Redis CPU per paced request (2 connections x 2,500 PING/s)"
  start_redis
  run "${PRIO[@]}" bench/scripts/paced_ping.py "$REDIS_PORT" "$REDIS_PID" 2500 6 2

  say "floor: the signal function, pipelined (16 calls per read), one room of two peers"
  # A node loads the library with its first call (here: two joins); the
  # function names carry the build's version.
  start_node floor-library REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
  bench joins --url "ws://127.0.0.1:$NODE_PORT/ws" --count 2 --concurrency 1 >/dev/null
  stop "$NODE_PID"
  local cli=(redis-cli -p "$REDIS_PORT") fn body
  fn=$("${cli[@]}" FUNCTION LIST | grep -o 'sb_[0-9a-f]*_signal' | head -1 || true)
  if [ -z "$fn" ]; then
    echo "the node did not load its function library" >&2
    exit 1
  fi
  "${cli[@]}" HSET 'sb:{floor}:peers' a 1 b 1 >/dev/null
  "${cli[@]}" HSET 'sb:{floor}:p:a' node n1 att 1 seq 0 >/dev/null
  "${cli[@]}" HSET 'sb:{floor}:p:b' node n2 att 1 seq 0 >/dev/null
  "${cli[@]}" FUNCTION LOAD REPLACE \
    "#!lua name=floor
redis.register_function('floor_empty', function(KEYS, ARGV) return {'OK', 0} end)" >/dev/null
  body=$(printf '%0200d' 0)
  # The signal's ARGV: publish command, replay limits (the defaults), TTL,
  # then sender a (attachment 1) sends one signal to b.
  for f in floor_empty "$fn"; do
    "${cli[@]}" CONFIG RESETSTAT >/dev/null
    run "${PRIO[@]}" redis-benchmark -p "$REDIS_PORT" -q -n 200000 -P 16 -c 1 \
      FCALL "$f" 1 'sb:{floor}:peers' PUBLISH 512:262144:8388608 3600000 a 1 1 b "$body" |
      tr '\r' '\n' | grep -v -e 'rps=' -e '^ *$'
    "${cli[@]}" INFO commandstats | grep -E '^cmdstat_(fcall|hget|hmget|rpush|hset|hincrby|publish|ltrim|lrange):' |
      sed 's/,rejected_calls.*//'
  done
  stop "$REDIS_PID"

  say "floor: one node, no Redis, paced 5 signals/s per connection, 1,000 connections"
  start_node floor-single "${UNLIMITED[@]}" MAX_PENDING_PER_IP=1024
  bench relay --url "ws://127.0.0.1:$NODE_PORT/ws" --connections 1000 --in-flight 8 \
    --rate 5000 --payload-bytes 175 --duration 10s --server-pid "$NODE_PID"
  stop "$NODE_PID"
}

if [ -z "${NO_BUILD:-}" ]; then
  run cargo build --release -p switchboard -p switchboard-bench
fi
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
[ $# -gt 0 ] || set -- all
for part in "$@"; do
  case $part in
    single | idle | cluster | redis | flood | floor) "$part" ;;
    all) single; idle; cluster; redis; flood; floor ;;
    *) echo "unknown part: $part (single|idle|cluster|redis|flood|floor|all)" >&2; exit 2 ;;
  esac
done
