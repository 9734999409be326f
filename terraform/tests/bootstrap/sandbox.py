"""A throwaway root for running the node user data and its units.

The rendered script writes to absolute paths (/etc, /usr/local, /run, /var,
/opt/aws). The sandbox moves every such path under its own directory by
rewriting the script text, puts recorders (recorder.py) on PATH in place of
the commands that would reach AWS, the network, the package manager or
systemd, and keeps the real coreutils, tar, sha256sum, awk and bash.

`start_unit` then plays systemd's part for one service, with the two rules
the units depend on: environment files are read before every Exec command
(ExecStartPre included), a missing one failing the command unless its path
has a "-" prefix (systemd.exec(5), EnvironmentFile=); and Exec prefixes
("-" ignores a failure, "+" runs privileged, which changes nothing here).
"""

import json
import os
import re
import shlex
import subprocess
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RECORDED = ["aws", "curl", "systemctl", "dnf", "docker", "logger", "sleep"]
# Absolute paths the node scripts write or read; anything else (/usr/bin,
# /tmp, http://169.254.169.254/latest/...) stays as it is.
ROOTS = r"/(?:etc|usr/local|run|var/lib|var/log|opt/aws)"
PATH_RE = re.compile(r"(?<![\w.:/])(" + ROOTS + r")(?=/)")


class UnitFailed(Exception):
    """What systemd would log when a start of the unit fails."""


