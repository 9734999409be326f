#!/usr/bin/env python3
"""Runs the shell commands of README.md as a user would, against a real node.

Every fenced block tagged `sh` is run with bash (`set -euo pipefail`), one
block at a time, in a scratch directory with a virtualenv's `bin` first on
PATH (so `pip install` works as on a developer machine) and the repository's
`target/debug` next (the `switchboard` a user would have installed). A node
is started on a free loopback port first, and `localhost:8080` in a command
is pointed at it. `make run` and `make test` are not run (one serves forever,
the other is the command running this), nor blocks tagged `bash`: the README
keeps that tag for long runs (fuzzing), which the nightly workflow runs.
Exits non-zero naming each command that failed.
"""
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

SKIPPED = {"make run", "make test"}
TIMEOUT = 300


def blocks(readme):
    """The `sh` blocks of the README, as lists of lines."""
    found, current = [], None
    for line in readme.splitlines():
        if current is None and line.strip() == "```sh":
            current = []
        elif current is not None and line.strip() == "```":
            found.append(current)
            current = None
        elif current is not None:
            current.append(line)
    return found


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_node(binary, port):
    env = {"PATH": os.environ["PATH"], "HOST": "127.0.0.1", "PORT": str(port)}
    node = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1):
                return node
        except OSError:
            time.sleep(0.05)  # the node has no readiness signal but its port
    node.kill()
    sys.exit(f"the node did not become ready on port {port}")


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    binary = os.path.join(root, "target", "debug", "switchboard")
    if not os.path.exists(binary):
        subprocess.run(["cargo", "build", "-q", "-p", "switchboard"], cwd=root, check=True)
    with open(os.path.join(root, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    scratch = tempfile.mkdtemp(prefix="readme-")
    subprocess.run([sys.executable, "-m", "venv", os.path.join(scratch, "venv")], check=True)
    path = os.pathsep.join([os.path.join(scratch, "venv", "bin"),
                            os.path.join(root, "target", "debug"), os.environ["PATH"]])
    port = free_port()
    node = start_node(binary, port)
    failed, ran = [], 0
    try:
        for block in blocks(readme):
            commands = [c for c in block if c.strip() and c.strip() not in SKIPPED]
            if not commands:
                continue
            script = "set -euo pipefail\n" + "\n".join(commands)
            script = script.replace("localhost:8080", f"localhost:{port}")
            env = dict(os.environ, PATH=path, CARGO_TERM_QUIET="true")
            env.pop("JWT_SECRET", None)
            result = subprocess.run(["bash", "-c", script], cwd=root, env=env,
                                    capture_output=True, text=True, timeout=TIMEOUT)
            ran += 1
            shown = " && ".join(commands)
            last = (result.stdout.strip().splitlines() or [""])[-1]
            if result.returncode == 0 and last:
                print(f"ok: {shown}\n    -> {last[:160]}")
            else:
                failed.append(shown)
                print(f"FAILED (exit {result.returncode}; no output also fails): {shown}\n"
                      f"{result.stdout}{result.stderr}")
    finally:
        node.kill()
        node.wait()
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"{ran - len(failed)} passed, {len(failed)} failed")
    return 1 if failed or ran == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
