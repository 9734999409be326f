#!/usr/bin/env python3
"""Redis CPU per request when requests arrive one at a time, as paced signals do.

    paced_ping.py PORT REDIS_PID [RATE_PER_CONNECTION] [SECONDS] [CONNECTIONS]

Opens CONNECTIONS (default 2, like two nodes) to redis-server on 127.0.0.1:PORT;
each sends PING at RATE_PER_CONNECTION (default 2,500/s) and waits for the reply,
for SECONDS (default 6). Prints the server's CPU time per request, read from
/proc/REDIS_PID/stat, and how often its threads went to sleep per request: what
one wake-up, one read and one reply cost that Redis, the least any request can
cost it at that pace.
"""
import os
import socket
import sys
import threading
import time


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sleeps(pid):
    """Times the threads of pid went to sleep waiting (voluntary context switches)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass  # the thread ended
    return total


def client(port, rate, count, errors):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        start, gap = time.perf_counter(), 1.0 / rate
        for i in range(count):
            wait = start + i * gap - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            s.sendall(b"PING\r\n")
            if not s.recv(64).startswith(b"+PONG"):
                raise RuntimeError("unexpected reply to PING")
        s.close()
    except (OSError, RuntimeError) as e:
        errors.append(e)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    port, pid = int(sys.argv[1]), int(sys.argv[2])
    rate = float(sys.argv[3]) if len(sys.argv) > 3 else 2500.0
    seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 6.0
    connections = int(sys.argv[5]) if len(sys.argv) > 5 else 2
    count = int(rate * seconds)
    errors = []
    before, slept, t0 = cpu_seconds(pid), sleeps(pid), time.monotonic()
    threads = [threading.Thread(target=client, args=(port, rate, count, errors))
               for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed, used = time.monotonic() - t0, cpu_seconds(pid) - before
    slept = sleeps(pid) - slept
    if errors:
        sys.exit(f"paced PING failed: {errors[0]}")
    total = count * connections
    print(f"paced PING: {total} requests over {connections} connections in {elapsed:.1f} s "
          f"({total / elapsed:,.0f}/s); redis CPU {used:.2f} s = {used / total * 1e6:.1f} µs per request, "
          f"{slept / total:.2f} sleeps per request")


if __name__ == "__main__":
    main()
