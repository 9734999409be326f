#!/usr/bin/env bash
# The project's one test command (`make test` calls it, and so does CI).
# Installs what the checks need, runs every check script under scripts/checks/,
# and ends with one summary line. Exits non-zero when any check failed.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT" || exit 1

export SB_RESULTS="$TOOLS/results"
rm -rf "$SB_RESULTS"
mkdir -p "$SB_RESULTS"

only="${1:-}"
for script in scripts/checks/*.sh; do
  area="$(basename "$script" .sh)"
  if [ -n "$only" ] && [ "$only" != "$area" ]; then continue; fi
  log "check area: $area"
  if ! bash "$script"; then
    echo "$area (script error)" >>"$SB_RESULTS/failed"
  fi
done

passed=$(cat "$SB_RESULTS/passed" 2>/dev/null | wc -l)
failed=$(cat "$SB_RESULTS/failed" 2>/dev/null | wc -l)
tests=$(cat "$SB_RESULTS/tests" 2>/dev/null || echo 0)
echo
echo "Checks run: $((passed + failed)); Rust tests run: $tests"
if [ "$failed" -gt 0 ]; then
  echo "Failed checks:"
  sed 's/^/  - /' "$SB_RESULTS/failed"
fi
echo "checks: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
