"""The node's watchers, as installed by the user data, run in the sandbox
with curl (the server and the instance metadata), aws, systemctl and sleep
replaced by recorders. sleep returns at once, so a loop of probes takes
milliseconds; the recorders stop each loop after a bounded number of turns.

Liveness: a Redis outage (/ready 503, /health 200) must never report the
instance; a server that stops answering /health must, once, after
LIVENESS_FAILURES probes in a row. Lifecycle: on termination the server is
stopped before the drain hook is completed."""

from conftest import INSTANCE_ID

HEALTH = "http://127.0.0.1:8080/health"
LIVENESS = "/usr/local/libexec/switchboard/liveness-watch"
LIFECYCLE = "/usr/local/libexec/switchboard/lifecycle-watch"


def reports(sb):
    return [c for c in sb.calls("aws") if "set-instance-health" in c["args"]]


def test_redis_outage_never_reports_the_instance(node):
    sb = node
    sb.rule("curl", "127.0.0.1:8080/ready", rc=22, first=True)
    sb.rule("curl", HEALTH, stdout="", first=True)
    # 50 probes (over 8 minutes at the real interval), then the drain marker
    # ends the loop.
    sb.after("sleep", 50, "/run/switchboard-draining")
    result = sb.run_file(LIVENESS, timeout=60)
    assert result.returncode == 0, result.stderr
    assert len([c for c in sb.calls("curl") if HEALTH in c["args"]]) == 50
    assert not [c for c in sb.calls("curl") if "/ready" in " ".join(c["args"])]
    assert reports(sb) == []


def test_a_wedged_server_is_reported_unhealthy_after_six_failed_probes(node):
    sb = node
    sb.rule("curl", HEALTH, rc=28, times=6, first=True)  # 28: timed out
    sb.rule("curl", HEALTH, stdout="")
    sb.after("sleep", 20, "/run/switchboard-draining")
    result = sb.run_file(LIVENESS, timeout=60)
    assert result.returncode == 0, result.stderr
    [report] = reports(sb)
    assert report["args"] == ["autoscaling", "set-instance-health", "--region", "eu-west-1",
                              "--instance-id", INSTANCE_ID, "--health-status", "Unhealthy",
                              "--should-respect-grace-period"]
    probes = [i for i, c in enumerate(sb.calls()) if c["cmd"] == "curl" and HEALTH in c["args"]]
    at = sb.calls().index(report)
    assert len([i for i in probes if i < at]) == 6


def test_intermittent_failures_are_not_reported(node):
    sb = node
    for _ in range(4):
        sb.rule("curl", HEALTH, rc=7, times=5)  # 7: connection refused
        sb.rule("curl", HEALTH, stdout="", times=1)
    sb.after("sleep", 24, "/run/switchboard-draining")
    result = sb.run_file(LIVENESS, timeout=60)
    assert result.returncode == 0, result.stderr
    assert reports(sb) == []


def test_a_draining_instance_is_left_alone(node):
    sb = node
    sb.path("/run/switchboard-draining").touch()
    result = sb.run_file(LIVENESS, timeout=60)
    assert result.returncode == 0
    assert sb.calls("curl") == []
    assert reports(sb) == []


def test_termination_stops_the_server_then_completes_the_hook(node):
    sb = node
    sb.rule("curl", "meta-data/autoscaling/target-lifecycle-state", stdout="InService", times=3, first=True)
    sb.rule("curl", "meta-data/autoscaling/target-lifecycle-state", stdout="Terminated")
    sb.rule("aws", "complete-lifecycle-action", rc=255, times=1, first=True)  # a throttled first try
    sb.watch("/run/switchboard-draining")
    result = sb.run_file(LIFECYCLE, timeout=60)
    assert result.returncode == 0, result.stderr
    stop = sb.index("systemctl", "stop", "switchboard.service")
    hooks = [i for i, c in enumerate(sb.calls()) if c["cmd"] == "aws" and "complete-lifecycle-action" in c["args"]]
    assert len(hooks) == 2 and stop < hooks[0]
    assert sb.calls()[stop]["exists"][str(sb.path("/run/switchboard-draining"))]
    assert sb.calls()[hooks[-1]]["args"] == [
        "autoscaling", "complete-lifecycle-action", "--region", "eu-west-1",
        "--auto-scaling-group-name", "sb-nodes", "--lifecycle-hook-name", "sb-drain",
        "--instance-id", INSTANCE_ID, "--lifecycle-action-result", "CONTINUE"]
    polls = [c for c in sb.calls("curl") if "target-lifecycle-state" in c["args"][-1]]
    assert len(polls) == 4
