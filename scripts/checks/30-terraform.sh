#!/usr/bin/env bash
# Terraform (terraform/): the configuration is run, not grepped.
# - terraform fmt -check
# - terraform init -backend=false and validate, for the root and every module
# - terraform test: tests/*.tftest.hcl plan and apply against a mocked AWS
#   provider and assert planned values
# - tests/bootstrap: the node user data, rendered by Terraform, is executed
#   in a sandbox for both install methods with aws, curl, systemctl, dnf and
#   docker replaced by recorders; its units go through systemd-analyze
#   verify, its rsyslog rule through a real rsyslogd (pytest)
# - checkov policy scan, failing on any failed check (every suppression
#   carries its reason in the code)
# - tests/policy_checks.py: project rules none of the above enforce, with a
#   self-test that breaks each one
#
# Offline: providers come from the machine's filesystem mirror of
# hashicorp/aws (the machine image ships one; found below), never from the
# network. Set TF_PROVIDER_MIRROR to point at another mirror, or
# TF_ALLOW_PROVIDER_DOWNLOAD=1 (GitHub Actions) to let terraform download
# them. Without a Terraform >= 1.9 or without providers, the steps that need
# them are skipped with the reason, and the rest still runs.
set -uo pipefail
source "$(dirname "$0")/../lib.sh"
cd "$ROOT" || exit 1

TF_DIR="$ROOT/terraform"
export CHECKPOINT_DISABLE=1  # no version check calls from the terraform binary
export TF_IN_AUTOMATION=1
CHECKOV_VENV="$TOOLS/checkov-venv"
CHECKOV_VERSION=3.3.30
TF_MIN_VERSION=1.9.0

need_pip python-hcl2==8.1.4 pytest==8.3.4
# systemd-analyze (Debian's systemd package) verifies the units, rsyslogd runs
# the log rule, shellcheck reads the user data and the node scripts.
need_apt systemd rsyslog shellcheck

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

# --- Terraform and its providers --------------------------------------------------

# The first terraform on PATH (or in the usual places) that is recent enough:
# an old one, such as a Python wrapper's 1.0, may come first.
find_terraform() {
  local candidate version
  while IFS= read -r candidate; do
    version="$("$candidate" version -json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["terraform_version"])' 2>/dev/null)" || continue
    if [ -n "$version" ] && [ "$(printf '%s\n%s\n' "$TF_MIN_VERSION" "$version" | sort -V | head -n1)" = "$TF_MIN_VERSION" ]; then
      echo "$candidate"
      return 0
    fi
  done < <(type -ap terraform; ls /usr/local/bin/terraform /usr/bin/terraform 2>/dev/null)
  return 1
}

# Root of a filesystem mirror holding hashicorp/aws (the directory that
# contains registry.terraform.io/). Remembered in .tools/ once found.
find_mirror() {
  local cache="$TOOLS/terraform-mirror" dir found
  valid() { compgen -G "$1/registry.terraform.io/hashicorp/aws/*/*/terraform-provider-aws_*" >/dev/null; }
  if [ -n "${TF_PROVIDER_MIRROR:-}" ]; then
    valid "$TF_PROVIDER_MIRROR" && { echo "$TF_PROVIDER_MIRROR"; return 0; }
    echo "TF_PROVIDER_MIRROR=$TF_PROVIDER_MIRROR holds no hashicorp/aws provider" >&2
    return 1
  fi
  if [ -f "$cache" ] && valid "$(cat "$cache")"; then
    cat "$cache"
    return 0
  fi
  for dir in /opt/tf-plugins /usr/share/terraform/plugins /usr/local/share/terraform/plugins \
    "$HOME/.terraform.d/plugins" "$HOME/.local/share/terraform/plugins"; do
    if valid "$dir"; then
      echo "$dir" | tee "$cache"
      return 0
    fi
  done
  # Anywhere else on the root file system (bounded: a few seconds).
  found="$(timeout 60 find / -xdev -path '*/registry.terraform.io/hashicorp/aws/*' \
    -name 'terraform-provider-aws_*' -type f -print -quit 2>/dev/null)"
  if [ -n "$found" ]; then
    dir="${found%%/registry.terraform.io/*}"
    echo "$dir" | tee "$cache"
    return 0
  fi
  return 1
}

TERRAFORM="$(find_terraform)" || TERRAFORM=""
MIRROR=""
PROVIDERS=""  # why providers are unavailable, or empty when they are
if [ -z "$TERRAFORM" ]; then
  PROVIDERS="no terraform >= $TF_MIN_VERSION on PATH or in /usr/local/bin (install Terraform $TF_MIN_VERSION or later)"
elif MIRROR="$(find_mirror)"; then
  # Symlinks into the mirror instead of a copy of the ~700 MB provider per
  # initialised directory; nothing is ever fetched from the network.
  cat >"$TOOLS/terraform.rc" <<EOF
