#!/usr/bin/env bash
# Rust: formatting, clippy with warnings as errors, and every test of the
# workspace (unit, black-box protocol suites, Redis-backed cluster suites,
# operator reconcile tests, CRD drift) under cargo-nextest.
set -uo pipefail
source "$(dirname "$0")/../lib.sh"
cd "$ROOT" || exit 1

# Tests start real redis-server processes and build a TLS test CA with openssl.
need_apt redis-server redis-tools openssl ca-certificates
if ! command -v cargo-nextest >/dev/null 2>&1; then
  log "installing cargo-nextest"
  cargo install --locked cargo-nextest >/dev/null
fi

# The fuzz crate (server/fuzz) is a workspace of its own: its harness is checked
# through the test that includes it (tests/fuzz_corpus.rs), its targets here.
fmt_check() {
  cargo fmt --all -- --check && rustfmt --check --edition 2021 server/fuzz/fuzz_targets/*.rs
}
step "cargo fmt --check" fmt_check
step "cargo clippy -D warnings" cargo clippy --workspace --all-targets --locked -- -D warnings

run_tests() {
  local out="$TOOLS/nextest.log"
  cargo nextest run --workspace --locked --no-fail-fast --profile ci 2>&1 | tee "$out"
  local rc=${PIPESTATUS[0]}
  # "Summary [..] N tests run: N passed ..." -> count for the final summary.
  grep -oE '[0-9]+ tests? run' "$out" | tail -1 | grep -oE '^[0-9]+' >"$SB_RESULTS/tests" || true
  return "$rc"
}
step "cargo nextest (workspace)" run_tests

# The one-way import rule and the function-length rule (docs/architecture.md).
step "module graph: no import cycle, no unexplained long function" \
  python3 scripts/module_graph.py server/src operator/src