class Sandbox:
    def __init__(self, tmp_path):
        self.root = Path(tmp_path) / "root"
        self.dir = Path(tmp_path)
        self.bin = self.dir / "bin"
        self.bin.mkdir(parents=True)
        for cmd in RECORDED:
            (self.bin / cmd).symlink_to(HERE / "recorder.py")
        # A recorder that cannot run would let the real command through (curl
        # to the metadata address, say): refuse to start instead.
        assert os.access(self.bin / "curl", os.X_OK), "recorder.py must be executable"
        # What exists on a fresh Amazon Linux 2023 instance.
        for d in ("etc/systemd/system", "usr/local/bin", "run", "var/log", "var/lib", "tmp"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        self.behaviour = {"rules": [], "watch": [], "after": {}, "installs": {
            "amazon-cloudwatch-agent": [
                [str(self.root / "opt/aws/amazon-cloudwatch-agent/etc"), "dir"],
                [str(self.root / "opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl"), "recorder"],
            ],
            "rsyslog": [[str(self.root / "etc/rsyslog.d"), "dir"]],
            "logrotate": [[str(self.root / "etc/logrotate.d"), "dir"]],
        }}

    # --- paths -----------------------------------------------------------------

    def path(self, absolute):
        """The sandbox location of an absolute path on the instance."""
        return self.root / absolute.lstrip("/")

    def rewrite(self, text):
        return PATH_RE.sub(lambda m: str(self.root) + m.group(1), text)

    def unrewrite(self, text):
        return text.replace(str(self.root), "")

    # --- recorders ---------------------------------------------------------------

    def rule(self, cmd, *match, **kw):
        """Adds an answer; first=True puts it before the others."""
        first = kw.pop("first", False)
        rule = {"cmd": cmd, "match": list(match), "id": self._next_id(), **kw}
        if first:
            self.behaviour["rules"].insert(0, rule)
        else:
            self.behaviour["rules"].append(rule)

    def _next_id(self):
        self._ids = getattr(self, "_ids", 0) + 1
        return self._ids

    def forget_calls(self):
        """Starts a new call log (the boot's is kept as calls-boot.jsonl)."""
        log = self.dir / "calls.jsonl"
        if log.exists():
            log.rename(self.dir / "calls-boot.jsonl")
        for name in ("counts.json",):
            (self.dir / name).unlink(missing_ok=True)

    def watch(self, *absolute):
        self.behaviour["watch"] += [str(self.path(p)) for p in absolute]

    def after(self, cmd, calls, touch_absolute):
        self.behaviour["after"][cmd] = [calls, str(self.path(touch_absolute))]

    def calls(self, cmd=None):
        log = self.dir / "calls.jsonl"
        if not log.exists():
            return []
        out = [json.loads(line) for line in log.read_text().splitlines()]
        return [c for c in out if cmd is None or c["cmd"] == cmd]

    def output(self):
        """What the user data printed (it sends its output to logger)."""
        log = self.dir / "script-output.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def index(self, cmd, *match):
        """Position in the call log of the first call of cmd with all match
        strings in its arguments (a ValueError when there is none)."""
        for i, c in enumerate(self.calls()):
            if c["cmd"] == cmd and all(m in " ".join(c["args"]) for m in match):
                return i
        raise ValueError("no call %s %s in %s" % (cmd, match, [(c["cmd"], c["args"]) for c in self.calls()]))

    def env(self, **extra):
        (self.dir / "behaviour.json").write_text(json.dumps(self.behaviour))
        env = {
            "PATH": "%s:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin" % self.bin,
            "SB_SANDBOX": str(self.dir),
            "TMPDIR": str(self.root / "tmp"),
            "LANG": "C.UTF-8",
        }
        env.update(extra)
        return env

    # --- running ---------------------------------------------------------------

    def run_script(self, text, name="script", timeout=60):
        """Writes text (rewritten into the sandbox) and runs it with bash."""
        script = self.dir / name
        script.write_text(self.rewrite(text))
        result = subprocess.run(["bash", str(script)], env=self.env(), capture_output=True,
                                text=True, timeout=timeout)
        # `exec > >(logger ...)`: bash does not wait for the reader of its
        # output; this does, boundedly.
        deadline = time.monotonic() + 10
        while list(self.dir.glob("logger.*.started")) and time.monotonic() < deadline:
            time.sleep(0.02)
        return result

    def run_file(self, absolute, timeout=60):
        """Runs a file the user data installed, as its shebang says."""
        return subprocess.run([str(self.path(absolute))], env=self.env(), capture_output=True,
                              text=True, timeout=timeout)

    def start_unit(self, name, timeout=60):
        """Plays systemd starting unit `name` from the sandbox's
        /etc/systemd/system: ExecStartPre commands in order, then ExecStart,
        each with the unit's environment files loaded just before it. Returns
        the CompletedProcess of ExecStart; raises UnitFailed like systemd
        would fail the start."""
        service = parse_unit(self.path("/etc/systemd/system/" + name).read_text())["Service"]
        commands = [("ExecStartPre", c) for c in service.get("ExecStartPre", [])]
        commands += [("ExecStart", c) for c in service.get("ExecStart", [])]
        result = None
        for kind, line in commands:
            env = self.env()
            for spec in service.get("EnvironmentFile", []):
                optional = spec.startswith("-")
                path = Path(spec.lstrip("-"))
                if not path.exists():
                    if optional:
                        continue
                    raise UnitFailed("%s: Failed to load environment files: %s: No such file or directory (before %s=%s)"
                                     % (name, self.unrewrite(str(path)), kind, self.unrewrite(line)))
                env.update(parse_environment_file(path.read_text()))
            prefixes = re.match(r"^[-+!@:]*", line).group(0)
            argv = shlex.split(line[len(prefixes):])
            argv[0] = self.executable(argv[0])
            result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
            if result.returncode != 0 and "-" not in prefixes:
                raise UnitFailed("%s: %s=%s failed with status %d: %s"
                                 % (name, kind, self.unrewrite(line), result.returncode, result.stderr))
        return result

    def executable(self, path):
        """/usr/bin/docker and friends are recorders here."""
        base = os.path.basename(path)
        if path.startswith(("/usr/bin/", "/bin/")) and (self.bin / base).exists():
            return str(self.bin / base)
        return path


def parse_unit(text):
    """{section: {key: [values]}}, continuation lines joined."""
    sections, current = {}, None
    text = re.sub(r"\\\n", " ", text)
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def parse_environment_file(text):
    """KEY=VALUE lines the way systemd reads an EnvironmentFile: # and ;
    comments, unquoted values (backslash escapes the next character, trailing
    blanks dropped), single quotes (literal) and double quotes (backslash
    escapes only " \\ ` $ and a line break)."""
    env = {}
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        key, sep, raw = stripped.partition("=")
        if not sep:
            continue
        raw = raw.lstrip()
        if raw[:1] == "'" and raw.endswith("'") and len(raw) >= 2:
            value = raw[1:-1]
        elif raw[:1] == '"' and len(raw) >= 2:
            value, i = [], 1
            while i < len(raw) and raw[i] != '"':
                if raw[i] == "\\" and i + 1 < len(raw):
                    nxt = raw[i + 1]
                    value.append(nxt if nxt in '"\\`$' else "\\" + nxt)
                    i += 2
                    continue
                value.append(raw[i])
                i += 1
            value = "".join(value)
        else:
            value, i = [], 0
            while i < len(raw):
                if raw[i] == "\\" and i + 1 < len(raw):
                    value.append(raw[i + 1])
                    i += 2
                    continue
                value.append(raw[i])
                i += 1
            value = "".join(value).rstrip()
        env[key.strip()] = value
    return env
