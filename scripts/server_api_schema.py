#!/usr/bin/env python3
"""Schema-driven test of the Server API: schemathesis against a real node.

Starts one embedded `switchboard` node (the binary given) on a free loopback
port with an API key, joins a few peers to two rooms over real WebSockets so
that the calls find rooms and peers (the OpenAPI links lead from the listing
to them), and runs schemathesis with docs/openapi.json: every check (with
the statuses scripts/server_api_schema.toml allows), a fixed seed, a bounded
number of examples per call and a time budget. Fails on any failure of
schemathesis (a 5xx above all), or when the node logged a panic or exited.

Usage: server_api_schema.py SWITCHBOARD_BINARY SCHEMATHESIS_BINARY
"""
import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = "schema-check-key-0123456789"
# Bounds: the whole run, and schemathesis's own budget inside it.
NODE_START_SECS = 20
MAX_EXAMPLES = 25
MAX_TIME_SECS = 40
# Fixed, so that a failure replays; change it to explore elsewhere.
SEED = 20261206
# Calls the document describes ahead of their code (none now).
NOT_SERVED = []
SEED_PEERS = [("lobby", "alice"), ("lobby", "bob"), ("lobby", "carol"), ("stage", "dave")]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(port, node):
    deadline = time.monotonic() + NODE_START_SECS
    while time.monotonic() < deadline:
        if node.poll() is not None:
            sys.exit(f"the node exited at start (status {node.returncode})")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(f"the node did not answer /health within {NODE_START_SECS} s")


def ws_join(port, room, peer):
    """A WebSocket joined to `room` as `peer` (a minimal client: one masked
    text frame out, the `joined` reply read back)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            sys.exit("the node closed the upgrade")
        head += chunk
    if b" 101 " not in head.split(b"\r\n", 1)[0]:
        sys.exit(f"upgrade refused: {head[:200]!r}")
    payload = json.dumps({"type": "join", "room": room, "peer": peer}).encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
    reply = head.split(b"\r\n\r\n", 1)[1]
    deadline = time.monotonic() + 5
    while b"joined" not in reply and time.monotonic() < deadline:
        reply += s.recv(4096)
    if b"joined" not in reply:
        sys.exit(f"{peer} did not join {room}: {reply[:200]!r}")
    return s


def main():
    binary, schemathesis = sys.argv[1], sys.argv[2]
    port = free_port()
    env = dict(os.environ, PORT=str(port), HOST="127.0.0.1", API_KEYS=KEY,
               LOG_FORMAT="json", SERVER_ID="schema-node")
    log_path = os.path.join(ROOT, ".tools", "server-api-schema-node.log")
    with open(log_path, "w") as log:
        node = subprocess.Popen([binary], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_healthy(port, node)
            sockets = [ws_join(port, room, peer) for room, peer in SEED_PEERS]
            config = os.path.join(ROOT, "scripts", "server_api_schema.toml")
            cmd = [schemathesis, "--config-file", config, "--no-color",
                   "run", os.path.join(ROOT, "docs", "openapi.json"),
                   "--url", f"http://127.0.0.1:{port}",
                   "--header", f"Authorization: Bearer {KEY}",
                   "--checks", "all", "--max-examples", str(MAX_EXAMPLES),
                   "--max-time", str(MAX_TIME_SECS), "--seed", str(SEED),
                   "--workers", "1", "--request-timeout", "10"]
            for op in NOT_SERVED:
                cmd += ["--exclude-operation-id", op]
            # In .tools/: schemathesis keeps a cache of what it found
            # (.schemathesis/) in its working directory.
            result = subprocess.run(cmd, timeout=MAX_TIME_SECS * 3,
                                    cwd=os.path.join(ROOT, ".tools"))
            for s in sockets:
                s.close()
            alive = node.poll() is None
        finally:
            node.kill()
            node.wait(timeout=10)
    with open(log_path) as f:
        panics = [line for line in f if "panicked" in line]
    if panics:
        print("the node panicked:\n" + "".join(panics[:5]), file=sys.stderr)
        return 1
    if not alive:
        print(f"the node exited during the run; its log is {log_path}", file=sys.stderr)
        return 1
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
