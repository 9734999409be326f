#!/usr/bin/env python3
"""Static assertions on the Terraform configuration, without providers.

Parses every .tf file with python-hcl2, follows simple references
(var.X through module calls to the root variable defaults, local.X) and
asserts the settings the deployment depends on: sticky sessions, the
readiness health check, drain-friendly load balancer timeouts, IMDSv2,
encryption, security group exposure, tagging and the scaling setup.

The mock-provider tests in this folder (`terraform test`) check the same
things against a planned configuration; they need the AWS provider and run
in CI. This script needs only Python and runs anywhere.

Usage: static_checks.py [TERRAFORM_DIR]   (default: the parent of this file)
Exit status 0 when every assertion holds, 1 otherwise.
"""

import re
import sys
from pathlib import Path

import hcl2
from hcl2.utils import SerializationOptions

OPTS = SerializationOptions(strip_string_quotes=True)
WORLD = {"0.0.0.0/0", "::/0"}
LISTENER_PORTS = {80, 443}


class Unresolved:
    """A value the resolver cannot compute statically (an expression)."""

    def __init__(self, expr):
        self.expr = expr

    def __repr__(self):
        return f"<unresolved {self.expr!r}>"


def load_dir(path):
    """Merge the top-level blocks of every .tf file of one module."""
    merged = {}
    for tf in sorted(Path(path).glob("*.tf")):
        with open(tf) as f:
            parsed = hcl2.load(f, serialization_options=OPTS)
        for key, blocks in parsed.items():
            merged.setdefault(key, []).extend(blocks)
    return merged


def named(blocks):
    """[{name: body}, ...] -> {name: body}."""
    out = {}
    for b in blocks or []:
        for k, v in b.items():
            if not k.startswith("__"):
                out[k] = v
    return out


def resources(mod, kind="resource"):
    """{(type, name): body} for resources (or data sources) of one module."""
    out = {}
    for b in mod.get(kind, []):
        for rtype, by_name in b.items():
            if rtype.startswith("__"):
                continue
            for rname, body in by_name.items():
                if not rname.startswith("__"):
                    out[(rtype, rname)] = body
    return out


def comments(body):
    return [c["value"] for c in body.get("__comments__", [])] if isinstance(body, dict) else []


class Config:
    def __init__(self, root):
        self.root = Path(root)
        self.mods = {"root": load_dir(self.root)}
        self.calls = named(self.mods["root"].get("module"))
        self.dirs = {"root": self.root}
        for name, call in self.calls.items():
            d = (self.root / call["source"]).resolve()
            self.mods[name] = load_dir(d)
            self.dirs[name] = d

    def variables(self, mod):
        return named(self.mods[mod].get("variable"))

    def locals(self, mod):
        out = {}
        for b in self.mods[mod].get("locals", []):
            out.update({k: v for k, v in b.items() if not k.startswith("__")})
        return out

    def resources(self, mod, kind="resource"):
        return resources(self.mods[mod], kind)

    def resolve(self, mod, value, depth=0):
        """Follow var./local. references to a literal; Unresolved otherwise."""
        if depth > 20:
            return Unresolved(value)
        if isinstance(value, list):
            return [self.resolve(mod, v, depth + 1) for v in value]
        if not isinstance(value, str):
            return value
        m = re.fullmatch(r"\$\{var\.(\w+)\}", value)
        if m:
            var = m.group(1)
            if mod != "root" and var in self.calls[mod]:
                return self.resolve("root", self.calls[mod][var], depth + 1)
            decl = self.variables(mod).get(var)
            if decl is None:
                raise AssertionError(f"{mod}: reference to undeclared variable var.{var}")
            if "default" not in decl:
                return Unresolved(value)
            return self.resolve(mod, decl["default"], depth + 1)
        m = re.fullmatch(r"\$\{local\.(\w+)\}", value)
        if m:
            return self.resolve(mod, self.locals(mod)[m.group(1)], depth + 1)
        if "${" in value:
            return Unresolved(value)
        return value

    def default(self, var):
        return self.resolve("root", "${var.%s}" % var)


