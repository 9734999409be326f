"""Fixtures of the user data tests: the user data rendered by Terraform
itself (templatefile through modules/node-bootstrap, no provider needed) for
each install method, a release tarball, and a sandbox primed with the
answers AWS, the metadata service and the release download would give.

TERRAFORM names the terraform binary (default: the one on PATH)."""

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from sandbox import Sandbox

HERE = Path(__file__).resolve().parent
MODULE = HERE.parent.parent / "modules" / "node-bootstrap"

INSTANCE_ID = "i-0123456789abcdef0"
REDIS_TOKEN = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
# A secret with every character systemd's environment files treat specially.
JWT_SECRET = 'jwt "secret" with \\ back`tick $HOME and spaces '
BINARY_URL = "https://releases.example.com/v1.2.3/switchboard-1.2.3-aarch64-unknown-linux-musl.tar.gz"

# The release's server binary, stood in by a script that records the
# environment it was started with.
FAKE_SERVER = """#!/usr/bin/env python3
import json, os
with open(os.path.join(os.environ["SB_SANDBOX"], "server-env.json"), "w") as f:
    json.dump(dict(os.environ), f)
"""


def render(tmp_dir, **variables):
    work = Path(tmp_dir)
    work.mkdir(parents=True, exist_ok=True)
    for f in (HERE / "render").glob("*.tf"):
        text = f.read_text().replace('"../../../modules/node-bootstrap"', json.dumps(str(MODULE)))
        (work / f.name).write_text(text)
    tf = os.environ.get("TERRAFORM", "terraform")
    env = dict(os.environ, TF_IN_AUTOMATION="1", CHECKPOINT_DISABLE="1")
    args = []
    for k, v in variables.items():
        args += ["-var", "%s=%s" % (k, v)]
    subprocess.run([tf, "init", "-input=false", "-backend=false"], cwd=work, env=env, check=True,
                   capture_output=True)
    subprocess.run([tf, "apply", "-input=false", "-auto-approve"] + args, cwd=work, env=env,
                   check=True, capture_output=True)
    out = subprocess.run([tf, "output", "-json"], cwd=work, env=env, check=True,
                         capture_output=True, text=True)
    values = json.loads(out.stdout)
    return {k: v["value"] for k, v in values.items()}


@pytest.fixture(scope="session")
def rendered(tmp_path_factory):
    if not shutil.which(os.environ.get("TERRAFORM", "terraform")):
        pytest.skip("terraform is not installed: the user data cannot be rendered")
    cache = {}

    def get(method, sha256=None):
        key = (method, sha256)
        if key not in cache:
            variables = {"install_method": method}
            if sha256:
                variables["binary_sha256"] = sha256
            cache[key] = render(tmp_path_factory.mktemp("render"), **variables)
        return cache[key]

    return get


@pytest.fixture(scope="session")
def release(tmp_path_factory):
    """(tarball path, its sha256) of a release holding the fake server."""
    d = tmp_path_factory.mktemp("release")
    data = FAKE_SERVER.encode()
    path = d / "switchboard.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("switchboard-1.2.3-aarch64-unknown-linux-musl/switchboard")
        info.size = len(data)
        info.mode = 0o755
        tar.addfile(info, io.BytesIO(data))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def sandbox(tmp_path, release):
    """A sandbox where AWS, IMDS and the release download answer as on a
    healthy first boot."""
    sb = Sandbox(tmp_path)
    tarball, digest = release
    sb.rule("curl", "-X PUT", "latest/api/token", stdout="IMDSTOKEN")
    sb.rule("curl", "meta-data/instance-id", stdout=INSTANCE_ID)
    sb.rule("curl", BINARY_URL + ".sha256", body="%s  switchboard-1.2.3-aarch64-unknown-linux-musl.tar.gz\n" % digest)
    sb.rule("curl", BINARY_URL, body_file=str(tarball))
    sb.rule("aws", "secretsmanager get-secret-value", "redis-auth-token", stdout=REDIS_TOKEN + "\n")
    sb.rule("aws", "secretsmanager get-secret-value", "sb/jwt", stdout=JWT_SECRET + "\n")
    sb.watch(
        "/usr/local/bin/switchboard",
        "/etc/systemd/system/switchboard.service",
        "/etc/switchboard/node.env",
        "/etc/switchboard/switchboard.env",
        "/etc/switchboard/switchboard.docker.env",
        "/usr/local/libexec/switchboard/secrets-env",
        "/run/switchboard-secrets/secrets.env",
        "/opt/aws/amazon-cloudwatch-agent/etc/switchboard.json",
        "/etc/rsyslog.d/30-switchboard.conf",
    )
    return sb


@pytest.fixture
def booted(sandbox, rendered):
    """A sandbox in which the binary install's user data has run."""
    result = sandbox.run_script(rendered("binary")["user_data"], "user-data")
    assert result.returncode == 0, (result.stderr, sandbox.output())
    return sandbox


@pytest.fixture
def node(booted):
    """A booted sandbox with a fresh call log, for running what the user
    data installed."""
    booted.forget_calls()
    return booted
