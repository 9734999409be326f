#!/usr/bin/env python3
"""Project rules on the Terraform code that neither `terraform validate`,
`terraform test` with mocked providers nor checkov enforce:

- security group (rule) descriptions use only the characters AWS accepts
  (a plan against mocks succeeds; the real apply fails);
- no ingress rule admits a CIDR block except the load balancer's listener
  rule: everything else is reached by security group;
- every checkov suppression says why;
- every variable has a description and a type, every validation and
  output a message or description (tflint checks this in CI, not offline);
- every module carries the root's .tflint.hcl (`tflint --recursive` reads it
  per module);
- no provider but hashicorp/aws is required (offline machines mirror only
  that one).

`--selftest` breaks each rule in a scratch copy and expects exactly that
rule to fail, and the unmodified copy to pass.

Usage: policy_checks.py [--selftest] [TERRAFORM_DIR]
"""

import contextlib
import io
import re
import shutil
import sys
import tempfile
from pathlib import Path

import hcl2
from hcl2.utils import SerializationOptions

OPTS = SerializationOptions(strip_string_quotes=True)
# What AWS accepts in security group and rule descriptions.
SG_CHARS = re.compile(r"^[a-zA-Z0-9. _\-:/()#,@\[\]+=&;{}!$*]*$")
CIDR_KEYS = ("cidr_ipv4", "cidr_ipv6", "cidr_blocks", "ipv6_cidr_blocks")
LISTENER_RULE = ("alb", "aws_vpc_security_group_ingress_rule", "listener")


def modules(root):
    out = {"root": root}
    for d in sorted((root / "modules").iterdir()):
        if d.is_dir():
            out[d.name] = d
    return out


def load(d):
    merged = {}
    for tf in sorted(d.glob("*.tf")):
        with open(tf) as f:
            for key, blocks in hcl2.load(f, serialization_options=OPTS).items():
                merged.setdefault(key, []).extend(blocks)
    return merged


def items(blocks):
    for b in blocks or []:
        for k, v in b.items():
            if not k.startswith("__"):
                yield k, v


def resources(parsed):
    for rtype, by_name in items(parsed.get("resource")):
        for name, body in items([by_name]):
            yield rtype, name, body


def run(root):
    root = Path(root)
    failures = []

    def check(name, ok, detail=""):
        if not ok:
            failures.append(name)
            print("FAIL  %s%s" % (name, ": %s" % detail if detail else ""))

    tflint = (root / ".tflint.hcl").read_text()
    for mod, d in modules(root).items():
        parsed = load(d)
        for rtype, name, body in resources(parsed):
            where = "%s.%s.%s" % (mod, rtype, name)
            if rtype.startswith(("aws_security_group", "aws_vpc_security_group_")):
                desc = re.sub(r"\$\{[^}]*\}", "x", str(body.get("description", "")))
                check("%s: description uses only characters AWS accepts" % where, bool(SG_CHARS.match(desc)), desc)
            rules = []
            if rtype == "aws_vpc_security_group_ingress_rule" or (rtype == "aws_security_group_rule" and body.get("type") == "ingress"):
                rules.append(body)
            elif rtype == "aws_security_group":
                rules.extend(body.get("ingress", []))
            for r in rules:
                if any(k in r for k in CIDR_KEYS):
                    check("%s: CIDR ingress only on the load balancer's listener ports" % where,
                          (mod, rtype, name) == LISTENER_RULE)
        for name, decl in items(parsed.get("variable")):
            check("%s: variable %s has a description and a type" % (mod, name),
                  bool(decl.get("description")) and "type" in decl)
            for v in decl.get("validation", []):
                check("%s: a validation of %s has an error message" % (mod, name), len(str(v.get("error_message", ""))) > 20)
        for name, out in items(parsed.get("output")):
            check("%s: output %s has a description" % (mod, name), bool(out.get("description")))
        for block in parsed.get("terraform", []):
            for req in block.get("required_providers", []):
                for provider, spec in items([req]):
                    check("%s: requires no provider but hashicorp/aws (%s)" % (mod, provider),
                          provider == "aws" and spec.get("source") == "hashicorp/aws")
        if mod != "root":
            f = d / ".tflint.hcl"
            check("module %s has the root's .tflint.hcl" % mod, f.exists() and f.read_text() == tflint)

    for tf in sorted(root.rglob("*.tf")):
        if ".terraform" in tf.parts:
            continue
        for line in tf.read_text().splitlines():
            m = re.search(r"checkov:skip=([A-Z0-9_]+)(?::(.*))?", line)
            if m:
                check("%s: suppression %s states its reason" % (tf.relative_to(root), m.group(1)),
                      len((m.group(2) or "").strip()) >= 30, line.strip())

    print("policy checks: %d failed" % len(failures))
    return failures


# (file, text to replace, replacement, start of the failure it must cause)
MUTATIONS = [
    ("modules/alb/main.tf", 'description       = "Clients to listener port ${each.value.port}"',
     'description       = "Clients\' listener port ${each.value.port}"',
     "alb.aws_vpc_security_group_ingress_rule.listener: description uses only"),
    ("modules/elasticache/main.tf", "  referenced_security_group_id = var.client_security_group_id\n",
     '  cidr_ipv4                    = "10.0.0.0/8"\n',
     "elasticache.aws_vpc_security_group_ingress_rule.from_clients: CIDR ingress"),
    ("modules/elasticache/main.tf", "#checkov:skip=CKV2_AWS_57:Secrets Manager rotation", "#checkov:skip=CKV2_AWS_57:x\n# Secrets Manager rotation",
     "modules/elasticache/main.tf: suppression CKV2_AWS_57 states its reason"),
    ("modules/monitoring/variables.tf", 'description = "Name of the nodes\' Auto Scaling group', 'default = "x"\n  x = "',
     "monitoring: variable asg_name has a description and a type"),
    ("modules/network/.tflint.hcl", "preset  = \"recommended\"", "preset  = \"all\"",
     "module network has the root's .tflint.hcl"),
    ("versions.tf", "  required_providers {\n", "  required_providers {\n    random = {\n      source = \"hashicorp/random\"\n    }\n",
     "root: requires no provider but hashicorp/aws (random)"),
]


def selftest(root):
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "tf"
        shutil.copytree(root, copy, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*"))
        with contextlib.redirect_stdout(io.StringIO()):
            clean = run(copy)
        print("%s  the unmodified configuration passes" % ("ok  " if not clean else "FAIL"))
        ok &= not clean
        for path, old, new, expected in MUTATIONS:
            f = copy / path
            text = f.read_text()
            if old not in text:
                print("FAIL  mutation target gone from %s: %r" % (path, old))
                ok = False
                continue
            f.write_text(text.replace(old, new, 1))
            with contextlib.redirect_stdout(io.StringIO()):
                failed = run(copy)
            f.write_text(text)
            caught = len(failed) == 1 and failed[0].startswith(expected)
            print("%s  caught: %s%s" % ("ok  " if caught else "FAIL", expected, "" if caught else " (got %s)" % failed))
            ok &= caught
    return ok


if __name__ == "__main__":
    args = sys.argv[1:]
    test = "--selftest" in args
    args = [a for a in args if a != "--selftest"]
    where = Path(args[0]) if args else Path(__file__).resolve().parent.parent
    if test:
        sys.exit(0 if selftest(where) else 1)
    sys.exit(1 if run(where) else 0)