plugin_cache_dir = "$MIRROR"
plugin_cache_may_break_dependency_lock_file = true
provider_installation {
  filesystem_mirror {
    path = "$MIRROR"
  }
  direct {
    exclude = ["*/*/*"]
  }
}
EOF
  export TF_CLI_CONFIG_FILE="$TOOLS/terraform.rc"
  echo "terraform: $TERRAFORM ($("$TERRAFORM" version | head -n1)), provider mirror $MIRROR" >&2
elif [ "${TF_ALLOW_PROVIDER_DOWNLOAD:-}" = 1 ]; then
  # Downloaded once, shared by every initialised directory.
  export TF_PLUGIN_CACHE_DIR="$TOOLS/terraform-plugin-cache"
  mkdir -p "$TF_PLUGIN_CACHE_DIR"
  echo "terraform: $TERRAFORM, providers downloaded (TF_ALLOW_PROVIDER_DOWNLOAD=1)" >&2
else
  PROVIDERS="no filesystem mirror of the hashicorp/aws provider on this machine (set TF_PROVIDER_MIRROR, or TF_ALLOW_PROVIDER_DOWNLOAD=1 where the network is allowed)"
fi
[ -n "$TERRAFORM" ] && export TERRAFORM

# The checks run in a scratch copy: no .terraform/, lock file or state is left
# in the work tree, and a stale one cannot change the result.
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cp -r "$TF_DIR" "$WORK/terraform"
find "$WORK/terraform" \( -name .terraform -o -name '.terraform.lock.hcl' -o -name '*.tfstate*' \) -prune -exec rm -rf {} +

tf_fmt() {
  (cd "$TF_DIR" && "$TERRAFORM" fmt -check -recursive -diff)
}

# One directory: init (providers are links into the mirror) and validate.
# Output goes to DIR/check.log; prints ok/FAIL.
validate_one() {
  local dir="$1"
  if (cd "$dir" && "$TERRAFORM" init -backend=false -input=false -no-color \
    && "$TERRAFORM" validate -no-color) >"$dir/check.log" 2>&1; then
    echo "ok   ${dir#"$WORK"/}"
  else
    echo "FAIL ${dir#"$WORK"/}:"
    cat "$dir/check.log"
    return 1
  fi
}

# Most of the time goes to starting the provider plugin: the directories
# (and below, the test files) run side by side.
tf_validate() {
  local dir rc=0 pids=()
  for dir in "$WORK/terraform" "$WORK"/terraform/modules/*/; do
    validate_one "${dir%/}" &
    pids+=("$!")
  done
  for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
  return "$rc"
}

tf_test() {
  local f name rc=0 pids=()
  for f in "$WORK"/terraform/tests/*.tftest.hcl; do
    name="$(basename "$f")"
    (cd "$WORK/terraform" && "$TERRAFORM" test -no-color -filter="tests/$name" >"$WORK/test-$name.log" 2>&1) &
    pids+=("$!")
  done
  for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
  for f in "$WORK"/terraform/tests/*.tftest.hcl; do
    cat "$WORK/test-$(basename "$f").log"
  done
  return "$rc"
}

bootstrap_sandbox() {
  (cd "$TF_DIR/tests/bootstrap" && PYTHONDONTWRITEBYTECODE=1 \
    "$VENV/bin/python" -m pytest -q -p no:cacheprovider .)
}

hcl_parse() {
  "$VENV/bin/python" - "$TF_DIR" <<'PY'
import sys
from pathlib import Path
import hcl2

root = Path(sys.argv[1])
files = sorted(p for p in root.rglob("*") if p.is_file() and ".terraform" not in p.parts
               and (p.suffix in (".tf", ".tfvars") or p.name.endswith(".tftest.hcl")))
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

checkov_scan() {
  (cd "$TF_DIR" && "$CHECKOV_VENV/bin/checkov" -d . --framework terraform --skip-download \
    --quiet --compact --skip-path tests/bootstrap/render)
}

if [ -n "$TERRAFORM" ]; then
  step "terraform: fmt -check" tf_fmt
  step "terraform: node user data run in a sandbox (both install methods)" bootstrap_sandbox
else
  step "terraform: every file parses (python-hcl2; terraform missing)" hcl_parse
  skip_step "terraform: fmt -check" "$PROVIDERS"
  skip_step "terraform: node user data run in a sandbox (both install methods)" "$PROVIDERS"
fi
if [ -z "$PROVIDERS" ]; then
  step "terraform: init and validate (root and every module)" tf_validate
  step "terraform: test (mocked AWS provider, planned values)" tf_test
else
  skip_step "terraform: init and validate (root and every module)" "$PROVIDERS"
  skip_step "terraform: test (mocked AWS provider, planned values)" "$PROVIDERS"
fi
step "terraform: checkov (no failed checks)" checkov_scan
step "terraform: policy checks" "$VENV/bin/python" "$TF_DIR/tests/policy_checks.py" "$TF_DIR"
step "terraform: policy checks can fail (self-test)" "$VENV/bin/python" "$TF_DIR/tests/policy_checks.py" --selftest "$TF_DIR"
