"""The node user data, run for real in a sandbox (see sandbox.py) for both
install methods: which files it writes, in which order it does things, what
the server is started with, and that a bad download or an unreadable secret
stops it instead of starting a broken server."""

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import BINARY_URL, INSTANCE_ID, JWT_SECRET, REDIS_TOKEN
from sandbox import Sandbox, UnitFailed, parse_environment_file

REDIS_URL = "rediss://:%s@master.sb-redis.abcdef.euw1.cache.amazonaws.com:6379" % REDIS_TOKEN
JWT_ISSUER = 'https://issuer.example.com/a b "quoted" $HOME \\n'


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


# --- binary install ------------------------------------------------------------


def test_binary_boot_writes_the_node_and_starts_it_last(booted):
    sb = booted
    node_env = parse_environment_file(sb.path("/etc/switchboard/node.env").read_text())
    assert node_env["INSTANCE_ID"] == INSTANCE_ID
    assert node_env["ASG_NAME"] == "sb-nodes" and node_env["PORT"] == "8080"
    assert os.access(sb.path("/usr/local/bin/switchboard"), os.X_OK)
    assert mode(sb.path("/usr/local/libexec/switchboard/secrets-env")) == 0o700
    for unit in ("switchboard.service", "switchboard-lifecycle.service", "switchboard-liveness.service",
                 "switchboard-metrics.service", "switchboard-metrics.timer"):
        assert sb.path("/etc/systemd/system/" + unit).is_file(), unit

    agent = json.loads(sb.unrewrite(sb.path("/opt/aws/amazon-cloudwatch-agent/etc/switchboard.json").read_text()))
    collected = agent["logs"]["logs_collected"]["files"]["collect_list"]
    assert collected == [{"file_path": "/var/log/switchboard/server.log", "log_group_name": "/sb/server",
                          "log_stream_name": "{instance_id}"}]

    # Packages first; the tarball is checked before it is installed; the
    # service starts after everything it needs is in place.
    first = [c for c in sb.calls() if not (c["cmd"] == "curl" and "169.254.169.254" in " ".join(c["args"]))][0]
    assert first["cmd"] == "dnf" and "install" in first["args"]
    assert sb.index("dnf", "install", "amazon-cloudwatch-agent") < sb.index("curl", BINARY_URL)
    assert sb.index("curl", BINARY_URL + ".sha256") < sb.index("systemctl", "daemon-reload")
    assert sb.index("systemctl", "daemon-reload") < sb.index("systemctl", "enable", "--now", "switchboard.service")
    assert sb.index("systemctl", "restart", "rsyslog") < sb.index("systemctl", "enable", "--now", "switchboard.service")
    assert sb.index("amazon-cloudwatch-agent-ctl", "fetch-config") < sb.index("systemctl", "enable", "--now", "switchboard.service")
    start = sb.calls()[sb.index("systemctl", "enable", "--now", "switchboard.service")]
    in_place = {sb.unrewrite(p): e for p, e in start["exists"].items()}
    assert in_place["/usr/local/bin/switchboard"] and in_place["/etc/systemd/system/switchboard.service"]
    assert in_place["/etc/switchboard/node.env"] and in_place["/etc/switchboard/switchboard.env"]
    assert in_place["/usr/local/libexec/switchboard/secrets-env"]
    # First boot: nothing has written the secrets yet when the service starts.
    assert not in_place["/run/switchboard-secrets/secrets.env"]
    helpers = sb.calls()[sb.index("systemctl", "enable", "--now", "switchboard-liveness.service")]
    assert "switchboard-lifecycle.service" in helpers["args"] and "switchboard-metrics.timer" in helpers["args"]


def test_first_start_reads_the_secrets_its_exec_start_pre_writes(booted):
    """Defect 1: the secrets file does not exist at the first start; systemd
    reads environment files before ExecStartPre too. The server must still
    come up, with the token and secrets from Secrets Manager."""
    sb = booted
    assert not sb.path("/run/switchboard-secrets/secrets.env").exists()
    sb.start_unit("switchboard.service")
    env = json.loads((sb.dir / "server-env.json").read_text())
    assert env["REDIS_URL"] == REDIS_URL
    assert env["JWT_SECRET"] == JWT_SECRET
    assert env["JWT_ISSUER"] == JWT_ISSUER
    assert env["SERVER_ID"] == INSTANCE_ID and env["PORT"] == "8080" and env["MAX_CONNECTIONS"] == "10000"
    assert mode(sb.path("/run/switchboard-secrets")) == 0o700
    assert mode(sb.path("/run/switchboard-secrets/secrets.env")) == 0o600