class Checker:
    def __init__(self):
        self.failures = []
        self.passed = 0

    def check(self, name, cond, detail=""):
        if cond:
            self.passed += 1
            print(f"ok    {name}")
        else:
            self.failures.append(name)
            print(f"FAIL  {name}" + (f": {detail}" if detail else ""))


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def block(body, key):
    """First nested block `key` of a body ({} when absent)."""
    v = body.get(key)
    if isinstance(v, list) and v and isinstance(v[0], dict):
        return v[0]
    return {}


def run(root):
    cfg = Config(root)
    c = Checker()

    # --- module wiring ------------------------------------------------------
    for mod in ("network", "alb", "asg", "elasticache"):
        c.check(f"root calls module {mod}", mod in cfg.calls)
    c.check("network module is optional (created only without vpc_id)",
            cfg.calls.get("network", {}).get("count") == "${local.create_network ? 1 : 0}"
            and cfg.locals("root").get("create_network") == "${var.vpc_id == null}")

    # --- load balancer ------------------------------------------------------
    alb = cfg.resources("alb")
    tg = alb.get(("aws_lb_target_group", "this"), {})
    lb = alb.get(("aws_lb", "this"), {})
    st = block(tg, "stickiness")
    c.check("target group stickiness type is lb_cookie", st.get("type") == "lb_cookie", st.get("type"))
    c.check("target group stickiness is enabled", cfg.resolve("alb", st.get("enabled")) is True)
    dur = cfg.resolve("alb", st.get("cookie_duration"))
    c.check("stickiness duration defaults to 7200 s", num(dur) == 7200, dur)

    hc = block(tg, "health_check")
    path = cfg.resolve("alb", hc.get("path"))
    c.check("health check path is the readiness endpoint /ready", path == "/ready", path)
    c.check("health check expects 200 (so /ready's 503 takes a node out)", str(hc.get("matcher")) == "200", hc.get("matcher"))
    c.check("health check is enabled", cfg.resolve("alb", hc.get("enabled")) is True)

    drain = num(cfg.default("drain_timeout"))
    dereg = num(cfg.resolve("alb", tg.get("deregistration_delay")))
    c.check("drain timeout default is 15 s (the server's default)", drain == 15, drain)
    c.check("deregistration delay >= drain timeout", dereg is not None and drain is not None and dereg >= drain, f"{dereg} < {drain}")
    c.check("alb and asg get the same drain_timeout", cfg.calls["alb"].get("drain_timeout") == cfg.calls["asg"].get("drain_timeout") == "${var.drain_timeout}")
    dereg_val = cfg.variables("root")["deregistration_delay"].get("validation", [])
    c.check("deregistration_delay is validated against drain_timeout",
            any("var.drain_timeout" in v.get("condition", "") for v in dereg_val))

    ping = num(cfg.default("ping_interval"))
    idle = num(cfg.resolve("alb", lb.get("idle_timeout")))
    c.check("ping interval default is 25 s (the server's default)", ping == 25, ping)
    c.check("ALB idle timeout is well above the ping interval (>= 2x)", idle is not None and ping is not None and idle >= 2 * ping, f"{idle} vs {ping}")
    c.check("alb and asg get the same ping_interval", cfg.calls["alb"].get("ping_interval") == cfg.calls["asg"].get("ping_interval") == "${var.ping_interval}")
    c.check("ALB drops invalid header fields", cfg.resolve("alb", lb.get("drop_invalid_header_fields")) is True)
    c.check("ALB deletion protection is a variable defaulting to true",
            lb.get("enable_deletion_protection") == "${var.deletion_protection}" and cfg.default("deletion_protection") is True)
    c.check("ALB access logs are optional", "dynamic" in lb and "access_logs" in str(lb["dynamic"]))
    c.check("ALB has its own security group", lb.get("security_groups") == ["${aws_security_group.this.id}"])

    https = alb.get(("aws_lb_listener", "https"), {})
    redirect = alb.get(("aws_lb_listener", "http_redirect"), {})
    c.check("HTTPS listener on 443 with the certificate variable",
            https.get("protocol") == "HTTPS" and https.get("port") == 443 and https.get("certificate_arn") == "${var.certificate_arn}")
    red = block(block(redirect, "default_action"), "redirect")
    c.check("HTTP listener redirects to HTTPS", red.get("protocol") == "HTTPS" and str(red.get("status_code")) == "HTTP_301")
    c.check("HTTP-only needs an explicit variable (allow_http_only, default false)",
            cfg.default("allow_http_only") is False and cfg.calls["alb"].get("enable_https") == "${local.https}")
    c.check("certificate_arn is required unless allow_http_only",
            any("allow_http_only" in v.get("condition", "") for v in cfg.variables("root")["certificate_arn"].get("validation", [])))

    # --- instances --------------------------------------------------------------
    asg_r = cfg.resources("asg")
    lt = asg_r.get(("aws_launch_template", "this"), {})
    md = block(lt, "metadata_options")
    c.check("IMDSv2 required (http_tokens = required)", md.get("http_tokens") == "required", md.get("http_tokens"))
    c.check("IMDS hop limit 1", md.get("http_put_response_hop_limit") == 1)
    ni = block(lt, "network_interfaces")
    pub = cfg.resolve("asg", ni.get("associate_public_ip_address"))
    c.check("no public IP by default", pub is False, pub)
    bdm = lt.get("block_device_mappings", [])
    c.check("launch template has a root volume mapping", len(bdm) >= 1)
    for i, m in enumerate(bdm):
        ebs = block(m, "ebs")
        c.check(f"EBS volume {i} is encrypted", cfg.resolve("asg", ebs.get("encrypted")) is True)
    c.check("no SSH key pair on the instances (SSM instead)", "key_name" not in lt)
    c.check("instance profile attached", "iam_instance_profile" in lt)
    amis = cfg.resources("asg", "data")
    ami = amis.get(("aws_ami", "al2023"), {})
    c.check("AMI is looked up (most recent Amazon Linux 2023 from amazon)",
            ami.get("most_recent") is True and ami.get("owners") == ["amazon"] and "al2023" in str(ami.get("filter")))
    c.check("launch template uses the looked-up AMI", lt.get("image_id") == "${data.aws_ami.al2023.id}")

    group = asg_r.get(("aws_autoscaling_group", "this"), {})
    sizes = {k: num(cfg.resolve("asg", group.get(k))) for k in ("min_size", "max_size", "desired_capacity")}
    c.check("ASG min/max/desired default to 1/5/2", sizes == {"min_size": 1, "max_size": 5, "desired_capacity": 2}, sizes)
    c.check("ASG uses ELB health checks", group.get("health_check_type") == "ELB")
    c.check("ASG follows the latest launch template version",
            block(group, "launch_template").get("version") == "${aws_launch_template.this.latest_version}")
    refresh = block(group, "instance_refresh")
    c.check("ASG has a rolling instance refresh", refresh.get("strategy") == "Rolling")
    c.check("ASG registers with the target group", group.get("target_group_arns") == ["${var.target_group_arn}"])
    tags = group.get("dynamic", [])
    c.check("ASG propagates tags to instances",
            any("tag" in d and d["tag"]["content"][0].get("propagate_at_launch") is True for d in tags))
    specs = {s.get("resource_type") for s in lt.get("tag_specifications", [])}
    c.check("launch template tags instances and volumes", {"instance", "volume"} <= specs, specs)

    hook = asg_r.get(("aws_autoscaling_lifecycle_hook", "drain"), {})
    c.check("terminate lifecycle hook exists", hook.get("lifecycle_transition") == "autoscaling:EC2_INSTANCE_TERMINATING")

    policies = [b for (t, _), b in asg_r.items() if t == "aws_autoscaling_policy"]
    metrics = {block(block(p, "target_tracking_configuration"), "predefined_metric_specification").get("predefined_metric_type")
               for p in policies if p.get("policy_type") == "TargetTrackingScaling"}
    c.check("target tracking on CPU and ALB request count", {"ASGAverageCPUUtilization", "ALBRequestCountPerTarget"} <= metrics, metrics)

    tpl = (cfg.dirs["asg"] / "templates" / "user-data.sh.tftpl").read_text()
    c.check("user data builds REDIS_URL with TLS and the auth token", "REDIS_URL=rediss://:%s@" in tpl)
    c.check("user data reads the token from Secrets Manager", "secretsmanager get-secret-value" in tpl)
    c.check("user data installs a systemd service logging to journald",
            "/etc/systemd/system/switchboard.service" in tpl and "StandardOutput=journal" in tpl and "--log-driver journald" in tpl)
    c.check("user data completes the drain lifecycle action after stopping the server",
            tpl.find("systemctl stop switchboard.service") < tpl.find("complete-lifecycle-action") and "complete-lifecycle-action" in tpl)
    # Every variable the template uses is passed by templatefile(), and back.
    call = str(cfg.locals("asg").get("user_data"))
    passed = set(re.findall(r"(?<![.\w])(\w+)\s*=(?!=)", call.split("templatefile(", 1)[-1]))
    used = set(re.findall(r"\$\{\s*([a-z_0-9]+)", tpl))
    used |= set(re.findall(r"%\{\s*(?:if|for \w+(?:, \w+)? in)\s+([a-z_0-9]+)", tpl))
    used -= {"name", "arn"}  # loop variables
    c.check("user data template variables match the templatefile() call", used == passed, f"used-only {used - passed}, passed-only {passed - used}")
    env_expr = str(cfg.locals("asg").get("environment"))
    for key in ("SERVER_REGION", "DRAIN_TIMEOUT_SECS", "PING_INTERVAL_SECS", "LOG_FORMAT"):
        c.check(f"server environment sets {key}", key in env_expr)
    c.check("no secret in the rendered environment (REDIS_URL comes from the instance)", "REDIS_URL" not in env_expr)

    node_policy = cfg.resources("asg", "data").get(("aws_iam_policy_document", "node"), {})
    stmts = node_policy.get("statement", [])
    c.check("instance policy reads only its Redis secret",
            any(s.get("actions") == ["secretsmanager:GetSecretValue"] and s.get("resources") == ["${var.redis_secret_arn}"] for s in stmts))
    c.check("instance policy has no wildcard resource", all("*" not in s.get("resources", []) for s in stmts))
    c.check("instance policy has no wildcard action", all(not any(a.endswith("*") for a in s.get("actions", [])) for s in stmts))
    ssm = asg_r.get(("aws_iam_role_policy_attachment", "ssm"), {})
    c.check("SSM managed policy attached for Session Manager", "AmazonSSMManagedInstanceCore" in str(ssm.get("policy_arn")))

    # --- Redis ----------------------------------------------------------------------
    ec = cfg.resources("elasticache")
    rg = ec.get(("aws_elasticache_replication_group", "this"), {})
    c.check("Redis transit encryption enabled", rg.get("transit_encryption_enabled") is True)
    c.check("Redis transit encryption required", rg.get("transit_encryption_mode") == "required")
    c.check("Redis at-rest encryption enabled", rg.get("at_rest_encryption_enabled") is True)
    c.check("Redis auth token generated by Terraform", rg.get("auth_token") == "${random_password.auth_token.result}")
    sv = ec.get(("aws_secretsmanager_secret_version", "auth_token"), {})
    c.check("Redis auth token stored in Secrets Manager", sv.get("secret_string") == "${random_password.auth_token.result}")
    ec_locals = cfg.locals("elasticache")
    c.check("failover and Multi-AZ exactly when more than one node",
            rg.get("automatic_failover_enabled") == rg.get("multi_az_enabled") == "${local.multi_node}"
            and ec_locals.get("multi_node") == "${var.num_nodes > 1}")
    snap = num(cfg.resolve("elasticache", rg.get("snapshot_retention_limit")))
    c.check("Redis snapshots retained (>= 1 day by default)", snap is not None and snap >= 1, snap)
    c.check("Redis uses its subnet group and parameter group",
            "aws_elasticache_subnet_group" in str(rg.get("subnet_group_name")) and "aws_elasticache_parameter_group" in str(rg.get("parameter_group_name")))
    pg = ec.get(("aws_elasticache_parameter_group", "this"), {})
    params = {p.get("name"): str(p.get("value")) for p in pg.get("parameter", [])}
    c.check("parameter group sets timeout 0 and tcp-keepalive 60", params.get("timeout") == "0" and params.get("tcp-keepalive") == "60", params)

    # --- security groups: nothing open to the world except the listener ports -----
    listener_ports_expr = str(cfg.locals("alb").get("listener_ports"))
    lp = {int(x) for x in re.findall(r"\b\d+\b", listener_ports_expr)}
    c.check("ALB listener ports are 80 and 443 only", lp <= LISTENER_PORTS and lp, lp)
    for (t, n), body in alb.items():
        if t == "aws_lb_listener":
            c.check(f"listener {n} is on port 80 or 443", body.get("port") in LISTENER_PORTS, body.get("port"))
    world_default = set(cfg.default("allowed_ingress_cidrs") or [])
    for mod in cfg.mods:
        for (t, n), body in cfg.resources(mod).items():
            rules = []
            if t == "aws_vpc_security_group_ingress_rule":
                rules.append(body)
            elif t == "aws_security_group_rule" and body.get("type") == "ingress":
                rules.append(body)
            elif t == "aws_security_group":
                rules.extend(body.get("ingress", []))
                c.check(f"{mod}.{t}.{n} has no inline ingress blocks", not body.get("ingress"))
            for r in rules:
                sources = []
                for key in ("cidr_ipv4", "cidr_ipv6", "cidr_blocks", "ipv6_cidr_blocks"):
                    if key in r:
                        v = cfg.resolve(mod, r[key])
                        sources.extend(v if isinstance(v, list) else [v])
                if not sources:
                    c.check(f"{mod}.{t}.{n} admits a security group, not a CIDR",
                            "referenced_security_group_id" in r or "source_security_group_id" in r)
                    continue
                # A CIDR rule: allowed only for the ALB listener rule.
                is_listener = mod == "alb" and (t, n) == ("aws_vpc_security_group_ingress_rule", "listener")
                ports_ok = r.get("from_port") == r.get("to_port") == "${each.value.port}" and "listener_ports" in str(alb_locals_ingress(cfg))
                world = any(isinstance(s, Unresolved) or s in WORLD for s in sources) or bool(world_default & WORLD)
                c.check(f"{mod}.{t}.{n}: CIDR ingress only on the ALB listener ports",
                        is_listener and ports_ok, f"sources={sources} world={world}")

    # AWS accepts only these characters in security group (rule) descriptions;
    # anything else fails at apply time, long after plan.
    sg_chars = re.compile(r"^[a-zA-Z0-9. _\-:/()#,@\[\]+=&;{}!$*]*$")
    for mod in cfg.mods:
        for (t, n), body in cfg.resources(mod).items():
            if t.startswith("aws_security_group") or t.startswith("aws_vpc_security_group_"):
                desc = re.sub(r"\$\{[^}]*\}", "x", str(body.get("description", "")))
                c.check(f"{mod}.{t}.{n}: description uses only characters AWS accepts", bool(sg_chars.match(desc)), desc)

    # --- tags everywhere --------------------------------------------------------------
    providers = named(cfg.mods["root"].get("provider"))
    dt = block(providers.get("aws", {}), "default_tags")
    c.check("provider aws sets default_tags from local.tags", dt.get("tags") == "${local.tags}")
    c.check("local.tags includes var.tags", "var.tags" in str(cfg.locals("root").get("tags")))
    for mod in cfg.mods:
        if mod != "root":
            c.check(f"module {mod} declares no provider block (it inherits default_tags)", not cfg.mods[mod].get("provider"))
        for (t, n), body in cfg.resources(mod).items():
            c.check(f"{mod}.{t}.{n} uses the default provider", "provider" not in body)

    # --- hygiene: variables, outputs, suppressions -----------------------------------------
    for mod in cfg.mods:
        for name, decl in cfg.variables(mod).items():
            c.check(f"{mod}: variable {name} has description and type", bool(decl.get("description")) and "type" in decl)
            for v in decl.get("validation", []):
                c.check(f"{mod}: validation of {name} has an error message", len(str(v.get("error_message", ""))) > 20)
        for name, out in named(cfg.mods[mod].get("output")).items():
            c.check(f"{mod}: output {name} has a description", bool(out.get("description")))
    for tf in sorted(cfg.root.rglob("*.tf")):
        for line in tf.read_text().splitlines():
            m = re.search(r"checkov:skip=([A-Z0-9_]+)(?::(.*))?", line)
            if m:
                c.check(f"{tf.relative_to(cfg.root)}: suppression {m.group(1)} states its reason",
                        len((m.group(2) or "").strip()) >= 30, line.strip())

    # `tflint --recursive` reads .tflint.hcl from each module directory.
    tflint = (cfg.root / ".tflint.hcl").read_text()
    for mod, d in cfg.dirs.items():
        if mod != "root":
            f = d / ".tflint.hcl"
            c.check(f"module {mod} has the same .tflint.hcl as the root", f.exists() and f.read_text() == tflint)

    check_test_files(cfg, c)

    root_outputs = named(cfg.mods["root"].get("output"))
    for o in ("alb_dns_name", "websocket_url", "redis_endpoint", "asg_name"):
        c.check(f"root output {o}", o in root_outputs)

    print(f"\nstatic checks: {c.passed} passed, {len(c.failures)} failed")
    return not c.failures


