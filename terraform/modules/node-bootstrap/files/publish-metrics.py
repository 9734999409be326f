#!/usr/bin/python3
"""switchboard-metrics.service (every minute, from switchboard-metrics.timer):
publishes the node's key metrics to CloudWatch.

Reads the server's Prometheus exposition (/metrics) and readiness (/ready) on
127.0.0.1, turns counters into per-interval values with the previous sample
kept in a state file, and sends them with `aws cloudwatch put-metric-data`
into the namespace METRICS_NAMESPACE:

  per instance and per group (AutoScalingGroupName [, InstanceId]):
    Connections          open WebSocket connections (gauge)
    PeersJoined          peers joined through this node (gauge)
    RedisReachable       1 when the server reaches Redis, 0 when /ready says
                         the backend is unavailable (not sent while draining)
  per group (AutoScalingGroupName):
    MessagesIn, by Type  client messages per second
    MessagesOut          messages sent to clients per second
    RedisErrors          failed Redis operations in the interval
    RedisLatency         mean Redis operation latency in the interval (ms)
    SlowConsumerCloses   connections closed for a full outbound queue
    ConnectionsRejected  upgrades refused (connection limit, draining, auth)

The Auto Scaling group tracks the group average of Connections; the alarms
and the dashboard read the rest. Python's standard library only: it runs on
the stock Amazon Linux python3.
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

NODE_ENV = "/etc/switchboard/node.env"
STATE = "/var/lib/switchboard-metrics/state.json"
# PutMetricData takes at most this many values per call in every region.
BATCH = 20
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def load_env(path):
    """KEY='value' lines of the node configuration."""
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, value = line.split("=", 1)
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            env[key] = value
    return env


def parse(text):
    """Prometheus/OpenMetrics text -> {(name, frozenset(labels)): value}."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m:
            continue
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        labels = frozenset(LABEL.findall(m.group(2) or ""))
        samples[(m.group(1), labels)] = value
    return samples


def total(samples, name, **match):
    """Sum of every series of one metric whose labels include `match`."""
    want = set(match.items())
    return sum(v for (n, labels), v in samples.items() if n == name and want <= labels)


def by_label(samples, name, label):
    out = {}
    for (n, labels), v in samples.items():
        if n == name:
            key = dict(labels).get(label)
            if key is not None:
                out[key] = out.get(key, 0.0) + v
    return out


def delta(now, before):
    """Increase of a counter; a smaller value means the server restarted."""
    if before is None:
        return None
    return now - before if now >= before else now


def fetch(url, timeout=5):
    """(status, body) of a GET; status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError):
        return 0, ""


def datum(name, value, unit, dims):
    return {
        "MetricName": name,
        "Value": float(value),
        "Unit": unit,
        "Dimensions": [{"Name": k, "Value": v} for k, v in dims],
    }


def build(samples, ready, previous, elapsed, group, instance):
    """The metric data of one run, and the counters to keep for the next."""
    g = [("AutoScalingGroupName", group)]
    gi = g + [("InstanceId", instance)]
    data = []

    def both(name, value, unit):
        data.append(datum(name, value, unit, g))
        data.append(datum(name, value, unit, gi))

    both("Connections", total(samples, "switchboard_connections_active"), "Count")
    both("PeersJoined", total(samples, "switchboard_peers_active"), "Count")
    if ready is not None:
        both("RedisReachable", 1 if ready else 0, "None")

    counters = {
        "in": by_label(samples, "switchboard_messages_in_total", "type"),
        "out": total(samples, "switchboard_messages_out_total"),
        "redis_errors": total(samples, "switchboard_redis_errors_total"),
        "redis_sum": total(samples, "switchboard_redis_op_seconds_sum"),
        "redis_count": total(samples, "switchboard_redis_op_seconds_count"),
        "slow": total(samples, "switchboard_slow_consumer_closes_total"),
        "rejected": total(samples, "switchboard_connections_rejected_total"),
    }
    if previous is None or elapsed <= 0:
        return data, counters

    for kind, now in sorted(counters["in"].items()):
        d = delta(now, previous.get("in", {}).get(kind, 0.0))
        # Types never seen on this node stay out: they would only add
        # (billed) metrics that are always zero.
        if now > 0:
            data.append(datum("MessagesIn", d / elapsed, "Count/Second", g + [("Type", kind)]))
    data.append(datum("MessagesOut", delta(counters["out"], previous.get("out", 0.0)) / elapsed, "Count/Second", g))
    for name, key in (("RedisErrors", "redis_errors"), ("SlowConsumerCloses", "slow"),
                      ("ConnectionsRejected", "rejected")):
        data.append(datum(name, delta(counters[key], previous.get(key, 0.0)), "Count", g))
    ops = delta(counters["redis_count"], previous.get("redis_count", 0.0))
    if ops:
        seconds = delta(counters["redis_sum"], previous.get("redis_sum", 0.0))
        data.append(datum("RedisLatency", 1000.0 * seconds / ops, "Milliseconds", g))
    return data, counters


def readiness(status, body):
    """True/False for Redis reachable, None when it says nothing about Redis."""
    if status == 200:
        return True
    if status == 503:
        try:
            doc = json.loads(body)
        except ValueError:
            return None
        if doc.get("status") == "backend_unavailable":
            return False
    return None


def put(env, data):
    for i in range(0, len(data), BATCH):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(data[i:i + BATCH], f)
            path = f.name
        try:
            subprocess.run(
                ["aws", "cloudwatch", "put-metric-data", "--region", env["REGION"],
                 "--namespace", env["METRICS_NAMESPACE"], "--metric-data", "file://" + path],
                check=True)
        finally:
            os.unlink(path)


def main():
    env = load_env(NODE_ENV)
    state_path = STATE
    base = "http://127.0.0.1:%s" % env["PORT"]
    status, text = fetch(base + "/metrics")
    if status != 200:
        print("switchboard /metrics did not answer (status %s): nothing published" % status,
              file=sys.stderr)
        return 1
    samples = parse(text)
    ready = readiness(*fetch(base + "/ready"))

    try:
        with open(state_path) as f:
            state = json.load(f)
    except (OSError, ValueError):
        state = {}
    instance = env["INSTANCE_ID"]
    now = time.time()
    previous = state.get("counters")
    elapsed = now - state.get("time", now)

    data, counters = build(samples, ready, previous, elapsed, env["ASG_NAME"], instance)
    put(env, data)
    os.makedirs(os.path.dirname(state_path), exist_ok=True)
    with open(state_path + ".new", "w") as f:
        json.dump({"time": now, "counters": counters}, f)
    os.replace(state_path + ".new", state_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