def test_simulated_systemd_fails_a_start_on_a_missing_environment_file(booted):
    """Guards the test above: without the "-" prefix (the unit as it was) the
    first start fails before ExecStartPre runs, as on a real instance."""
    sb = booted
    unit = sb.path("/etc/systemd/system/switchboard.service")
    unit.write_text(unit.read_text().replace("EnvironmentFile=-", "EnvironmentFile="))
    with pytest.raises(UnitFailed, match="Failed to load environment files: /run/switchboard-secrets/secrets.env"):
        sb.start_unit("switchboard.service")
    assert not sb.calls("aws"), "ExecStartPre must not have run"


def test_checksum_mismatch_installs_and_starts_nothing(sandbox, rendered):
    sandbox.rule("curl", BINARY_URL + ".sha256", body="%s  switchboard.tar.gz\n" % ("0" * 64), first=True)
    result = sandbox.run_script(rendered("binary")["user_data"], "user-data")
    assert result.returncode != 0
    assert "expected '%s'" % ("0" * 64) in sandbox.output()
    assert not sandbox.path("/usr/local/bin/switchboard").exists()
    assert not [c for c in sandbox.calls("systemctl") if "enable" in c["args"]]


def test_missing_checksum_file_installs_nothing(sandbox, rendered):
    sandbox.rule("curl", BINARY_URL + ".sha256", rc=22, first=True)
    result = sandbox.run_script(rendered("binary")["user_data"], "user-data")
    assert result.returncode != 0
    assert not sandbox.path("/usr/local/bin/switchboard").exists()


def test_pinned_checksum_is_used_instead_of_the_published_one(sandbox, rendered, release):
    _, digest = release
    result = sandbox.run_script(rendered("binary", digest)["user_data"], "user-data")
    assert result.returncode == 0, sandbox.output()
    assert not [c for c in sandbox.calls("curl") if c["args"][-1].endswith(".sha256")]
    assert sandbox.path("/usr/local/bin/switchboard").exists()

    wrong = "f" * 64
    other = sandbox.dir / "again"
    other.mkdir()
    sb2 = Sandbox(other)
    sb2.behaviour["rules"] = sandbox.behaviour["rules"]
    result = sb2.run_script(rendered("binary", wrong)["user_data"], "user-data")
    assert result.returncode != 0
    assert not sb2.path("/usr/local/bin/switchboard").exists()


def test_a_secret_that_cannot_be_read_fails_the_start_and_keeps_the_old_file(booted):
    sb = booted
    sb.start_unit("switchboard.service")
    before = sb.path("/run/switchboard-secrets/secrets.env").read_text()
    sb.rule("aws", "sb/jwt", rc=255, stderr="An error occurred (AccessDeniedException)\n", first=True)
    with pytest.raises(UnitFailed, match="ExecStartPre"):
        sb.start_unit("switchboard.service")
    assert sb.path("/run/switchboard-secrets/secrets.env").read_text() == before


def test_no_secret_in_the_user_data(rendered):
    for method in ("binary", "container"):
        text = rendered(method)["user_data"]
        assert REDIS_TOKEN not in text and "redis-auth-token-AbCdEf" in text
        assert "SERVER_SECRETS='JWT_SECRET=arn:aws:secretsmanager:" in text


# --- container install ------------------------------------------------------------