def check_test_files(cfg, c):
    """The terraform test suites run only where providers can be downloaded.
    Here, check what can be checked without them: every run targets an
    existing module, sets only variables that module declares, gives every
    required variable a value, and refers only to resources, data sources,
    variables and outputs that exist where it runs."""
    by_dir = {str(d): mod for mod, d in cfg.dirs.items()}
    files = sorted((cfg.root / "tests").glob("*.tftest.hcl"))
    c.check("there are terraform test files", bool(files))
    for tf in files:
        with open(tf) as f:
            t = hcl2.load(f, serialization_options=OPTS)
        rel = tf.name
        c.check(f"{rel}: mocks the aws provider", "aws" in named(t.get("mock_provider")))
        file_vars = {}
        for b in t.get("variables", []):
            file_vars.update({k: v for k, v in b.items() if not k.startswith("__")})
        runs = named(t.get("run"))
        c.check(f"{rel}: has run blocks", bool(runs))
        for rname, run in runs.items():
            where = f"{rel}: run {rname}"
            src = block(run, "module").get("source")
            mod = by_dir.get(str((cfg.root / src).resolve())) if src else "root"
            c.check(f"{where}: module source exists", mod is not None, src)
            if mod is None:
                continue
            declared = cfg.variables(mod)
            run_vars = {}
            for b in run.get("variables", []):
                run_vars.update({k: v for k, v in b.items() if not k.startswith("__")})
            given = set(file_vars) | set(run_vars)
            unknown = given - set(declared)
            c.check(f"{where}: sets only variables the module declares", not unknown, unknown)
            missing = {n for n, d in declared.items() if "default" not in d} - given
            c.check(f"{where}: sets every required variable", not missing, missing)
            c.check(f"{where}: has assertions or expected failures", bool(run.get("assert")) or bool(run.get("expect_failures")))
            c.check(f"{where}: command is plan or apply", run.get("command", "apply") in ("plan", "apply"))
            for ef in run.get("expect_failures", []):
                m = re.fullmatch(r"\$\{var\.(\w+)\}", str(ef))
                c.check(f"{where}: expected failure {ef} is a declared variable with a validation",
                        bool(m) and bool(declared.get(m.group(1), {}).get("validation")))
            res = cfg.resources(mod)
            data = cfg.resources(mod, "data")
            outs = named(cfg.mods[mod].get("output"))
            for a in run.get("assert", []):
                cond = str(a.get("condition", ""))
                c.check(f"{where}: assertion has an error message", len(str(a.get("error_message", ""))) > 10)
                for kind, rtype, name in re.findall(r"(?<![\w.])(data\.)?((?:aws|random)_[a-z0-9_]+)\.(\w+)", cond):
                    known = (rtype, name) in (data if kind else res)
                    c.check(f"{where}: {kind}{rtype}.{name} exists in module {mod}", known)
                for name in re.findall(r"(?<![\w.])var\.(\w+)", cond):
                    c.check(f"{where}: var.{name} is declared in module {mod}", name in declared)
                for name in re.findall(r"(?<![\w.])output\.(\w+)", cond):
                    c.check(f"{where}: output.{name} exists in module {mod}", name in outs)


def alb_locals_ingress(cfg):
    return cfg.locals("alb").get("ingress", "")


if __name__ == "__main__":
    here = Path(__file__).resolve().parent.parent
    sys.exit(0 if run(sys.argv[1] if len(sys.argv) > 1 else here) else 1)
