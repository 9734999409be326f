# shellcheck shell=bash
# Helpers shared by the end-to-end scripts (run.sh: the operator; chart.sh:
# the Helm chart): logging, bounded waits, port-forwards that wait until the
# server answers, and a Python with the `websockets` package for
# signal_smoke.py. Sourced, not run: it sets ROOT and T (E2E_TIMEOUT); the
# caller sets HERE (this directory), NS (the namespace port-forwards go to)
# and WORK (a scratch directory it removes).

PF_PIDS=()
# The repository, and the seconds allowed for each wait (used by the scripts
# that source this file).
# shellcheck disable=SC2034
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck disable=SC2034
T="${E2E_TIMEOUT:-300}"

log() { printf '\n==> %s\n' "$*"; }
fail() {
  echo "E2E FAILED: $*" >&2
  exit 1
}

# wait_until SECONDS DESCRIPTION CMD... : retry CMD every 2 s until it succeeds.
wait_until() {
  local secs="$1" what="$2" deadline
  shift 2
  deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -ge "$deadline" ] && fail "timed out after ${secs}s waiting for: $what"
    sleep 2
  done
}

# http_ok URL : the URL answers 2xx within 2 s.
http_ok() {
  "$PY" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" "$1"
}

# http_status URL : prints the HTTP status the URL answers with.
http_status() {
  "$PY" - "$1" <<'PY'
import sys, urllib.error, urllib.request
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=5).status)
except urllib.error.HTTPError as e:
    print(e.code)
PY
}

# port_forward TARGET LOCAL REMOTE : kubectl port-forward in the background (in
# namespace NS), then wait until the server behind it answers /health, which
# both of its listeners serve.
port_forward() {
  local target="$1" local_port="$2" remote="$3"
  kubectl -n "$NS" port-forward "$target" "$local_port:$remote" >"$WORK/pf-$local_port.log" 2>&1 &
  PF_PIDS+=($!)
  wait_until 60 "port-forward to $target:$remote answering /health" http_ok "http://127.0.0.1:$local_port/health"
}

# on_exit : the EXIT trap of the scripts: stop the port-forwards, and on a
# failure call the script's `dump` and print the port-forwards' logs; then
# remove WORK and keep the exit status.
on_exit() {
  local rc=$? f
  stop_port_forwards
  if [ "$rc" -ne 0 ]; then
    dump
    for f in "$WORK"/pf-*.log; do
      [ -e "$f" ] && { echo "---- $f ----"; cat "$f"; }
    done
  fi
  rm -rf "$WORK"
  exit "$rc"
}

stop_port_forwards() {
  local pid
  for pid in "${PF_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  PF_PIDS=()
}

# need_python : sets PY to a python3 that has `websockets`, installing it into
# a venv under WORK when the system's lacks it.
need_python() {
  command -v python3 >/dev/null || fail "python3 is not on PATH"
  PY=python3
  python3 -c 'import websockets' 2>/dev/null && return 0
  if python3 -m venv "$WORK/venv" >/dev/null 2>&1; then
    "$WORK/venv/bin/pip" install -q 'websockets>=13' || fail "cannot install the websockets package"
    PY="$WORK/venv/bin/python"
  else
    # No venv module (Debian without python3-venv): a user install instead.
    python3 -m pip install -q --user --break-system-packages 'websockets>=13' \
      || fail "cannot install the websockets package (python3 -m venv and pip --user both failed)"
  fi
}

# relay_across_pods SELECTOR : a signal relayed between two clients on two
# different running pods of SELECTOR (in NS), so through Redis.
relay_across_pods() {
  local pods=()
  mapfile -t pods < <(kubectl -n "$NS" get pods -l "$1" --field-selector=status.phase=Running -o name)
  [ "${#pods[@]}" -ge 2 ] || fail "expected 2 running server pods ($1), found ${#pods[@]}"
  port_forward "${pods[0]}" 18181 8080
  port_forward "${pods[1]}" 18182 8080
  "$PY" "$HERE/signal_smoke.py" ws://127.0.0.1:18181/ws ws://127.0.0.1:18182/ws
  stop_port_forwards
}

# metrics_only_internal POD PUBLIC_LOCAL INTERNAL_LOCAL : with the internal
# listener on, /metrics answers on the internal port and not on the public one.
metrics_only_internal() {
  local pod="$1" pub="$2" internal="$3" code path
  port_forward "$pod" "$pub" 8080
  port_forward "$pod" "$internal" 9091
  for path in /metrics /status; do
    code="$(http_status "http://127.0.0.1:$pub$path")"
    case "$code" in
      2*) fail "$pod serves $path on its public port (HTTP $code)" ;;
    esac
  done
  "$PY" - "http://127.0.0.1:$internal/metrics" <<'PY' || fail "$pod: no switchboard metrics on the internal port"
import sys, urllib.request
text = urllib.request.urlopen(sys.argv[1], timeout=5).read().decode()
sys.exit(0 if "switchboard_connections_active" in text else 1)
PY
  stop_port_forwards
  echo "OK $pod: /metrics and /status on the internal port only"
}
