#!/usr/bin/env bash
# End-to-end test of switchboard-operator on a real Kubernetes cluster (kind in
# CI). Installs the CRD and the operator from k8s/operator (namespace-scoped:
# it manages namespace "switchboard" only), creates SignalingClusters, waits
# for Ready, relays a WebRTC signal between two WebSocket clients (through the
# Service, and across two server pods), checks that /metrics and /status are
# on the internal port only, that an unchanged cluster is left alone and that
# a cluster in another namespace is not touched; scales, rolls a config
# change, hands the replica count to an HPA without a dip, reports a Redis
# storage change (and clears once the documented procedure is followed) while
# the rest of the same edit applies, fails the leader over (released and
# expired Lease), deletes and checks the garbage collection.
#
# Interface:
#   needs   a working kube context (kubectl), python3 (3.8+), and both images
#           already present on the nodes (for kind: `kind load docker-image`)
#   env     SERVER_IMAGE    server image, repository:tag (required); its server
#                           must support INTERNAL_ADDR
#           OPERATOR_IMAGE  operator image, repository:tag (required)
#           E2E_NAMESPACE   namespace of the SignalingClusters (switchboard: the
#                           one k8s/operator/rbac.yaml grants the operator)
#           E2E_TIMEOUT     seconds allowed for each wait (300)
#           E2E_KEEP        1 (default): leave SignalingCluster "signaling" running
#                           in E2E_NAMESPACE for later steps (load tests); 0:
#                           delete it too and check its garbage collection
#   exit    0 when every check passed; non-zero after dumping the cluster state,
#           events and the operator's and servers' logs.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=operator/e2e/lib.sh
source "$HERE/lib.sh"
MANIFESTS="$ROOT/k8s/operator"
NS="${E2E_NAMESPACE:-switchboard}"
KEEP="${E2E_KEEP:-1}"
OP_NS=switchboard-system
: "${SERVER_IMAGE:?set SERVER_IMAGE to the server image (repository:tag) loaded into the cluster}"
: "${OPERATOR_IMAGE:?set OPERATOR_IMAGE to the operator image (repository:tag) loaded into the cluster}"

WORK="$(mktemp -d)"
OTHER_NS=switchboard-e2e-elsewhere

dump() {
  set +e
  echo
  echo "==================== e2e failure: cluster state ===================="
  kubectl get signalingclusters -A -o wide
  kubectl get signalingclusters -A -o yaml
  kubectl get all,pvc,configmaps,secrets,pdb,hpa,networkpolicies,leases -n "$NS" -o wide
  kubectl get all,leases -n "$OP_NS" -o wide
  kubectl get leases -n "$OP_NS" -o yaml
  echo "---- events ($NS) ----"
  kubectl get events -n "$NS" --sort-by=.lastTimestamp | tail -n 80
  echo "---- events ($OP_NS) ----"
  kubectl get events -n "$OP_NS" --sort-by=.lastTimestamp | tail -n 40
  echo "---- operator logs ----"
  kubectl logs -n "$OP_NS" -l app.kubernetes.io/name=switchboard-operator --all-containers --prefix --tail=300
  kubectl logs -n "$OP_NS" -l app.kubernetes.io/name=switchboard-operator --all-containers --prefix --previous --tail=50 2>/dev/null
  echo "---- server and redis logs ----"
  kubectl logs -n "$NS" -l app.kubernetes.io/name=switchboard --all-containers --prefix --tail=100
  kubectl describe pods -n "$NS" | tail -n 150
}

trap on_exit EXIT

jsonpath() { kubectl -n "$NS" get "$1" -o jsonpath="$2"; }

# ------------------------------------------------------------------ prerequisites
log "prerequisites"
command -v kubectl >/dev/null || fail "kubectl is not on PATH"
kubectl version >/dev/null || fail "no working kube context (kubectl version failed)"
case "$SERVER_IMAGE" in
  *@*) fail "SERVER_IMAGE must be repository:tag, not a digest" ;;
