#!/usr/bin/env python3
"""Proves static_checks.py can fail: each mutation below breaks one
requirement in a scratch copy of the configuration, and the checks must
then report exactly that failure. Also runs the checks on the unmodified
copy, which must pass.

Usage: static_checks_selftest.py [TERRAFORM_DIR]
"""

import contextlib
import io
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import static_checks  # noqa: E402

# (file, text to replace, replacement, name of the check that must fail)
MUTATIONS = [
    ("modules/alb/main.tf", 'type            = "lb_cookie"', 'type            = "app_cookie"',
     "target group stickiness type is lb_cookie"),
    ("variables.tf", "default     = 7200", "default     = 3600",
     "stickiness duration defaults to 7200 s"),
    ("modules/alb/variables.tf", 'default     = "/ready"', 'default     = "/health"',
     "health check path is the readiness endpoint /ready"),
    ("variables.tf", "default     = 30\n", "default     = 10\n",
     "deregistration delay >= drain timeout"),
    ("variables.tf", "default     = 300\n", "default     = 40\n",
     "ALB idle timeout is well above the ping interval (>= 2x)"),
    ("modules/alb/main.tf", "drop_invalid_header_fields = true", "drop_invalid_header_fields = false",
     "ALB drops invalid header fields"),
    ("modules/asg/main.tf", 'http_tokens                 = "required"', 'http_tokens                 = "optional"',
     "IMDSv2 required (http_tokens = required)"),
    ("modules/asg/main.tf", "encrypted             = true", "encrypted             = false",
     "EBS volume 0 is encrypted"),
    ("modules/asg/variables.tf", "Off by default: they sit in private subnets behind the load balancer and are reached through SSM.\"\n  type        = bool\n  default     = false",
     "Off by default: they sit in private subnets behind the load balancer and are reached through SSM.\"\n  type        = bool\n  default     = true",
     "no public IP by default"),
    ("modules/elasticache/main.tf", "transit_encryption_enabled = true", "transit_encryption_enabled = false",
     "Redis transit encryption enabled"),
    ("modules/elasticache/main.tf", "at_rest_encryption_enabled = true", "at_rest_encryption_enabled = false",
     "Redis at-rest encryption enabled"),
    ("modules/alb/main.tf", 'listener_ports = var.enable_https ? [80, 443] : [80]', 'listener_ports = var.enable_https ? [22, 80, 443] : [80]',
     "ALB listener ports are 80 and 443 only"),
    ("modules/elasticache/main.tf", "referenced_security_group_id = var.client_security_group_id",
     'cidr_ipv4                    = "0.0.0.0/0"',
     "elasticache.aws_vpc_security_group_ingress_rule.from_clients: CIDR ingress only on the ALB listener ports"),
    ("providers.tf", "tags = local.tags", "tags = {}",
     "provider aws sets default_tags from local.tags"),
    ("modules/asg/main.tf", 'health_check_type         = "ELB"', 'health_check_type         = "EC2"',
     "ASG uses ELB health checks"),
    ("modules/elasticache/main.tf", "#checkov:skip=CKV2_AWS_57:Rotating", "#checkov:skip=CKV2_AWS_57:x\n# Rotating",
     "modules/elasticache/main.tf: suppression CKV2_AWS_57 states its reason"),
    ("tests/alb.tftest.hcl", 'condition     = aws_lb_target_group.this.stickiness[0].type == "lb_cookie"',
     'condition     = aws_lb_target_group.nodes.stickiness[0].type == "lb_cookie"',
     "alb.tftest.hcl: run target_group_defaults: aws_lb_target_group.nodes exists in module alb"),
    ("tests/elasticache.tftest.hcl", "    snapshot_retention_days = 0\n", "    snapshot_retention = 0\n",
     "elasticache.tftest.hcl: run rejects_zero_snapshot_retention: sets only variables the module declares"),
]


def run_quiet(path):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        ok = static_checks.run(path)
    return ok, out.getvalue()


def main(src):
    src = Path(src)
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "tf"
        shutil.copytree(src, base, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*"))
        ok, out = run_quiet(base)
        if not ok:
            print(out)
            print("selftest: the unmodified configuration does not pass")
            return False
        for rel, old, new, expected in MUTATIONS:
            work = Path(tmp) / "mut"
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(base, work)
            f = work / rel
            text = f.read_text()
            if text.count(old) != 1:
                print(f"FAIL  mutation target not found exactly once in {rel}: {old!r}")
                bad += 1
                continue
            f.write_text(text.replace(old, new))
            ok, out = run_quiet(work)
            caught = f"FAIL  {expected}" in out
            print(f"{'ok   ' if caught and not ok else 'FAIL '} breaking {rel} is caught by: {expected}")
            if ok or not caught:
                bad += 1
    print(f"\nselftest: {len(MUTATIONS) - bad} passed, {bad} failed")
    return bad == 0


if __name__ == "__main__":
    here = Path(__file__).resolve().parent.parent
    sys.exit(0 if main(sys.argv[1] if len(sys.argv) > 1 else here) else 1)
