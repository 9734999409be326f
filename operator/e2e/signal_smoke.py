#!/usr/bin/env python3
"""Signaling smoke test speaking Switchboard protocol version 1.

Two clients join one room, alice on URL_A and bob on URL_B (the same URL, or two
different nodes to exercise cross-node relay through Redis). alice sends bob a
`signal`, bob answers with one; each side checks it receives exactly what the
other sent. Exits 0 on success, 1 with a message saying what was missing.

    signal_smoke.py ws://127.0.0.1:18080/ws [ws://127.0.0.1:18081/ws]

Needs the `websockets` package.
"""

import asyncio
import json
import secrets
import sys

import websockets

TIMEOUT = 15.0


class SmokeError(Exception):
    pass


async def connect(url: str):
    """Connects, retrying briefly (a fresh port-forward may not accept yet)."""
    last = None
    for _ in range(10):
        try:
            return await websockets.connect(url, open_timeout=TIMEOUT, max_size=2**20)
        except (OSError, websockets.exceptions.WebSocketException, asyncio.TimeoutError) as e:
            last = e
            await asyncio.sleep(1)
    raise SmokeError(f"cannot open a WebSocket to {url}: {last}")


async def expect(ws, who: str, what: str, match):
    """Reads messages until `match(msg)` holds; other messages are skipped."""
    skipped = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while True:
        try:
            raw = await asyncio.wait_for(ws.recv(), max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:
            raise SmokeError(f"{who} did not receive {what} within {TIMEOUT:.0f}s (got only: {skipped})")
        msg = json.loads(raw)
        if msg.get("type") == "error":
            raise SmokeError(f"{who} got an error while waiting for {what}: {msg}")
        if match(msg):
            return msg
        skipped.append(msg.get("type"))


async def join(ws, who: str, room: str, req_id: int):
    await ws.send(json.dumps({"type": "join", "id": req_id, "room": room, "peer": who}))
    return await expect(
        ws, who, f"joined (id {req_id})", lambda m: m.get("type") == "joined" and m.get("id") == req_id
    )


async def main(url_a: str, url_b: str) -> None:
    room = f"e2e-{secrets.token_hex(4)}"
    alice = await connect(url_a)
    bob = await connect(url_b)
    try:
        joined = await join(alice, "alice", room, 1)
        if joined.get("room") != room or joined.get("peer") != "alice":
            raise SmokeError(f"alice's joined names the wrong room or peer: {joined}")

        joined = await join(bob, "bob", room, 1)
        peers = [p.get("peer") for p in joined.get("peers", [])]
        if peers != ["alice"]:
            raise SmokeError(f"bob's joined should list alice as the only peer, lists {peers}")
        await expect(
            alice,
            "alice",
            "peer_joined for bob",
            lambda m: m.get("type") == "peer_joined" and (m.get("peer") or {}).get("peer") == "bob",
        )

        offer = {"sdp": "v=0 offer " + secrets.token_hex(8), "kind": "offer"}
        await alice.send(json.dumps({"type": "signal", "id": 2, "to": "bob", "payload": offer}))
        await expect(alice, "alice", "ok for her signal", lambda m: m.get("type") == "ok" and m.get("id") == 2)
        got = await expect(bob, "bob", "alice's signal", lambda m: m.get("type") == "signal")
        if got.get("from") != "alice" or got.get("payload") != offer:
            raise SmokeError(f"bob got the wrong signal: {got}, expected from alice with {offer}")

        answer = {"sdp": "v=0 answer " + secrets.token_hex(8), "kind": "answer"}
        await bob.send(json.dumps({"type": "signal", "to": "alice", "payload": answer}))
        got = await expect(alice, "alice", "bob's signal", lambda m: m.get("type") == "signal")
        if got.get("from") != "bob" or got.get("payload") != answer:
            raise SmokeError(f"alice got the wrong signal: {got}, expected from bob with {answer}")
        print(f"OK signal relayed both ways in room {room} ({url_a} <-> {url_b})")
    finally:
        await alice.close()
        await bob.close()


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    a = sys.argv[1]
    b = sys.argv[2] if len(sys.argv) == 3 else a
    try:
        asyncio.run(main(a, b))
    except SmokeError as e:
        print(f"signal smoke test FAILED: {e}", file=sys.stderr)
        sys.exit(1)