esac
server_repo="${SERVER_IMAGE%:*}"
server_tag="${SERVER_IMAGE##*:}"
if [ "$server_repo" = "$SERVER_IMAGE" ] || [[ "$server_tag" == */* ]]; then
  server_repo="$SERVER_IMAGE"
  server_tag=latest
fi
need_python

# ---------------------------------------------------------------------------- CRD
log "install the CRD"
kubectl apply --server-side --field-manager=switchboard-e2e -f "$MANIFESTS/crd.yaml"
kubectl wait --for=condition=Established --timeout="${T}s" crd/signalingclusters.switchboard.dev

log "the API server rejects min > max replicas (CEL rule)"
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -
if out="$(kubectl apply --dry-run=server -f - 2>&1 <<EOF
apiVersion: switchboard.dev/v1alpha1
kind: SignalingCluster
metadata: {name: cel-check, namespace: $NS}
spec:
  autoscaling: {enabled: true, minReplicas: 5, maxReplicas: 2}
EOF
)"; then
  fail "a SignalingCluster with minReplicas > maxReplicas was accepted: $out"
fi
grep -q "minReplicas must not exceed" <<<"$out" || fail "unexpected rejection message: $out"
echo "OK rejected: $out"
log "the API server rejects two JWT key sources (CEL rule)"
if out="$(kubectl apply --dry-run=server -f - 2>&1 <<EOF
apiVersion: switchboard.dev/v1alpha1
kind: SignalingCluster
metadata: {name: cel-check, namespace: $NS}
spec:
  auth:
    jwtSecretRef: {name: keys, key: jwt}
    jwksSecretRef: {name: keys, key: jwks}
EOF
)"; then
  fail "a SignalingCluster with two JWT key sources was accepted: $out"
fi
grep -q "auth takes one key source" <<<"$out" || fail "unexpected rejection message: $out"
echo "OK rejected: $out"

# ----------------------------------------------------------------------- operator
log "install the operator ($OPERATOR_IMAGE)"
kubectl apply -f "$MANIFESTS/rbac.yaml"
sed -E "s#^( *image: )ghcr.io/switchboard-dev/switchboard-operator:.*#\\1${OPERATOR_IMAGE}#" \
  "$MANIFESTS/deployment.yaml" >"$WORK/operator.yaml"
grep -q "image: ${OPERATOR_IMAGE}\$" "$WORK/operator.yaml" || fail "could not set the operator image in deployment.yaml"
kubectl apply -f "$WORK/operator.yaml"
kubectl -n "$OP_NS" rollout status deployment/switchboard-operator --timeout="${T}s"
has_leader() { [ -n "$(kubectl -n "$OP_NS" get lease switchboard-operator -o jsonpath='{.spec.holderIdentity}')" ]; }
wait_until "$T" "an operator replica to hold the leader Lease" has_leader
echo "OK leader: $(kubectl -n "$OP_NS" get lease switchboard-operator -o jsonpath='{.spec.holderIdentity}')"

# ------------------------------------------------------------- SignalingClusters
# smoke: the lifecycle under test (persistent managed Redis, deleted at the end).
# signaling: left running for later steps (E2E_KEEP=1).
# broken: valid for the API server, invalid for the operator (overrides a
#         variable the operator manages): must be Degraded, harming nobody.
log "create SignalingClusters in $NS"
cluster() {
  local name="$1" replicas="$2" persistence="$3"
  cat <<EOF
apiVersion: switchboard.dev/v1alpha1
kind: SignalingCluster
metadata: {name: $name, namespace: $NS}
spec:
  replicas: $replicas
  image: {repository: "$server_repo", tag: "$server_tag", pullPolicy: IfNotPresent}
  resources: {requests: {cpu: 50m, memory: 64Mi}, limits: {memory: 256Mi}}
  server: {logLevel: info, drainTimeoutSeconds: 5}
  redis:
    managed: {persistence: $persistence, storage: {size: 256Mi}}
---
EOF
}
{
  cluster smoke 2 true
  cluster signaling 2 false
  cat <<EOF
apiVersion: switchboard.dev/v1alpha1
kind: SignalingCluster
metadata: {name: broken, namespace: $NS}
spec:
  image: {repository: "$server_repo", tag: "$server_tag"}
  env: [{name: REDIS_URL, value: "redis://elsewhere:6379"}]
EOF
} >"$WORK/clusters.yaml"
kubectl apply -f "$WORK/clusters.yaml"
# The default RBAC covers namespace $NS only: a SignalingCluster elsewhere is
# not the operator's to touch.
kubectl create namespace "$OTHER_NS" --dry-run=client -o yaml | kubectl apply -f -
cluster outside 1 false | sed "s/namespace: $NS}/namespace: $OTHER_NS}/" | kubectl apply -f -

log "wait for Ready"
kubectl -n "$NS" wait signalingcluster/smoke signalingcluster/signaling \
  --for=condition=Ready --timeout="${T}s"
kubectl -n "$NS" get signalingclusters

log "an invalid SignalingCluster is Degraded with a message and an Event"
kubectl -n "$NS" wait signalingcluster/broken --for=condition=Degraded --timeout="${T}s"
reason="$(jsonpath signalingcluster/broken '{.status.conditions[?(@.type=="Degraded")].reason}')"
message="$(jsonpath signalingcluster/broken '{.status.conditions[?(@.type=="Degraded")].message}')"
[ "$reason" = InvalidSpec ] || fail "broken: Degraded reason is $reason, expected InvalidSpec"
grep -q "spec.env sets REDIS_URL" <<<"$message" || fail "broken: message does not say what to fix: $message"
has_event() {
  [ -n "$(kubectl -n "$NS" get events \
    --field-selector involvedObject.name=broken,reason=InvalidSpec -o name)" ]
}
wait_until 60 "a Warning event InvalidSpec on broken" has_event
[ -z "$(kubectl -n "$NS" get deployment broken --ignore-not-found -o name)" ] \
  || fail "the operator created a Deployment for an invalid SignalingCluster"
echo "OK broken: $message"

log "smoke owns everything it should"
for obj in deployment/smoke service/smoke configmap/smoke-config serviceaccount/smoke \
  poddisruptionbudget/smoke statefulset/smoke-redis service/smoke-redis \
  configmap/smoke-redis-config secret/smoke-redis-auth networkpolicy/smoke-redis; do
  owner="$(jsonpath "$obj" '{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}')"
  [ "$owner" = SignalingCluster/smoke ] || fail "$obj is owned by '$owner', expected SignalingCluster/smoke"
done
[ "$(jsonpath signalingcluster/smoke '{.status.redis}')" = "smoke-redis:6379" ] \
  || fail "status.redis is $(jsonpath signalingcluster/smoke '{.status.redis}')"
[ -n "$(kubectl -n "$NS" get pvc -l app.kubernetes.io/instance=smoke -o name)" ] \
  || fail "the persistent managed Redis has no PersistentVolumeClaim"
echo "OK"

log "a SignalingCluster outside the managed namespace is left alone"
[ -z "$(kubectl -n "$OTHER_NS" get signalingcluster/outside -o jsonpath='{.status}')" ] \
  || fail "the operator wrote status to $OTHER_NS/outside, outside its namespace"
[ -z "$(kubectl -n "$OTHER_NS" get deployments,statefulsets -o name)" ] \
  || fail "the operator created objects in $OTHER_NS"
echo "OK nothing in $OTHER_NS"

log "/metrics and /status on the internal port only"
pod="$(kubectl -n "$NS" get pods -l app.kubernetes.io/instance=smoke,app.kubernetes.io/component=server \
  --field-selector=status.phase=Running -o name | head -n 1)"
metrics_only_internal "$pod" 18170 18171
[ "$(jsonpath service/smoke '{.spec.ports[*].name}')" = http ] \
  || fail "the public Service carries more than the http port: $(jsonpath service/smoke '{.spec.ports[*].name}')"

# ------------------------------------------------------------------------ signal
log "relay a signal through the Service"
port_forward service/smoke 18180 80
"$PY" "$HERE/signal_smoke.py" ws://127.0.0.1:18180/ws

log "relay a signal across two server pods (through Redis)"
relay_across_pods app.kubernetes.io/instance=smoke,app.kubernetes.io/component=server

# ----------------------------------------------------------------- idempotency
log "an unchanged cluster is left alone (no self-triggered writes)"
sleep 5
before="$(jsonpath signalingcluster/smoke '{.metadata.resourceVersion}') $(jsonpath deployment/smoke '{.metadata.resourceVersion}')"
sleep 20
after="$(jsonpath signalingcluster/smoke '{.metadata.resourceVersion}') $(jsonpath deployment/smoke '{.metadata.resourceVersion}')"
[ "$before" = "$after" ] || fail "resourceVersions of smoke and its Deployment moved while nothing changed: $before -> $after"
echo "OK resourceVersions stable: $after"

# ------------------------------------------------------------------------- scale
log "scale to 3 with kubectl scale"
kubectl -n "$NS" scale signalingcluster/smoke --replicas=3
kubectl -n "$NS" wait signalingcluster/smoke --for=jsonpath='{.status.readyReplicas}'=3 --timeout="${T}s"
[ "$(jsonpath deployment/smoke '{.spec.replicas}')" = 3 ] || fail "the Deployment was not scaled to 3"
echo "OK 3 ready replicas"

log "a config change rolls the pods"
old_hash="$(jsonpath deployment/smoke '{.spec.template.metadata.annotations.switchboard\.dev/config-hash}')"
kubectl -n "$NS" patch signalingcluster/smoke --type=merge -p '{"spec":{"server":{"logLevel":"debug"}}}'
hash_changed() { [ "$(jsonpath deployment/smoke '{.spec.template.metadata.annotations.switchboard\.dev/config-hash}')" != "$old_hash" ]; }
wait_until 60 "the Deployment's config hash to change" hash_changed
[ "$(jsonpath configmap/smoke-config '{.data.RUST_LOG}')" = debug ] || fail "ConfigMap smoke-config was not updated"
kubectl -n "$NS" rollout status deployment/smoke --timeout="${T}s"
kubectl -n "$NS" wait signalingcluster/smoke --for=condition=Ready --timeout="${T}s"
echo "OK rolled out"

# ------------------------------------------------------------------ HPA handoff
log "autoscaling on: the HPA takes the replica count over, without a dip"
kubectl -n "$NS" patch signalingcluster/smoke --type=merge -p \
  '{"spec":{"autoscaling":{"enabled":true,"minReplicas":2,"maxReplicas":5,"scaleDown":{"stabilizationWindowSeconds":900}}}}'
wait_until 60 "the HPA smoke" kubectl -n "$NS" get hpa/smoke
[ "$(jsonpath hpa/smoke '{.spec.behavior.scaleDown.stabilizationWindowSeconds}')" = 900 ] \
  || fail "the HPA's scale-down window is not the one asked for"
[ "$(jsonpath hpa/smoke '{.spec.behavior.scaleDown.policies[0].value}')" = 1 ] \
  || fail "the HPA scales down more than one pod per period"
owns_replicas() {
  kubectl -n "$NS" get deployment/smoke -o json | "$PY" -c '
import json, sys
d = json.load(sys.stdin)
owners = [m.get("manager") for m in d["metadata"].get("managedFields", [])
          if "f:replicas" in (m.get("fieldsV1") or {}).get("f:spec", {})]
sys.exit(0 if "switchboard-operator" in owners else 1)'
}
handed_over() { ! owns_replicas; }
wait_until 60 "the operator to give up spec.replicas of deployment/smoke" handed_over
for _ in 1 2 3 4 5; do
  n="$(jsonpath deployment/smoke '{.spec.replicas}')"
  [ "$n" = 3 ] || fail "deployment/smoke went from 3 to $n replicas when the HPA took over"
  sleep 2
done
echo "OK 3 replicas kept; the HPA owns the count"

# ------------------------------------------------------- storage cannot change
log "a Redis storage change is reported; the rest of the same edit applies"
kubectl -n "$NS" patch signalingcluster/smoke --type=merge -p \
  '{"spec":{"redis":{"managed":{"storage":{"size":"512Mi"}}},"server":{"logLevel":"info"}}}'
degraded_reason() { [ "$(jsonpath signalingcluster/smoke '{.status.conditions[?(@.type=="Degraded")].reason}')" = "$1" ]; }
wait_until 60 "Degraded=ManualStepNeeded on smoke" degraded_reason ManualStepNeeded
message="$(jsonpath signalingcluster/smoke '{.status.conditions[?(@.type=="Degraded")].message}')"
grep -q "storage.size is 512Mi" <<<"$message" || fail "the message does not name the field: $message"
grep -q "patch pvc data-smoke-redis-0" <<<"$message" || fail "the message gives no procedure: $message"
[ "$(jsonpath configmap/smoke-config '{.data.RUST_LOG}')" = info ] \
  || fail "the log level of the same edit was not applied"
[ "$(jsonpath statefulset/smoke-redis '{.spec.volumeClaimTemplates[0].spec.resources.requests.storage}')" = 256Mi ] \
  || fail "the StatefulSet's claim template changed"
echo "OK $message"
log "the procedure for a volume that cannot grow: recreate Redis empty"
kubectl -n "$NS" delete statefulset/smoke-redis --wait=true --timeout="${T}s"
kubectl -n "$NS" delete pvc/data-smoke-redis-0 --ignore-not-found --wait=true --timeout="${T}s"
wait_until "$T" "Degraded=AsExpected on smoke" degraded_reason AsExpected
kubectl -n "$NS" wait signalingcluster/smoke --for=condition=Ready --timeout="${T}s"
[ "$(jsonpath statefulset/smoke-redis '{.spec.volumeClaimTemplates[0].spec.resources.requests.storage}')" = 512Mi ] \
  || fail "the recreated StatefulSet does not have the new size"
port_forward service/smoke 18184 80
"$PY" "$HERE/signal_smoke.py" ws://127.0.0.1:18184/ws
stop_port_forwards
echo "OK Redis recreated with 512Mi; signals relay"

# ---------------------------------------------------------------- leader failover
holder() { kubectl -n "$OP_NS" get lease switchboard-operator -o jsonpath='{.spec.holderIdentity}'; }
# fail_over HOW : delete the leader pod (gracefully: it releases the Lease; or
# forced: its Lease must expire) and wait for the other replica to lead and
# reconcile a change.
fail_over() {
  local how="$1" old new replicas
  old="$(holder)"
  [ -n "$old" ] || fail "no leader before the failover"
  if [ "$how" = forced ]; then
    kubectl -n "$OP_NS" delete pod "$old" --grace-period=0 --force
  else
    kubectl -n "$OP_NS" delete pod "$old" --wait=false
  fi
  new_leader() { local h; h="$(holder)"; [ -n "$h" ] && [ "$h" != "$old" ]; }
  # Released: at the next attempt (2 s); expired: 15 s after the last renewal.
  wait_until 60 "a new leader after deleting $old ($how)" new_leader
  new="$(holder)"
  replicas=$(($(jsonpath signalingcluster/signaling '{.spec.replicas}') == 2 ? 3 : 2))
  kubectl -n "$NS" scale signalingcluster/signaling --replicas="$replicas"
  scaled() { [ "$(jsonpath deployment/signaling '{.spec.replicas}')" = "$replicas" ]; }
  wait_until 60 "the new leader $new to scale deployment/signaling to $replicas" scaled
  echo "OK $how failover: $old -> $new, which reconciles"
}
log "leader failover: the leader shuts down and releases the Lease"
fail_over graceful
kubectl -n "$OP_NS" rollout status deployment/switchboard-operator --timeout="${T}s"
log "leader failover: the leader vanishes and its Lease expires"
fail_over forced
kubectl -n "$OP_NS" rollout status deployment/switchboard-operator --timeout="${T}s"

# ------------------------------------------------------------------------ delete
# gone NAME : nothing labelled with instance NAME is left in the namespace.
gone() {
  [ -z "$(kubectl -n "$NS" get deployments,statefulsets,services,configmaps,secrets,serviceaccounts,poddisruptionbudgets,horizontalpodautoscalers,networkpolicies,persistentvolumeclaims,pods \
    -l "app.kubernetes.io/instance=$1" -o name)" ]
}
log "delete smoke: everything it owned is garbage-collected"
kubectl -n "$NS" delete signalingcluster/smoke --wait=true --timeout="${T}s"
wait_until "$T" "garbage collection of everything labelled app.kubernetes.io/instance=smoke" gone smoke
echo "OK nothing of smoke is left"
kubectl -n "$NS" wait signalingcluster/signaling --for=condition=Ready --timeout=60s
echo "OK signaling is still Ready"

log "signaling (left for later steps) relays too"
port_forward service/signaling 18183 80
"$PY" "$HERE/signal_smoke.py" ws://127.0.0.1:18183/ws
stop_port_forwards

kubectl -n "$NS" delete signalingcluster/broken --wait=true --timeout="${T}s"
kubectl delete namespace "$OTHER_NS" --wait=false
if [ "$KEEP" = 0 ]; then
  log "delete signaling"
  kubectl -n "$NS" delete signalingcluster/signaling --wait=true --timeout="${T}s"
  wait_until "$T" "garbage collection of signaling" gone signaling
fi

log "operator metrics"
op_pod="$(kubectl -n "$OP_NS" get lease switchboard-operator -o jsonpath='{.spec.holderIdentity}')"
port_forward_op() {
  kubectl -n "$OP_NS" port-forward "pod/$op_pod" 18190:8080 >"$WORK/pf-op.log" 2>&1 &
  PF_PIDS+=($!)
}
port_forward_op
metrics_up() { "$PY" -c "import urllib.request,sys; t=urllib.request.urlopen('http://127.0.0.1:18190/metrics', timeout=2).read().decode(); sys.exit(0 if 'switchboard_operator_reconciliations_total' in t else 1)"; }
wait_until 60 "the leader's /metrics" metrics_up
stop_port_forwards
echo "OK"

log "E2E PASSED"