def test_container_boot_pulls_then_runs_with_the_secrets(sandbox, rendered):
    sb = sandbox
    sb.behaviour["installs"]["docker"] = []
    result = sb.run_script(rendered("container")["user_data"], "user-data")
    assert result.returncode == 0, sb.output()
    assert sb.index("dnf", "install", "docker") < sb.index("systemctl", "enable", "--now", "docker")
    assert sb.index("systemctl", "enable", "--now", "docker") < sb.index("docker", "pull")
    assert sb.calls("docker")[0]["args"] == ["pull", "ghcr.io/switchboard-dev/switchboard:1.2.3"]
    assert sb.index("docker", "pull") < sb.index("systemctl", "enable", "--now", "switchboard.service")
    assert not sb.path("/usr/local/bin/switchboard").exists()

    sb.start_unit("switchboard.service")
    run = [c for c in sb.calls("docker") if c["args"][:1] == ["run"]][-1]
    assert run["args"][-1] == "ghcr.io/switchboard-dev/switchboard:1.2.3"
    assert "--read-only" in run["args"] and ["--network", "host"] == run["args"][run["args"].index("--network"):][:2]
    files = {sb.unrewrite(p): text for p, text in run["files"].items()}
    secrets = files["/run/switchboard-secrets/secrets.docker.env"]
    # docker takes everything after "=" verbatim: no quoting here.
    assert "REDIS_URL=%s\n" % REDIS_URL in secrets
    assert "JWT_SECRET=%s\n" % JWT_SECRET in secrets
    plain = files["/etc/switchboard/switchboard.docker.env"]
    assert "SERVER_ID=%s\n" % INSTANCE_ID in plain and "JWT_ISSUER=%s\n" % JWT_ISSUER in plain


# --- the units as systemd sees them ---------------------------------------------------


@pytest.mark.parametrize("method", ["binary", "container"])
def test_systemd_analyze_verify_accepts_the_units(sandbox, rendered, tmp_path, method):
    """systemd-analyze verify on the units the user data wrote, at their real
    paths in a scratch root that also holds the commands they run."""
    verify = shutil.which("systemd-analyze")
    if not verify:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    sb = sandbox
    result = sb.run_script(rendered(method)["user_data"], "user-data")
    assert result.returncode == 0, sb.output()
    root = tmp_path / "verify-root"
    units = root / "etc/systemd/system"
    units.mkdir(parents=True)
    names = sorted(p.name for p in sb.path("/etc/systemd/system").iterdir())
    for name in names:
        (units / name).write_text(sb.unrewrite(sb.path("/etc/systemd/system/" + name).read_text()))
    for exe in ("/usr/local/bin/switchboard", "/usr/local/libexec/switchboard/secrets-env",
                "/usr/local/libexec/switchboard/lifecycle-watch", "/usr/local/libexec/switchboard/liveness-watch",
                "/usr/local/libexec/switchboard/publish-metrics", "/usr/bin/docker"):
        target = root / exe.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("#!/bin/sh\n")
        target.chmod(0o755)
    if method == "container":
        (units / "docker.service").write_text("[Unit]\nDescription=stand-in\n[Service]\nExecStart=/usr/bin/docker\n")
    (root / "usr/lib/systemd").mkdir(parents=True)
    (root / "usr/lib/systemd/system").symlink_to("/lib/systemd/system")
    out = subprocess.run([verify, "verify", "--root=%s" % root] + ["/etc/systemd/system/" + n for n in names],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and not out.stderr.strip() and not out.stdout.strip(), out.stdout + out.stderr


@pytest.mark.parametrize("method", ["binary", "container"])
def test_every_script_parses(sandbox, rendered, method):
    sb = sandbox
    assert sb.run_script(rendered(method)["user_data"], "user-data").returncode == 0
    for script in ("secrets-env", "lifecycle-watch", "liveness-watch"):
        r = subprocess.run(["bash", "-n", str(sb.path("/usr/local/libexec/switchboard/" + script))],
                           capture_output=True, text=True)
        assert r.returncode == 0, (script, r.stderr)
    r = subprocess.run(["python3", "-m", "py_compile", str(sb.path("/usr/local/libexec/switchboard/publish-metrics"))],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("method", ["binary", "container"])
def test_shellcheck_finds_nothing(rendered, tmp_path, method):
    checker = shutil.which("shellcheck")
    if not checker:
        pytest.skip("shellcheck is not installed (Debian package shellcheck)")
    script = tmp_path / "user-data.sh"
    script.write_text(rendered(method)["user_data"])
    files = [str(script)] + [str(p) for p in (Path(__file__).resolve().parents[2] / "modules/node-bootstrap/files").glob("*.sh")]
    out = subprocess.run([checker, "-S", "warning"] + files, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout
