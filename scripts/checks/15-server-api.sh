#!/usr/bin/env bash
# Server API: schemathesis drives every /api/v1 call of docs/openapi.json
# against a real embedded node (scripts/server_api_schema.py), with a fixed
# seed, bounded examples and a 40 s budget; any server error, schema
# mismatch or panic fails it.
set -uo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$ROOT" || exit 1

SCHEMATHESIS_VENV="$TOOLS/schemathesis-venv"
SCHEMATHESIS_VERSION=4.32.5

# schemathesis pins libraries of its own: it gets a venv of its own.
need_schemathesis() {
  [ -x "$SCHEMATHESIS_VENV/bin/schemathesis" ] \
    && "$SCHEMATHESIS_VENV/bin/schemathesis" --version | grep -qF "$SCHEMATHESIS_VERSION" \
    && return 0
  log "installing schemathesis into .tools/schemathesis-venv"
  python3 -m venv "$SCHEMATHESIS_VENV"
  "$SCHEMATHESIS_VENV/bin/pip" install -q --upgrade pip >/dev/null
  "$SCHEMATHESIS_VENV/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION"
}

target_dir() {
  cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])'
}

schema_check() {
  need_schemathesis || { echo "schemathesis did not install" >&2; return 1; }
  cargo build --locked -p switchboard --bin switchboard || return 1
  python3 scripts/server_api_schema.py "$(target_dir)/debug/switchboard" \
    "$SCHEMATHESIS_VENV/bin/schemathesis"
}

step "Server API against its OpenAPI document (schemathesis)" schema_check
