#!/usr/bin/env python3
"""Stand-in for an external command at the process boundary of the node
scripts (aws, curl, systemctl, dnf, docker, logger, sleep, the CloudWatch
agent's ctl). Installed in the sandbox as a symlink named after the command.

Every call appends one JSON line to $SB_SANDBOX/calls.jsonl: the command, its
arguments, the contents of files it was handed (docker --env-file, aws
file://), and which of the watched paths existed at that moment (so a test
can tell what was in place when, say, `systemctl enable` ran). What the call
prints and returns comes from $SB_SANDBOX/behaviour.json, written by the test:

  {"rules": [{"cmd": "aws", "match": ["get-secret-value", "redis"],
              "stdout": "...", "rc": 0, "times": 1}, ...],
   "watch": ["/abs/path", ...],
   "after": {"sleep": [N, "/abs/path/to/touch"]},
   "installs": {"amazon-cloudwatch-agent": [["/abs/path", "recorder"|"dir"]]}}

The first rule whose cmd equals the command and whose match strings all
occur in the joined arguments decides (a rule with "times" is used that
many times, then skipped). curl's -o FILE gets the rule's "body" (or the
bytes of "body_file"). Without a rule a call succeeds silently, except curl,
which fails like a request that found nothing (exit 22).
"""

import json
import os
import sys

SB = os.environ["SB_SANDBOX"]
RECORDER = os.path.realpath(__file__)


def load(name, default):
    try:
        with open(os.path.join(SB, name)) as f:
            return json.load(f)
    except FileNotFoundError:
        return default


def save(name, value):
    tmp = os.path.join(SB, name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(value, f)
    os.replace(tmp, os.path.join(SB, name))


def handed_files(args):
    out = {}
    for i, a in enumerate(args):
        path = None
        if a.startswith("file://"):
            path = a[len("file://"):]
        elif i > 0 and args[i - 1] == "--env-file":
            path = a
        if path:
            try:
                with open(path) as f:
                    out[path] = f.read()
            except OSError as e:
                out[path] = "<unreadable: %s>" % e
    return out


def main():
    cmd = os.path.basename(sys.argv[0])
    args = sys.argv[1:]
    behaviour = load("behaviour.json", {})

    if cmd == "logger" and not [a for a in args if not a.startswith("-")][1:]:
        # `exec > >(logger -t TAG)`: everything the script prints, read until
        # the script ends, concurrently with its other calls (so it keeps out
        # of the shared counters).
        # The markers let the test wait for this reader, which bash does not.
        marker = os.path.join(SB, "logger.%d" % os.getpid())
        open(marker + ".started", "w").close()
        with open(os.path.join(SB, "script-output.log"), "ab") as f:
            for line in sys.stdin.buffer:
                f.write(line)
        os.rename(marker + ".started", marker + ".done")
        return 0

    counts = load("counts.json", {})
    counts[cmd] = counts.get(cmd, 0) + 1
    record = {
        "cmd": cmd,
        "args": args,
        "n": counts[cmd],
        "files": handed_files(args),
        "exists": {p: os.path.exists(p) for p in behaviour.get("watch", [])},
    }
    with open(os.path.join(SB, "calls.jsonl"), "a") as f:
        f.write(json.dumps(record) + "\n")

    # Packages "installed" by dnf put files where the real ones would.
    if cmd == "dnf" and "install" in args:
        for pkg, paths in behaviour.get("installs", {}).items():
            if pkg in args:
                for path, kind in paths:
                    if kind == "dir":
                        os.makedirs(path, exist_ok=True)
                    else:
                        os.makedirs(os.path.dirname(path), exist_ok=True)
                        if not os.path.lexists(path):
                            os.symlink(RECORDER, path)

    after = behaviour.get("after", {}).get(cmd)
    if after and counts[cmd] >= after[0]:
        open(after[1], "a").close()

    joined = " ".join(args)
    used = load("used.json", {})
    for rule in behaviour.get("rules", []):
        if rule.get("cmd") != cmd or not all(m in joined for m in rule.get("match", [])):
            continue
        key = str(rule["id"])
        if "times" in rule and used.get(key, 0) >= rule["times"]:
            continue
        used[key] = used.get(key, 0) + 1
        save("used.json", used)
        save("counts.json", counts)
        body = rule.get("body")
        if "body_file" in rule:
            with open(rule["body_file"], "rb") as f:
                body = f.read()
        if cmd == "curl" and body is not None and "-o" in args:
            out = args[args.index("-o") + 1]
            with open(out, "wb") as f:
                f.write(body if isinstance(body, bytes) else body.encode())
        elif body is not None:
            sys.stdout.write(body if isinstance(body, str) else body.decode())
        sys.stdout.write(rule.get("stdout", ""))
        sys.stderr.write(rule.get("stderr", ""))
        return rule.get("rc", 0)

    save("counts.json", counts)
    if cmd == "curl":
        sys.stderr.write("curl: (22) The requested URL returned error: 404\n")
        return 22
    return 0


if __name__ == "__main__":
    sys.exit(main())
