#!/usr/bin/env bash
# Kubernetes: the Helm charts (helm/switchboard, helm/switchboard-operator), the
# kustomize base and overlays (k8s/base, k8s/overlays/*) and the operator's
# manifests (k8s/operator), all checked offline:
#   - helm lint --strict of both charts, with the defaults and every ci/ value set;
#   - every rendered chart, kustomize build and plain manifest validated against
#     the Kubernetes OpenAPI schemas (kubernetes-validate --strict, Kubernetes
#     1.33, and 1.30, the oldest version the charts support);
#   - custom resources (the example SignalingCluster) validated with jsonschema
#     against the CRD's openAPIV3Schema (CEL rules are not evaluated offline);
#   - a policy check of our own on the server and Redis workloads (non-root,
#     read-only root filesystem, probes, resources, grace period longer than
#     preStop + drain, PDB, HPA, Redis AOF and password, only the server reaches
#     Redis, no real password shipped in the plain manifests);
#   - the bundled Redis's command line, redis.conf and probes, run for real
#     under a local redis-server (chart and k8s/base);
#   - every values file under helm/*/ci/invalid/ must be REJECTED, with the
#     message its "# expect:" line gives;
#   - NOTES.txt (client-side dry run) tells how to connect;
#   - the CRD copy in the operator chart equals k8s/operator/crd.yaml, and the
#     chart's RBAC and settings keep up with the operator's own manifests;
#   - the charts' alerts: `promtool check rules` and `promtool test rules`
#     (helm/*/monitoring-tests/), each alert's runbook a section of
#     docs/runbooks.md; the Grafana dashboards: JSON, every metric registered
#     by the server or the operator, every query parsed by promtool;
#   - shellcheck of the end-to-end scripts (operator/e2e/), which run on kind
#     in GitHub Actions only;
#   - checkov (kubernetes framework) over every rendering, with no failed check:
#     each exception is a checkov.io/skipN annotation with its reason.
# Nothing here needs a cluster. Takes about a minute once the tools are there.
set -uo pipefail
source "$(dirname "$0")/../lib.sh"
cd "$ROOT" || exit 1

# Kubernetes versions the manifests are validated against.
KUBE_VERSIONS="1.33.0 1.30.0"
KUBE_VERSION_RENDER="1.33.0"

need_pip kubernetes-validate==1.37.0 jsonschema==4.26.0 pyyaml==6.0.3
need_helm_kubectl
# A local redis-server runs the bundled Redis's command, config and probes;
# promtool (Debian's prometheus) checks and unit-tests the alerts.
need_apt redis-server redis-tools prometheus shellcheck

# checkov pins many dependencies exactly: it gets a venv of its own (shared
# with the terraform checks, same version).
CHECKOV_VENV="$TOOLS/checkov-venv"
CHECKOV_VERSION=3.3.30
need_checkov() {
  if [ -x "$CHECKOV_VENV/bin/checkov" ] \
    && [ "$("$CHECKOV_VENV/bin/pip" show checkov 2>/dev/null | sed -n 's/^Version: //p')" = "$CHECKOV_VERSION" ]; then
    return 0
  fi
  log "installing checkov $CHECKOV_VERSION into .tools/checkov-venv"
  rm -rf "$CHECKOV_VENV"
  python3 -m venv "$CHECKOV_VENV"
  "$CHECKOV_VENV/bin/pip" install -q --upgrade pip >/dev/null
  "$CHECKOV_VENV/bin/pip" install -q "checkov==$CHECKOV_VERSION"
}
need_checkov

OUT="$TOOLS/k8s-rendered"
rm -rf "$OUT"
mkdir -p "$OUT"

SERVER_CHART=helm/switchboard
OPERATOR_CHART=helm/switchboard-operator
OPERATOR_CRD=k8s/operator/crd.yaml
CHART_CRD="$OPERATOR_CHART/crds/crd.yaml"

# k8scheck SUBCOMMAND ARGS... : checks on rendered manifests that a schema cannot
# express (see the Python below). Prints what is wrong and fails, or prints OK.
k8scheck() {
  python3 - "$@" <<'PY'
import sys, re, glob
import yaml

def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]

def labels_match(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())

def pod_of(w):
    return w["spec"]["template"]

def quantity_ok(res, side, key):
    return key in ((res or {}).get(side) or {})

