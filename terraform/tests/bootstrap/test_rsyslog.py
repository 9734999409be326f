"""The rsyslog rule the user data installs, run by a real rsyslogd (Debian's
rsyslog package) with a private log socket: the server's JSON lines must
reach the file the CloudWatch agent ships exactly as the server wrote them,
or CloudWatch Logs Insights cannot parse them; other programs' lines must
not end up there."""

import json
import shutil
import subprocess
import time

import pytest

RSYSLOG_CONF = "/etc/rsyslog.d/30-switchboard.conf"
SERVER_LOG = "/var/log/switchboard/server.log"
LINE = {"timestamp": "2026-12-06T17:00:00.000000Z", "level": "INFO", "fields": {"message": "peer joined", "room": "demo"},
        "target": "switchboard::session"}


def wait_for(predicate, what, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


@pytest.fixture
def rsyslogd(node, tmp_path):
    daemon = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
    if not shutil.which("logger") or not shutil.os.path.exists(daemon):
        pytest.skip("rsyslogd is not installed (Debian package rsyslog)")
    work = tmp_path / "rsyslog"
    work.mkdir()
    sock = work / "log.sock"
    conf = work / "rsyslog.conf"
    conf.write_text(
        'global(workDirectory="%s")\n' % work
        + 'module(load="imuxsock" SysSock.Use="off")\n'
        + 'input(type="imuxsock" Socket="%s")\n' % sock
        + 'include(file="%s")\n' % node.path(RSYSLOG_CONF)
        + '*.* action(type="omfile" file="%s")\n' % (work / "other.log"))
    check = subprocess.run([daemon, "-N1", "-f", str(conf)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    proc = subprocess.Popen([daemon, "-n", "-f", str(conf), "-i", str(work / "pid")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(sock.exists, "rsyslogd's socket")
        yield sock, work / "other.log"
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def send(sock, tag, message):
    subprocess.run(["logger", "-u", str(sock), "-t", tag, message], check=True, timeout=30)


def test_server_lines_reach_the_file_as_json(node, rsyslogd):
    sock, other = rsyslogd
    log = node.path(SERVER_LOG)
    send(sock, "switchboard", json.dumps(LINE))
    send(sock, "switchboard-bootstrap", "installing packages")
    send(sock, "switchboard", "thread 'main' panicked at src/main.rs:1:1: {oops}")
    wait_for(lambda: log.exists() and len(log.read_text().splitlines()) >= 2, "two lines in " + SERVER_LOG)
    wait_for(lambda: other.exists() and "installing packages" in other.read_text(), "the other program's line")
    first, second = log.read_text().splitlines()
    assert json.loads(first) == LINE
    # Not JSON: kept whole rather than cut at its first brace.
    assert second == "thread 'main' panicked at src/main.rs:1:1: {oops}"
    assert "installing packages" not in log.read_text()
    assert "peer joined" not in other.read_text(), "server lines stop at their own file"
