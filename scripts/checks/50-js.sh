#!/usr/bin/env bash
# JavaScript client SDK (clients/js): typecheck, build, the demo bundle that
# the server embeds matches its sources, the core's size budget, the Node
# tests against the real `switchboard` binary (an embedded node, two nodes on
# a real redis-server, a scripted server for the close codes a node cannot be
# made to send), the browser end-to-end tests in headless Chromium (demo
# pages meshing over one and two nodes, a node killed mid-call), and
# `npm pack --dry-run`. Screenshots of the demo land in clients/js/artifacts/.
set -uo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$ROOT" || exit 1

JS="$ROOT/clients/js"
export SWITCHBOARD_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/switchboard"

need_apt redis-server
command -v node >/dev/null && command -v npm >/dev/null || need_apt nodejs npm

# Debian's Chromium; a machine without it (Ubuntu, whose package is a snap
# shim) may point CHROMIUM_PATH at another Chromium-based browser.
if [ -z "${CHROMIUM_PATH:-}" ]; then
  if [ -x /usr/bin/chromium ] || need_apt chromium; then
    export CHROMIUM_PATH=/usr/bin/chromium
  elif [ -x /usr/bin/google-chrome ]; then
    export CHROMIUM_PATH=/usr/bin/google-chrome
  fi
fi

# npm ci from the committed lock, skipped when node_modules was installed
# from this very lock already.
npm_install() {
  local stamp="$JS/node_modules/.lock-sha256" want
  want="$(sha256sum "$JS/package-lock.json" | cut -d' ' -f1)"
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && return 0
  log "npm ci in clients/js"
  (cd "$JS" && npm ci --no-audit --no-fund --loglevel=error) && echo "$want" >"$stamp"
}

# The server binary the tests start (debug: shares the build of the Rust tests).
build_server() {
  cargo build --quiet --locked -p switchboard --bin switchboard && [ -x "$SWITCHBOARD_BIN" ]
}

step "js: npm ci (clients/js)" npm_install
step "js: build the switchboard binary for the JS tests" build_server

in_js() { (cd "$JS" && "$@"); }

step "js: typecheck (SDK, WebRTC helper, demo)" in_js npm run --silent typecheck
step "js: server/static/demo.js matches clients/js (drift)" in_js node scripts/build.mjs --check
step "js: build (dist/ ESM + declarations)" in_js node scripts/build.mjs
step "js: size budget (core <= 8 KB min+gz)" in_js node scripts/size.mjs
step "js: node tests (scripted server, embedded node, two nodes + Redis)" \
  in_js node --test --test-force-exit --test-concurrency=1 --test-reporter=spec test/fake.test.mjs test/embedded.test.mjs test/cluster.test.mjs

browser_e2e() {
  [ -n "${CHROMIUM_PATH:-}" ] && [ -x "$CHROMIUM_PATH" ] || {
    echo "no Chromium: install Debian's chromium package or set CHROMIUM_PATH" >&2
    return 1
  }
  in_js node --test --test-force-exit --test-concurrency=1 --test-reporter=spec e2e/demo.test.mjs
}
step "js: browser e2e (demo pages in headless Chromium)" browser_e2e

# What would be published: the built dist/ with its declarations, the README.
pack_dry_run() {
  local out
  out="$(cd "$JS" && npm pack --dry-run --json --ignore-scripts 2>/dev/null)" || return 1
  printf '%s\n' "$out" | node -e '
    const [pkg] = JSON.parse(require("fs").readFileSync(0, "utf8"));
    const files = pkg.files.map((f) => f.path);
    const need = ["package.json", "README.md", "dist/index.js", "dist/index.d.ts", "dist/webrtc.js", "dist/webrtc.d.ts"];
    const missing = need.filter((f) => !files.includes(f));
    const stray = files.filter((f) => !/^(package\.json|README\.md|dist\/)/.test(f));
    console.log(`${pkg.name}@${pkg.version}: ${files.length} files, ${pkg.size} bytes packed`);
    if (missing.length || stray.length) {
      console.error(`missing: ${missing.join(", ") || "-"}; not meant to ship: ${stray.join(", ") || "-"}`);
      process.exit(1);
    }'
}
step "js: npm pack --dry-run (package contents)" pack_dry_run