def policy(path, flags):
    docs = load(path)
    errs = []
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    configmaps = {d["metadata"]["name"]: d.get("data") or {} for d in by_kind.get("ConfigMap", [])}
    workloads = [d for k in ("Deployment", "StatefulSet", "DaemonSet") for d in by_kind.get(k, [])]
    if not workloads:
        errs.append("no workload at all in the rendered output")
    servers, redises = [], []
    for w in workloads:
        name = f'{w["kind"]}/{w["metadata"]["name"]}'
        tpl = pod_of(w)
        plabels = tpl["metadata"].get("labels", {})
        spec = tpl["spec"]
        comp = plabels.get("app.kubernetes.io/component")
        if comp == "server":
            servers.append(w)
        if comp == "redis":
            redises.append(w)
        psc = spec.get("securityContext") or {}
        if comp in ("server", "redis") and spec.get("automountServiceAccountToken") is not False:
            errs.append(f"{name}: automountServiceAccountToken must be false (it never calls the API)")
        for c in spec.get("initContainers", []) + spec["containers"]:
            cn = f'{name} container {c["name"]}'
            csc = c.get("securityContext") or {}
            if not (csc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
                errs.append(f"{cn}: runAsNonRoot is not set")
            if csc.get("readOnlyRootFilesystem") is not True:
                errs.append(f"{cn}: readOnlyRootFilesystem is not true")
            if csc.get("allowPrivilegeEscalation") is not False:
                errs.append(f"{cn}: allowPrivilegeEscalation is not false")
            if "ALL" not in ((csc.get("capabilities") or {}).get("drop") or []):
                errs.append(f"{cn}: capabilities are not dropped (drop: [ALL])")
            seccomp = (csc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
            if seccomp not in ("RuntimeDefault", "Localhost"):
                errs.append(f"{cn}: no RuntimeDefault seccomp profile")
            res = c.get("resources")
            for side, key in (("requests", "cpu"), ("requests", "memory"), ("limits", "memory")):
                if not quantity_ok(res, side, key):
                    errs.append(f"{cn}: resources.{side}.{key} missing")
            image = c.get("image", "")
            if image.endswith(":latest") or not re.search(r"(:[\w][\w.-]*|@sha256:[0-9a-f]{64})$", image):
                errs.append(f"{cn}: image {image!r} is not pinned to a tag or digest")
            if "livenessProbe" not in c or "readinessProbe" not in c:
                errs.append(f"{cn}: liveness and readiness probes are required")
    if not servers and "--no-server" not in flags:
        errs.append("no server Deployment (app.kubernetes.io/component=server)")
    for w in servers:
        name = f'{w["kind"]}/{w["metadata"]["name"]}'
        spec = pod_of(w)["spec"]
        plabels = pod_of(w)["metadata"]["labels"]
        c = next((c for c in spec["containers"] if c["name"] == "switchboard"), None)
        if c is None:
            errs.append(f"{name}: no container named switchboard")
            continue
        live = ((c.get("livenessProbe") or {}).get("httpGet") or {}).get("path")
        ready = ((c.get("readinessProbe") or {}).get("httpGet") or {}).get("path")
        if live != "/health":
            errs.append(f"{name}: liveness probe must GET /health, not {live}")
        if ready != "/ready":
            errs.append(f"{name}: readiness probe must GET /ready, not {ready}")
        env = {}
        for ef in c.get("envFrom", []):
            ref = (ef.get("configMapRef") or {}).get("name")
            if ref:
                if ref not in configmaps:
                    errs.append(f"{name}: envFrom ConfigMap {ref} is not in the output")
                env.update(configmaps.get(ref, {}))
        for e in c.get("env", []):
            if "value" in e:
                env[e["name"]] = e["value"]
        drain = int(env.get("DRAIN_TIMEOUT_SECS", 15))
        pre = (((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}).get("seconds", 0)
        grace = spec.get("terminationGracePeriodSeconds", 30)
        if not grace > pre + drain:
            errs.append(f"{name}: terminationGracePeriodSeconds {grace} must exceed preStop {pre} + DRAIN_TIMEOUT_SECS {drain}")
        if pre <= 0:
            errs.append(f"{name}: no preStop sleep: endpoints may still route new clients to a draining pod")
        aff = (spec.get("affinity") or {}).get("podAntiAffinity")
        if not (spec.get("topologySpreadConstraints") or aff):
            errs.append(f"{name}: neither topology spread nor pod anti-affinity")
        hpas = [h for h in by_kind.get("HorizontalPodAutoscaler", [])
                if h["spec"]["scaleTargetRef"]["kind"] == "Deployment"
                and h["spec"]["scaleTargetRef"]["name"] == w["metadata"]["name"]]
        if hpas and "replicas" in w["spec"]:
            errs.append(f"{name}: sets replicas although an HPA scales it: every apply would reset the count")
        if not hpas and "--no-hpa" not in flags:
            errs.append(f"{name}: no HorizontalPodAutoscaler targets it")
        env_names = {e["name"] for e in c.get("env", [])}
        if "SERVER_ID" not in env_names:
            errs.append(f"{name}: SERVER_ID is not set (should be the pod name)")
        if not any(labels_match(p["spec"]["selector"].get("matchLabels"), plabels) for p in by_kind.get("PodDisruptionBudget", [])):
            errs.append(f"{name}: no PodDisruptionBudget selects its pods")
        if not (env_names & {"REDIS_URL", "REDIS_HOST"} or "REDIS_HOST" in env):
            errs.append(f"{name}: no Redis configured (REDIS_URL or REDIS_HOST)")
    for w in redises:
        name = f'{w["kind"]}/{w["metadata"]["name"]}'
        spec = pod_of(w)["spec"]
        plabels = pod_of(w)["metadata"]["labels"]
        c = spec["containers"][0]
        cmd = " ".join(c.get("command", []) + c.get("args", []))
        if "--requirepass" not in cmd:
            errs.append(f"{name}: Redis runs without a password (--requirepass)")
        pw = next((e for e in c.get("env", []) if e["name"] == "REDIS_PASSWORD"), None)
        if not pw or "secretKeyRef" not in (pw.get("valueFrom") or {}):
            errs.append(f"{name}: REDIS_PASSWORD does not come from a Secret")
        confs = [configmaps.get((v.get("configMap") or {}).get("name"), {}) for v in spec.get("volumes", [])]
        if not any(re.search(r"(?m)^\s*appendonly\s+yes\s*$", t) for cm in confs for t in cm.values()):
            errs.append(f"{name}: the mounted Redis config does not turn AOF on (appendonly yes)")
        if "--ephemeral-redis" not in flags:
            vcts = [v["metadata"]["name"] for v in w["spec"].get("volumeClaimTemplates", [])]
            mounts = [m["name"] for m in c.get("volumeMounts", []) if m["mountPath"] == "/data"]
            if not mounts or mounts[0] not in vcts:
                errs.append(f"{name}: /data is not on a PersistentVolumeClaim")
        if "--no-netpol" not in flags:
            pols = [p for p in by_kind.get("NetworkPolicy", [])
                    if labels_match(p["spec"]["podSelector"].get("matchLabels"), plabels)
                    and "Ingress" in p["spec"].get("policyTypes", [])]
            if not pols:
                errs.append(f"{name}: no NetworkPolicy restricts who reaches Redis")
            server_labels = [pod_of(s)["metadata"]["labels"] for s in servers]
            for p in pols:
                for rule in p["spec"].get("ingress", []):
                    peers = rule.get("from")
                    if not peers:
                        errs.append(f'NetworkPolicy/{p["metadata"]["name"]}: a rule lets anyone reach Redis')
                        continue
                    for peer in peers:
                        sel = (peer.get("podSelector") or {}).get("matchLabels")
                        if set(peer) != {"podSelector"} or not sel \
                                or not any(labels_match(sel, sl) for sl in server_labels) \
                                or labels_match(sel, plabels):
                            errs.append(f'NetworkPolicy/{p["metadata"]["name"]}: peer {peer} is not exactly the server pods')
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
                      "PersistentVolume", "StorageClass", "PriorityClass", "IngressClass"}
    for d in docs:
        if d["kind"] not in cluster_scoped and not (d.get("metadata") or {}).get("namespace"):
            errs.append(f'{d["kind"]}/{d["metadata"]["name"]}: no namespace: it would land in whatever namespace kubectl defaults to')
    if "--no-secrets" in flags:
        for s in by_kind.get("Secret", []):
            errs.append(f'Secret/{s["metadata"]["name"]}: the plain manifests must not ship a Secret (passwords are created by the user)')
    return errs

def kinds(path, specs):
    present = {}
    for d in load(path):
        present[d["kind"]] = present.get(d["kind"], 0) + 1
    errs = []
    for s in specs:
        want, kind = s[0], s[1:]
        if want == "+" and kind not in present:
            errs.append(f"expected a {kind}, found none")
        if want == "-" and kind in present:
            errs.append(f"expected no {kind}, found {present[kind]}")
    return errs

def grep(path, specs):
    text = open(path).read()
    errs = []
    for s in specs:
        want, pat = s[0], s[1:]
        found = re.search(pat, text, re.M) is not None
        if want == "+" and not found:
            errs.append(f"expected /{pat}/ in the output")
        if want == "-" and found:
            errs.append(f"did not expect /{pat}/ in the output")
    return errs

def strict(schema):
    """OpenAPI v3 as the API server reads it, in JSON Schema terms: fields a
    structural schema does not declare are rejected (kubectl's strict field
    validation), and `nullable: true` admits null."""
    if isinstance(schema, dict):
        schema = {k: strict(v) for k, v in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema \
                and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
        if schema.get("nullable") and isinstance(schema.get("type"), str):
            schema["type"] = [schema["type"], "null"]
    elif isinstance(schema, list):
        schema = [strict(v) for v in schema]
    return schema

def root_schema(schema):
    """apiVersion, kind and metadata are implied at the root of every CRD schema."""
    schema = strict(schema)
    props = schema.setdefault("properties", {})
    props.setdefault("apiVersion", {"type": "string"})
    props.setdefault("kind", {"type": "string"})
    props.setdefault("metadata", {"type": "object"})
    return schema

def crs(crd_path, files):
    import jsonschema
    schemas = {}
    for crd in load(crd_path):
        if crd.get("kind") != "CustomResourceDefinition":
            continue
        g, k = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for v in crd["spec"]["versions"]:
            schemas[(f"{g}/{v['name']}", k)] = root_schema(v["schema"]["openAPIV3Schema"])
    if not schemas:
        return [f"{crd_path}: no CustomResourceDefinition in it"]
    groups = {gv.split("/")[0] for gv, _ in schemas}
    errs, seen = [], 0
    for f in files:
        for d in load(f):
            gv = d.get("apiVersion", "")
            if gv.split("/")[0] not in groups:
                continue
            seen += 1
            schema = schemas.get((gv, d.get("kind")))
            name = f'{f}: {d.get("kind")}/{(d.get("metadata") or {}).get("name")}'
            if schema is None:
                errs.append(f"{name}: no CRD version serves {gv} {d.get('kind')}")
                continue
            for e in jsonschema.Draft7Validator(schema).iter_errors(d):
                errs.append(f"{name}: at {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}")
            if not errs:
                print(f"OK {name} matches the CRD schema")
    if seen == 0:
        errs.append("no custom resource found to validate (expected the example SignalingCluster)")
    return errs

def triples(docs, kinds):
    out = set()
    for d in docs:
        if d["kind"] not in kinds:
            continue
        for r in d.get("rules", []):
            for g in r.get("apiGroups", [""]):
                for res in r.get("resources", []):
                    for v in r.get("verbs", []):
                        out.add((g, res, v))
    return out

def rbac(chart_out, kind, files):
    """The chart's rules of `kind` (Role or ClusterRole) equal those of the
    operator's own manifests, and the chart passes every env var and argument
    those pass."""
    chart = load(chart_out)
    theirs = [d for f in files for d in load(f)]
    errs = []
    want, have = triples(theirs, (kind,)), triples(chart, (kind,))
    if not want:
        errs.append(f"the operator's manifests have no {kind}: cannot compare")
    for t in sorted(want - have):
        errs.append(f"the chart's {kind} lacks {t} that k8s/operator grants")
    for t in sorted(have - want):
        errs.append(f"the chart's {kind} grants {t} that k8s/operator does not (least privilege: keep them equal)")
    def container(docs):
        ds = [d for d in docs if d["kind"] == "Deployment"]
        return ds[0]["spec"]["template"]["spec"]["containers"][0] if ds else None
    c_theirs, c_chart = container(theirs), container(chart)
    if not c_theirs or not c_chart:
        errs.append("a Deployment is missing on one side")
    else:
        names = lambda c: {e["name"] for e in c.get("env", [])}
        flag = lambda a: a.split("=")[0]
        for n in sorted(names(c_theirs) - names(c_chart)):
            errs.append(f"k8s/operator sets env {n}; the chart does not")
        for a in sorted({flag(a) for a in c_theirs.get("args", [])} - {flag(a) for a in c_chart.get("args", [])}):
            errs.append(f"k8s/operator passes argument {a}; the chart does not")
    return errs

def quantity_bytes(q):
    m = re.fullmatch(r"([0-9]+)(Ki|Mi|Gi|Ti|k|M|G|T)?", str(q))
    if not m:
        raise ValueError(f"cannot read quantity {q!r}")
    mult = {None: 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
            "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}[m.group(2)]
    return int(m.group(1)) * mult

def downward_env(c):
    """The values the downward API would give the container's resourceFieldRef
    variables (limits.memory in bytes, divisor 1)."""
    env = {}
    for e in c.get("env", []):
        ref = (e.get("valueFrom") or {}).get("resourceFieldRef")
        if ref and ref.get("resource") == "limits.memory":
            env[e["name"]] = str(quantity_bytes(c["resources"]["limits"]["memory"]))
    return env

def redis_run(path):
    """Runs the Redis StatefulSet's own command, with its own redis.conf, under a
    local redis-server, then its probes: the config must load, AUTH must be
    required, AOF must be on and write its files, and the probes must pass."""
    import os, shutil, socket, subprocess, tempfile, time
    docs = load(path)
    cms = {d["metadata"]["name"]: d.get("data") or {} for d in docs if d["kind"] == "ConfigMap"}
    sts = [d for d in docs if d["kind"] == "StatefulSet"
           and pod_of(d)["metadata"]["labels"].get("app.kubernetes.io/component") == "redis"]
    if not sts:
        return ["no Redis StatefulSet in the output"]
    spec = pod_of(sts[0])["spec"]
    c = spec["containers"][0]
    errs = []
    tmp = tempfile.mkdtemp()
    try:
        confdir = os.path.join(tmp, "etc-redis")
        datadir = os.path.join(tmp, "data")
        os.makedirs(confdir); os.makedirs(datadir)
        # "Mount" the volumes: the ConfigMap at confdir, the data volume at datadir.
        vols = {v["name"]: v for v in spec.get("volumes", [])}
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        data_mount = next((p for p, n in mounts.items() if n == "data"), "/data")
        for mpath, vname in mounts.items():
            cm = (vols.get(vname) or {}).get("configMap")
            if cm and mpath == "/etc/redis":
                for k, v in cms[cm["name"]].items():
                    v = re.sub(rf"(?m)^(\s*dir\s+){re.escape(data_mount)}\s*$", rf"\g<1>{datadir}", v)
                    open(os.path.join(confdir, k), "w").write(v)
        sock = socket.socket(); sock.bind(("127.0.0.1", 0)); port = sock.getsockname()[1]; sock.close()
        password = "probe-test-password"
        env = {"PATH": os.environ["PATH"], "REDIS_PASSWORD": password, "REDISCLI_AUTH": password}
        env.update(downward_env(c))
        argv = [a.replace("/etc/redis/", confdir + "/") for a in c["command"]]
        # sh -c 'exec redis-server ... ': run on a free port, data in the temp dir.
        argv[-1] += f" --port {port} --dir {datadir} --daemonize no"
        proc = subprocess.Popen(argv + c.get("args", []), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            cli = lambda *a, auth=password: subprocess.run(
                ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *a],
                env={"PATH": os.environ["PATH"], **({"REDISCLI_AUTH": auth} if auth else {})},
                capture_output=True, text=True, timeout=5)
            for _ in range(50):
                if proc.poll() is not None or cli("ping").stdout.strip() == "PONG":
                    break
                time.sleep(0.1)
            if proc.poll() is not None:
                return [f"redis-server exited: {proc.communicate()[0].decode()[-2000:]}"]
            if "NOAUTH" not in (cli("ping", auth=None).stdout + cli("ping", auth=None).stderr):
                errs.append("Redis answers without a password")
            if cli("config", "get", "appendonly").stdout.split() != ["appendonly", "yes"]:
                errs.append("appendonly is not yes in the running Redis")
            # maxmemory below the memory limit: a full Redis refuses writes
            # (noeviction) instead of being OOM-killed.
            limit = quantity_bytes(((c.get("resources") or {}).get("limits") or {}).get("memory", "0"))
            got = cli("config", "get", "maxmemory").stdout.split()
            maxmemory = int(got[1]) if len(got) == 2 and got[1].isdigit() else 0
            if not 0 < maxmemory < limit:
                errs.append(f"maxmemory is {maxmemory}, not set below the memory limit ({limit} bytes)")
            cli("set", "k8s-check", "1")
            if not any(n.startswith("appendonly") for n in os.listdir(datadir)):
                errs.append("no AOF file written in the data dir")
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                cmd = ((c.get(probe) or {}).get("exec") or {}).get("command")
                if not cmd:
                    errs.append(f"no exec {probe}")
                    continue
                cmd = [a.replace("-h 127.0.0.1", f"-h 127.0.0.1 -p {port}") for a in cmd]
                if subprocess.run(cmd, env=env, timeout=5, capture_output=True).returncode != 0:
                    errs.append(f"{probe} fails against a healthy Redis")
                bad = dict(env, REDISCLI_AUTH="wrong-password")
                if subprocess.run(cmd, env=bad, timeout=5, capture_output=True).returncode == 0:
                    errs.append(f"{probe} passes with a wrong password: it checks nothing")
            if not errs:
                print(f"OK redis-server ran {sts[0]['metadata']['name']}'s command and config; AUTH, AOF and probes work")
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return errs

def dashboards(files):
    """Grafana dashboards: valid JSON with a uid, panels with PromQL targets
    whose metrics exist (registered by the server or the operator, or named
    by kube-state-metrics/Prometheus). Writes every expression, with the
    dashboard variables filled in, as a recording rule to $PROMQL_OUT so that
    promtool can parse them."""
    import json, os
    registered = set()
    for src in glob.glob("server/src/**/*.rs", recursive=True) + glob.glob("operator/src/**/*.rs", recursive=True):
        text = open(src).read()
        prefix = "switchboard_operator_" if src.startswith("operator/") else "switchboard_"
        # `registry.register("name", …)` or a helper `register(&mut registry, "name", …)`.
        for name in re.findall(r'register\(\s*(?:&mut\s+\w+\s*,\s*)?"([a-z_]+)"', text):
            registered.add(prefix + name)
    external = {"kube_pod_status_ready", "up"}
    suffixes = ("_total", "_bucket", "_sum", "_count")
    errs, rules = [], []
    for f in files:
        try:
            d = json.load(open(f))
        except ValueError as e:
            errs.append(f"{f}: not JSON: {e}")
            continue
        if not d.get("uid") or not d.get("title"):
            errs.append(f"{f}: no uid or title")
        panels = d.get("panels") or []
        if not panels:
            errs.append(f"{f}: no panels")
        for p in panels:
            for t in p.get("targets", []):
                expr = t.get("expr", "")
                filled = expr.replace("$__rate_interval", "5m").replace("$namespace", "ns").replace("$pod", ".*").replace("$job", ".*")
                rules.append({"record": f"dashboard:query_{len(rules)}", "expr": filled})
                for m in set(re.findall(r"\b(switchboard_[a-z_]+|kube_[a-z_]+|up)\b(?=\{|\[|\)|$| )", expr)):
                    base = m
                    for suf in suffixes:
                        if m.endswith(suf) and m[: -len(suf)] in registered:
                            base = m[: -len(suf)]
                    if base not in registered and m not in external:
                        errs.append(f"{f}: panel {p.get('title')!r} uses {m}, which neither the server nor the operator registers")
    out = os.environ.get("PROMQL_OUT")
    if out:
        with open(out, "w") as fh:
            yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}, fh)
    if not errs:
        print(f"OK {len(rules)} dashboard queries name known metrics")
    return errs

cmd, args = sys.argv[1], sys.argv[2:]
if cmd == "policy":
    errs = policy(args[0], set(args[1:]))
elif cmd == "kinds":
    errs = kinds(args[0], args[1:])
elif cmd == "grep":
    errs = grep(args[0], args[1:])
elif cmd == "crs":
    errs = crs(args[0], args[1:])
elif cmd == "redis-run":
    errs = redis_run(args[0])
elif cmd == "rbac":
    errs = rbac(args[0], args[1], args[2:])
elif cmd == "dashboards":
    errs = dashboards(args)
else:
    errs = [f"unknown subcommand {cmd}"]
for e in errs:
    print("  -", e, file=sys.stderr)
if not errs:
    print(f"OK {cmd} {args[0]}")
sys.exit(1 if errs else 0)
PY
}

# validate FILE : Kubernetes OpenAPI schemas, strict (unknown fields rejected),
# for every version in KUBE_VERSIONS. Custom resources are only warned about
# here; they are checked against their CRD by `k8scheck crs`.
validate() {
  local file="$1" v rc=0
  if [ ! -s "$file" ]; then
    echo "  - $file is empty" >&2
    return 1
  fi
  for v in $KUBE_VERSIONS; do
    # Its "Couldn't find schema" lines name the custom resources (Prometheus
    # Operator kinds) this validator has no schema for: expected, not shown.
    local out status
    out="$(kubernetes-validate --strict --quiet -k "$v" "$file" 2>&1)"
    status=$?
    grep -v "Couldn't find schema for kind" <<<"$out" || true
    [ "$status" = 0 ] || rc=1
  done
  [ "$rc" = 0 ] && echo "OK $file valid for Kubernetes $KUBE_VERSIONS"
  return "$rc"
}

# ---------------------------------------------------------------- Helm charts

lint_chart() {
  local chart="$1" f rc=0 tgz
  helm lint --strict "$chart" || rc=1
  # The packaged chart (what users install) renders too, CRDs included.
  mkdir -p "$OUT/pkg"
  tgz="$(helm package "$chart" -d "$OUT/pkg" | sed -n 's/^Successfully packaged chart and saved it to: //p')"
  if [ -z "$tgz" ] || ! helm template sb "$tgz" --include-crds --kube-version "$KUBE_VERSION_RENDER" >"$OUT/pkg/rendered.txt"; then
    echo "  - the packaged $chart does not render" >&2; rc=1
  elif [ -d "$chart/crds" ] && ! grep -q '^kind: CustomResourceDefinition' "$OUT/pkg/rendered.txt"; then
    echo "  - the packaged $chart lost its CRD" >&2; rc=1
  fi
  for f in "$chart"/ci/*.yaml; do
    [ -e "$f" ] || continue
    helm lint --strict "$chart" -f "$f" >/dev/null || { echo "  - helm lint failed with $f" >&2; rc=1; }
  done
  return "$rc"
}

# render CHART NAME [VALUES] : helm template into $OUT/NAME.yaml
render() {
  local chart="$1" name="$2" values="${3:-}"
  helm template sb "$chart" --namespace switchboard --kube-version "$KUBE_VERSION_RENDER" \
    --include-crds ${values:+-f "$values"} >"$OUT/$name.yaml"
}

# expect_in FILE SPEC... : what a rendering must and must not hold. SPEC is
# +Kind / -Kind (a resource of that kind), grep:REGEX / -grep:REGEX (text).
expect_in() {
  local f="$1"; shift
  local kinds=() greps=() e rc=0
  for e in "$@"; do
    case "$e" in
      grep:*) greps+=("+${e#grep:}") ;;
      -grep:*) greps+=("-${e#-grep:}") ;;
      +*|-*) kinds+=("$e") ;;
      *) echo "  - bad expectation $e" >&2; return 1 ;;
    esac
  done
  [ ${#kinds[@]} -eq 0 ] || k8scheck kinds "$f" "${kinds[@]}" || rc=1
  [ ${#greps[@]} -eq 0 ] || k8scheck grep "$f" "${greps[@]}" || rc=1
  return "$rc"
}

# server_set NAME VALUES [policy flags] -- [expectations, see expect_in]
server_set() {
  local name="$1" values="$2"; shift 2
  local flags=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do flags+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  render "$SERVER_CHART" "switchboard-$name" "$values" || return 1
  local f="$OUT/switchboard-$name.yaml" rc=0
  validate "$f" || rc=1
  k8scheck policy "$f" "${flags[@]}" || rc=1
  [ $# -eq 0 ] || expect_in "$f" "$@" || rc=1
  return "$rc"
}

# reject_invalid CHART : every ci/invalid/*.yaml must make `helm template` (so
# `helm install`) fail, with an error matching the file's "# expect: REGEX" line.
# Schema violations must fail `helm lint` too; cross-field rules enforced with
# `fail` in the templates cannot (helm lint only logs `fail`).
reject_invalid() {
  local chart="$1" f expect out rc=0 n=0
  for f in "$chart"/ci/invalid/*.yaml; do
    [ -e "$f" ] || continue
    n=$((n + 1))
    expect="$(sed -n 's/^# expect: //p' "$f" | head -1)"
    if [ -z "$expect" ]; then
      echo "  - $f: no '# expect: REGEX' line" >&2; rc=1; continue
    fi
    if out="$(helm template sb "$chart" -f "$f" 2>&1)"; then
      echo "  - $f: helm template ACCEPTED these values" >&2; rc=1; continue
    fi
    if ! grep -Pzq -- "$expect" <<<"$out"; then
      echo "  - $f: rejected, but not with /$expect/:" >&2
      printf '%s\n' "$out" | sed 's/^/      /' >&2
      rc=1; continue
    fi
    if grep -q "values don't meet the specifications of the schema" <<<"$out" &&
      helm lint --strict "$chart" -f "$f" >/dev/null 2>&1; then
      echo "  - $f: helm lint ACCEPTED these values" >&2; rc=1; continue
    fi
    echo "OK $f rejected: $(printf '%s\n' "$out" | grep -m1 -E "^- at|execution error" | sed 's/^Error: //')"
  done
  if [ "$n" -eq 0 ]; then
    echo "  - $chart/ci/invalid holds no values file" >&2; rc=1
  fi
  return "$rc"
}

step "helm lint $SERVER_CHART (defaults and ci/*.yaml)" lint_chart "$SERVER_CHART"
step "helm lint $OPERATOR_CHART (defaults and ci/*.yaml)" lint_chart "$OPERATOR_CHART"

# The server chart: defaults (bundled Redis, HPA, PDB, NetworkPolicies) and
# each ci/ value set, with what each must and must not produce.
step "helm template switchboard: defaults" server_set defaults "" -- \
  +StatefulSet +Secret +HorizontalPodAutoscaler +PodDisruptionBudget +NetworkPolicy -Ingress \
  -PrometheusRule "grep:^\s+- name: REDIS_PASSWORD" "-grep:^\s+replicas: 3$" \
  "grep:INTERNAL_ADDR: \"0.0.0.0:9091\"" "grep:name: sb-switchboard-internal" \
  "grep:path: /ready\n\s+port: internal" "grep:- port: internal\n\s+protocol: TCP\n\s+from:\n\s+- podSelector: \{\}" \
  "grep:--maxmemory \"[$][(][(] REDIS_MEMORY_LIMIT / 100 [*] 75 [)][)]\"" "grep:helm.sh/resource-policy: keep" \
  "-grep:name: memory\n\s+target:" "grep:maxSurge: 1\n\s+maxUnavailable: 0"
step "helm template switchboard: ci/external-redis.yaml" server_set external-redis \
  "$SERVER_CHART/ci/external-redis.yaml" -- -StatefulSet +HorizontalPodAutoscaler \
  "grep:^\s+- name: REDIS_URL" "grep:REDIS_TLS_CA_FILE" "grep:JWT_PUBLIC_KEY_FILE" "-grep:REDIS_HOST" \
  "grep:- name: REDIS_PASSWORD\n\s+valueFrom:\n\s+secretKeyRef:\n\s+name: redis-password" "-grep:REDIS_CLUSTER"
step "helm template switchboard: ci/external-redis-existing-secret.yaml" server_set external-redis-existing-secret \
  "$SERVER_CHART/ci/external-redis-existing-secret.yaml" -- -StatefulSet -Secret -ServiceAccount \
  "grep:name: managed-redis" "grep:key: REDIS_URL" "grep:- name: REDIS_CLUSTER\n\s+value: \"true\"" \
  "-grep:- name: REDIS_PASSWORD"
step "helm template switchboard: ci/autoscaling-off.yaml" server_set autoscaling-off \
  "$SERVER_CHART/ci/autoscaling-off.yaml" --no-netpol --ephemeral-redis --no-hpa -- \
  -HorizontalPodAutoscaler -NetworkPolicy -Secret "grep:^\s+replicas: 4$" "grep:minAvailable: 3" \
  "grep:requiredDuringSchedulingIgnoredDuringExecution" "grep:maxSurge: 0\n\s+maxUnavailable: 1" \
  "-grep:INTERNAL_ADDR" "-grep:-internal" "grep:path: /ready\n\s+port: http"
step "helm template switchboard: ci/ingress-on.yaml" server_set ingress-on \
  "$SERVER_CHART/ci/ingress-on.yaml" -- +Ingress +ServiceMonitor +HorizontalPodAutoscaler +PrometheusRule \
  "grep:nginx.ingress.kubernetes.io/affinity: cookie" "grep:session-cookie-name: \"SWITCHBOARD_AFFINITY\"" \
  "grep:session-cookie-samesite: \"None\"" "grep:session-cookie-secure: \"true\"" \
  "grep:proxy-read-timeout: \"3600\"" "grep:@sha256:0{64}" "grep:kubernetes.io/metadata.name: ingress-nginx" \
  "grep:- path: /ws\n" "-grep:- path: /\n" "-grep:- path: /metrics" \
  "grep:switchboard.dev/endpoint: internal\n\s+namespaceSelector" "grep:- port: internal\n\s+path: /metrics" \
  "grep:grafana_dashboard: \"1\"" "grep:\"uid\": \"switchboard-server\"" \
  "grep:kubernetes.io/metadata.name: monitoring\n\s+ports:\n\s+- port: internal|port: internal\n\s+protocol: TCP\n\s+from:\n\s+- namespaceSelector:\n\s+matchLabels:\n\s+kubernetes.io/metadata.name: monitoring"
step "helm values schema rejects $SERVER_CHART/ci/invalid/*" reject_invalid "$SERVER_CHART"

# The operator chart: defaults and value sets, with its CRD.
operator_set() {
  local name="$1" values="$2"; shift 2
  render "$OPERATOR_CHART" "operator-$name" "$values" || return 1
  local f="$OUT/operator-$name.yaml" rc=0
  validate "$f" || rc=1
  k8scheck policy "$f" --no-server || rc=1
  [ $# -eq 0 ] || expect_in "$f" "$@" || rc=1
  return "$rc"
}
step "helm template switchboard-operator: defaults (namespace-scoped)" operator_set defaults "" \
  +CustomResourceDefinition "grep:name: LEADER_ELECTION\n\s+value: \"false\"" -PodDisruptionBudget \
  +Role -ClusterRole -ClusterRoleBinding "grep:name: WATCH_NAMESPACE\n\s+value: \"switchboard\"" \
  -PrometheusRule
step "helm template switchboard-operator: ci/ha.yaml (leader election)" operator_set ha \
  "$OPERATOR_CHART/ci/ha.yaml" "grep:name: LEADER_ELECTION\n\s+value: \"true\"" +PodDisruptionBudget +ServiceMonitor \
  "grep:coordination.k8s.io"
step "helm template switchboard-operator: ci/existing-service-account.yaml" operator_set existing-sa \
  "$OPERATOR_CHART/ci/existing-service-account.yaml" "grep:name: LEADER_ELECTION\n\s+value: \"true\"" \
  -ClusterRole -Role -ServiceAccount "grep:@sha256:1{64}"
step "helm template switchboard-operator: ci/single-namespace.yaml" operator_set single-namespace \
  "$OPERATOR_CHART/ci/single-namespace.yaml" -ClusterRole -ClusterRoleBinding +Role +RoleBinding \
  "grep:name: WATCH_NAMESPACE\n\s+value: \"signaling\"" "grep:^  namespace: signaling$"
step "helm template switchboard-operator: ci/cluster-wide.yaml" operator_set cluster-wide \
  "$OPERATOR_CHART/ci/cluster-wide.yaml" +ClusterRole +ClusterRoleBinding +PrometheusRule \
  "grep:name: WATCH_NAMESPACE\n\s+value: \"\"" "grep:grafana_dashboard: \"1\"" \
  "grep:\"uid\": \"switchboard-operator\""
step "helm values schema rejects $OPERATOR_CHART/ci/invalid/*" reject_invalid "$OPERATOR_CHART"

# notes CHART VALUES EXPECTATION... : NOTES.txt as `helm install` prints it
# (client-side dry run: no cluster needed), with expect_in's grep: specs.
notes() {
  local chart="$1" values="$2" name
  shift 2
  name="notes-$(basename "$chart")-$(basename "${values:-defaults}" .yaml)"
  helm install sb "$chart" --dry-run=client --namespace switchboard ${values:+-f "$values"} 2>&1 |
    sed -n '/^NOTES:/,$p' >"$OUT/$name.txt"
  [ -s "$OUT/$name.txt" ] || { echo "  - no NOTES printed" >&2; return 1; }
  expect_in "$OUT/$name.txt" "$@"
}
notes_all() {
  local rc=0
  notes "$SERVER_CHART" "" "grep:port-forward svc/sb-switchboard 8080:80" "grep:ws://127.0.0.1:8080/ws" \
    "grep:WARNING: client authentication is off" "grep:password was generated" || rc=1
  notes "$SERVER_CHART" "$SERVER_CHART/ci/ingress-on.yaml" "grep:wss://signaling.example.com/ws" "-grep:WARNING" || rc=1
  notes "$SERVER_CHART" "$SERVER_CHART/ci/external-redis.yaml" "grep:Redis: external" "-grep:WARNING" || rc=1
  notes "$OPERATOR_CHART" "$OPERATOR_CHART/ci/ha.yaml" "grep:leader election on" "grep:kind: SignalingCluster" || rc=1
  return "$rc"
}
step "NOTES.txt tells how to connect (server: defaults, ingress, external Redis; operator: HA)" notes_all

# ------------------------------------------------------ kustomize and plain YAML

kustomize_build() {
  local dir="$1" name="$2"; shift 2
  kubectl kustomize "$dir" >"$OUT/$name.yaml" || return 1
  local rc=0
  validate "$OUT/$name.yaml" || rc=1
  k8scheck policy "$OUT/$name.yaml" "$@" || rc=1
  return "$rc"
}
# The base and prod must not carry a password; dev carries its marked placeholder.
step "kubectl kustomize k8s/base" kustomize_build k8s/base kustomize-base --no-secrets
for overlay in k8s/overlays/*/; do
  overlay="${overlay%/}"
  flags=()
  [ "$(basename "$overlay")" = dev ] || flags+=(--no-secrets)
  step "kubectl kustomize $overlay" kustomize_build "$overlay" "kustomize-$(basename "$overlay")" "${flags[@]}"
done
dev_placeholder_only() {
  expect_in "$OUT/kustomize-dev.yaml" +Secret &&
    grep -q 'dev-only-placeholder' k8s/overlays/dev/kustomization.yaml &&
    ! grep -rqi -E '^\s*-\s*password=' k8s/base k8s/overlays/prod
}
step "kustomize: only the dev overlay generates a (placeholder) Redis password" dev_placeholder_only

# The Redis StatefulSets' own command line, redis.conf and probes, run for real.
redis_runs() {
  local rc=0
  k8scheck redis-run "$OUT/switchboard-defaults.yaml" || rc=1
  k8scheck redis-run "$OUT/kustomize-base.yaml" || rc=1
  return "$rc"
}
step "bundled Redis (chart and k8s/base) starts with its config: AUTH, AOF, probes" redis_runs

# ----------------------------------------------------------- operator manifests

# The operator's manifests, except its kustomization.yaml (not a resource).
operator_files() {
  local f
  for f in k8s/operator/*.yaml; do
    [ -e "$f" ] && [ "$(basename "$f")" != kustomization.yaml ] && echo "$f"
  done
}
operator_manifests() {
  local files=() rc=0 f
  mapfile -t files < <(operator_files)
  if [ ${#files[@]} -eq 0 ]; then
    echo "  - k8s/operator/*.yaml: none yet (the operator issue writes them)" >&2
    return 1
  fi
  for f in "${files[@]}"; do validate "$f" || rc=1; done
  k8scheck crs "$OPERATOR_CRD" "${files[@]}" || rc=1
  if [ -f k8s/operator/kustomization.yaml ]; then
    # Kept out of $OUT: the checkov scan below covers this area's files only.
    kubectl kustomize k8s/operator >"$TOOLS/k8s-operator-kustomize.yaml" &&
      validate "$TOOLS/k8s-operator-kustomize.yaml" || rc=1
  fi
  # The cluster-wide variant: a ClusterRole instead of the namespaced Role,
  # and WATCH_NAMESPACE empty.
  if kubectl kustomize k8s/operator-cluster-wide >"$TOOLS/k8s-operator-cluster-wide.yaml"; then
    validate "$TOOLS/k8s-operator-cluster-wide.yaml" || rc=1
    expect_in "$TOOLS/k8s-operator-cluster-wide.yaml" +ClusterRole +ClusterRoleBinding \
      "grep:name: WATCH_NAMESPACE\n\s+value: \"\"" "-grep:kind: Role\nmetadata:\n(\s+.*\n)*?\s+name: switchboard-operator\n\s+namespace: switchboard\n" || rc=1
  else
    rc=1
  fi
  return "$rc"
}
step "k8s/operator manifests valid (custom resources against the CRD)" operator_manifests

crd_copy() {
  if [ ! -f "$OPERATOR_CRD" ]; then
    echo "  - $OPERATOR_CRD does not exist (generated by the operator: make crd)" >&2
    return 1
  fi
  if ! cmp -s "$OPERATOR_CRD" "$CHART_CRD"; then
    echo "  - $CHART_CRD differs from $OPERATOR_CRD; refresh it with:" >&2
    echo "      cp $OPERATOR_CRD $OPERATOR_CHART/crds/" >&2
    return 1
  fi
  echo "OK $CHART_CRD is byte-identical to $OPERATOR_CRD"
}
step "CRD copy in the operator chart equals $OPERATOR_CRD" crd_copy

operator_parity() {
  local files=() rc=0
  mapfile -t files < <(operator_files)
  [ ${#files[@]} -gt 0 ] || { echo "  - no k8s/operator manifests to compare with" >&2; return 1; }
  # Namespace-scoped (the default of both) and cluster-wide.
  k8scheck rbac "$OUT/operator-ha.yaml" Role "${files[@]}" || rc=1
  k8scheck rbac "$OUT/operator-cluster-wide.yaml" ClusterRole "$TOOLS/k8s-operator-cluster-wide.yaml" || rc=1
  return "$rc"
}
step "operator chart RBAC and settings match k8s/operator" operator_parity

# ------------------------------------------------------------- observability

# alert_rules CHART NAMESPACE : the chart's PrometheusRule, rendered, checked
# with `promtool check rules` and unit-tested with `promtool test rules`
# (CHART/monitoring-tests/alerts.test.yaml); every alert's runbook_url points
# at a section of docs/runbooks.md.
alert_rules() {
  local chart="$1" ns="$2" dir rc=0
  dir="$TOOLS/rules-$(basename "$chart")"
  rm -rf "$dir" && mkdir -p "$dir"
  helm template sb "$chart" --namespace "$ns" --set metrics.prometheusRule.enabled=true \
    --show-only templates/prometheusrule.yaml >"$dir/rendered.yaml" || return 1
  python3 - "$dir/rendered.yaml" "$dir/rules.yml" <<'PY' || return 1
import re, sys, yaml
rule = yaml.safe_load(open(sys.argv[1]))
yaml.safe_dump(rule["spec"], open(sys.argv[2], "w"), sort_keys=False)
headings = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"(?m)^#+ (.*)$", open("docs/runbooks.md").read())}
errs = []
for g in rule["spec"]["groups"]:
    for r in g["rules"]:
        url = r.get("annotations", {}).get("runbook_url", "")
        anchor = url.split("#", 1)[-1]
        if "alert" in r and (not url.endswith("docs/runbooks.md#" + anchor) or anchor not in headings):
            errs.append(f"{r['alert']}: runbook_url {url!r} names no section of docs/runbooks.md")
for e in errs:
    print("  -", e, file=sys.stderr)
sys.exit(1 if errs else 0)
PY
  promtool check rules "$dir/rules.yml" || rc=1
  cp "$chart/monitoring-tests/alerts.test.yaml" "$dir/"
  (cd "$dir" && promtool test rules alerts.test.yaml) || rc=1
  return "$rc"
}
step "alerts of $SERVER_CHART: promtool check rules, test rules, runbooks" alert_rules "$SERVER_CHART" switchboard
step "alerts of $OPERATOR_CHART: promtool check rules, test rules, runbooks" alert_rules "$OPERATOR_CHART" switchboard-system

# Dashboards: JSON, every metric known to the server or operator source, and
# every query parsed by promtool (as a recording rule).
dashboards_check() {
  export PROMQL_OUT="$TOOLS/dashboard-queries.yml"
  k8scheck dashboards "$SERVER_CHART"/dashboards/*.json \
    "$OPERATOR_CHART"/dashboards/*.json || return 1
  promtool check rules "$TOOLS/dashboard-queries.yml"
}
step "Grafana dashboards: JSON, known metrics, PromQL that parses" dashboards_check

# The end-to-end scripts run only on a real cluster (GitHub Actions, kind):
# here they are at least linted.
step "shellcheck operator/e2e/*.sh" shellcheck -x -S warning operator/e2e/run.sh operator/e2e/chart.sh operator/e2e/lib.sh

# ------------------------------------------------------------------ policy scan

# checkov over everything rendered above (every chart value set, every
# kustomize build). Exceptions are checkov.io/skipN annotations on the
# resources themselves, each with its reason.
checkov_scan() {
  local n out rc
  n=$(find "$OUT" -name '*.yaml' | wc -l)
  [ "$n" -ge 10 ] || { echo "  - only $n rendered files to scan: an earlier step failed" >&2; return 1; }
  # Run from inside: checkov silently scans nothing under a path with a hidden
  # directory (.tools) in it. The summary line proves it scanned.
  out="$(cd "$OUT" && "$CHECKOV_VENV/bin/checkov" -d . --framework kubernetes --skip-download --compact 2>&1)"
  rc=$?
  printf '%s\n' "$out" | awk '/^Check: /{c=$0} /FAILED for resource/{print c; print; f=1; next} f&&/^\t/{print; next} {f=0}'
  printf '%s\n' "$out" | grep -E '^Passed checks: ' || { echo "  - checkov printed no summary:" >&2; printf '%s\n' "$out" | tail -20 >&2; return 1; }
  if printf '%s\n' "$out" | grep -qE '^Passed checks: 0,'; then
    echo "  - checkov scanned nothing" >&2; return 1
  fi
  return "$rc"
}
step "checkov (kubernetes) on every rendering: no failed check" checkov_scan
