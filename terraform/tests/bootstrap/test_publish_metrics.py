"""The metrics publisher (switchboard-metrics.service), as installed by the
user data, against an HTTP server on 127.0.0.1 that answers /metrics and
/ready the way the Switchboard server does, with `aws` recorded: what it
sends to CloudWatch on a first run and on the next, how counters become
per-interval values, and what it reports while Redis is unreachable.

The exposition below follows the server's metric names (server/src/metrics.rs
and the Redis backend's registry); test_metric_names_exist_in_the_server
fails when the server renames one the publisher reads."""

import http.server
import json
import re
import threading
from pathlib import Path

import pytest

from conftest import INSTANCE_ID

PUBLISHER = "/usr/local/libexec/switchboard/publish-metrics"
SERVER_SRC = Path(__file__).resolve().parents[3] / "server" / "src"


def exposition(connections, peers, signal_in, join_in, out, redis_errors, redis_sum, redis_count, slow, rejected):
    return """# HELP switchboard_connections_active WebSocket connections open on this node.
# TYPE switchboard_connections_active gauge
switchboard_connections_active %(connections)d
# TYPE switchboard_connections_rejected counter
switchboard_connections_rejected_total{reason="connection_limit"} %(rejected)d
# TYPE switchboard_messages_in counter
switchboard_messages_in_total{type="join"} %(join_in)d
switchboard_messages_in_total{type="signal"} %(signal_in)d
switchboard_messages_in_total{type="leave"} 0
# TYPE switchboard_messages_out counter
switchboard_messages_out_total{type="joined"} %(out)d
switchboard_messages_out_total{type="peer_joined"} 0
# TYPE switchboard_slow_consumer_closes counter
switchboard_slow_consumer_closes_total %(slow)d
# TYPE switchboard_peers_active gauge
switchboard_peers_active %(peers)d
# TYPE switchboard_redis_op_seconds histogram
switchboard_redis_op_seconds_sum{op="join"} %(redis_sum)s
switchboard_redis_op_seconds_count{op="join"} %(redis_count)d
switchboard_redis_op_seconds_bucket{op="join",le="+Inf"} %(redis_count)d
# TYPE switchboard_redis_errors counter
switchboard_redis_errors_total{op="join"} %(redis_errors)d
# EOF
""" % locals()


class FakeServer:
    """/metrics and /ready of one node, changeable between runs."""

    def __init__(self):
        self.metrics = ""
        self.ready = (200, {"status": "ready", "node": INSTANCE_ID})
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == "/metrics":
                    code, body, ctype = 200, outer.metrics, "application/openmetrics-text; version=1.0.0"
                elif self.path == "/ready":
                    code, body, ctype = outer.ready[0], json.dumps(outer.ready[1]), "application/json"
                else:
                    code, body, ctype = 404, "", "text/plain"
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(node):
    srv = FakeServer()
    env = node.path("/etc/switchboard/node.env")
    env.write_text(re.sub(r"^PORT='\d+'$", "PORT='%d'" % srv.port, env.read_text(), flags=re.M))
    yield srv
    srv.close()


def published(sb):
    """{(metric, dims tuple): (value, unit)} of every put-metric-data call."""
    out = {}
    for call in sb.calls("aws"):
        if call["args"][:2] != ["cloudwatch", "put-metric-data"]:
            continue
        args = call["args"]
        assert args[args.index("--namespace") + 1] == "Switchboard"
        assert args[args.index("--region") + 1] == "eu-west-1"
        [content] = call["files"].values()
        data = json.loads(content)
        assert len(data) <= 20, "PutMetricData takes at most 20 values per call"
        for d in data:
            dims = tuple(sorted((x["Name"], x["Value"]) for x in d["Dimensions"]))
            out[(d["MetricName"], dims)] = (d["Value"], d["Unit"])
    return out


GROUP = (("AutoScalingGroupName", "sb-nodes"),)
INSTANCE = (("AutoScalingGroupName", "sb-nodes"), ("InstanceId", INSTANCE_ID))


def run_publisher(sb, seconds_since_last=None):
    state = sb.path("/var/lib/switchboard-metrics/state.json")
    if seconds_since_last is not None:
        doc = json.loads(state.read_text())
        doc["time"] -= seconds_since_last
        state.write_text(json.dumps(doc))
    result = sb.run_file(PUBLISHER)
    assert result.returncode == 0, result.stderr
    return result


