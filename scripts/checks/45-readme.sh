#!/usr/bin/env bash
# README: every command of its `sh` blocks runs as written against a real node
# (scripts/readme_commands.py says how).
set -uo pipefail
source "$(dirname "$0")/../lib.sh"
cd "$ROOT" || exit 1

need_apt openssl
step "README commands run as written" python3 scripts/readme_commands.py