def test_first_run_publishes_the_gauges(node, server):
    sb = node
    server.metrics = exposition(42, 17, 100, 10, 300, 0, "0.5", 1000, 0, 0)
    run_publisher(sb)
    got = published(sb)
    assert got[("Connections", GROUP)] == (42, "Count")
    assert got[("Connections", INSTANCE)] == (42, "Count")
    assert got[("PeersJoined", GROUP)] == (17, "Count")
    assert got[("RedisReachable", INSTANCE)] == (1, "None")
    # Rates need a previous sample.
    assert not [k for k in got if k[0] in ("MessagesIn", "RedisErrors", "RedisLatency")]


def test_next_run_publishes_rates_and_interval_counts(node, server):
    sb = node
    server.metrics = exposition(42, 17, 100, 10, 300, 2, "0.5", 1000, 1, 5)
    run_publisher(sb)
    server.metrics = exposition(40, 16, 700, 70, 1500, 5, "1.5", 1500, 4, 9)
    sb.forget_calls()
    run_publisher(sb, seconds_since_last=60)
    got = published(sb)
    value = lambda name, dims=GROUP: got[(name, dims)][0]  # noqa: E731
    assert value("MessagesIn", GROUP + (("Type", "signal"),)) == pytest.approx(10.0, rel=0.02)
    assert value("MessagesIn", GROUP + (("Type", "join"),)) == pytest.approx(1.0, rel=0.02)
    assert ("MessagesIn", GROUP + (("Type", "leave"),)) not in got, "types never seen are not published"
    assert value("MessagesOut") == pytest.approx(20.0, rel=0.02)
    assert got[("RedisErrors", GROUP)] == (3, "Count")
    assert got[("RedisLatency", GROUP)] == (pytest.approx(2.0), "Milliseconds")  # 1 s over 500 ops
    assert got[("SlowConsumerCloses", GROUP)] == (3, "Count")
    assert got[("ConnectionsRejected", GROUP)] == (4, "Count")
    assert value("Connections", INSTANCE) == 40


def test_a_restarted_server_does_not_yield_negative_counts(node, server):
    sb = node
    server.metrics = exposition(42, 17, 100, 10, 300, 7, "0.5", 1000, 5, 5)
    run_publisher(sb)
    server.metrics = exposition(3, 1, 6, 1, 12, 2, "0.01", 10, 0, 0)
    sb.forget_calls()
    run_publisher(sb, seconds_since_last=60)
    got = published(sb)
    assert got[("RedisErrors", GROUP)] == (2, "Count")
    assert all(v[0] >= 0 for v in got.values())


def test_redis_unreachable_is_published_as_zero(node, server):
    sb = node
    server.metrics = exposition(42, 17, 100, 10, 300, 0, "0.5", 1000, 0, 0)
    server.ready = (503, {"status": "backend_unavailable", "backend": {"healthy": False, "detail": "connection refused"}})
    run_publisher(sb)
    assert published(sb)[("RedisReachable", INSTANCE)] == (0, "None")
    assert published(sb)[("RedisReachable", GROUP)] == (0, "None")


def test_a_draining_node_says_nothing_about_redis(node, server):
    sb = node
    server.metrics = exposition(5, 1, 100, 10, 300, 0, "0.5", 1000, 0, 0)
    server.ready = (503, {"status": "draining", "backend": {"healthy": True, "detail": ""}})
    run_publisher(sb)
    got = published(sb)
    assert ("RedisReachable", GROUP) not in got and got[("Connections", GROUP)] == (5, "Count")


def test_a_silent_server_publishes_nothing_and_fails(node, server):
    sb = node
    server.close()
    result = sb.run_file(PUBLISHER)
    assert result.returncode != 0 and "did not answer" in result.stderr
    assert published(sb) == {}


def test_metric_names_exist_in_the_server():
    """Every family the publisher reads is registered by the server."""
    if not SERVER_SRC.is_dir():
        pytest.skip("server sources are not beside terraform/")
    source = "".join(p.read_text() for p in SERVER_SRC.rglob("*.rs"))
    publisher = (Path(__file__).resolve().parents[2] / "modules/node-bootstrap/files/publish-metrics.py").read_text()
    families = set(re.findall(r'"switchboard_([a-z_]+?)(?:_total|_sum|_count)?"', publisher))
    assert families >= {"connections_active", "peers_active", "messages_in", "redis_errors", "redis_op_seconds"}
    for family in families:
        assert '"%s"' % family in source, "the server registers no metric %r" % family
