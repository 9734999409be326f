#!/usr/bin/env bash
# End-to-end test of the Helm chart helm/switchboard on a real cluster (kind in
# CI), after chart-testing installed it (`ct install --skip-clean-up`, which
# also waited for every pod to be ready). Relays a WebRTC signal through the
# release's Service and across two server pods (through Redis), checks that
# /metrics and /status are on the internal port only, that the HPA scales the
# new Deployment (no replicas of its own) to its minimum, and that an upgrade
# keeps a replica count the HPA chose (no reset to one pod); then uninstalls.
#
# Interface:
#   needs   a working kube context (kubectl, helm), python3 (3.8+), and the
#           release installed with the server image loaded on the nodes
#   env     CHART_NAMESPACE  the namespace ct installed into (required)
#           E2E_TIMEOUT      seconds allowed for each wait (300)
#   exit    0 when every check passed; non-zero after dumping the release's
#           state and logs.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=operator/e2e/lib.sh
source "$HERE/lib.sh"
NS="${CHART_NAMESPACE:?set CHART_NAMESPACE to the namespace of the chart release}"
# shellcheck disable=SC2034 # used by lib.sh
WORK="$(mktemp -d)"

dump() {
  set +e
  echo
  echo "==================== chart e2e failure: release state ===================="
  helm list -n "$NS"
  kubectl get all,pvc,configmaps,pdb,hpa,networkpolicies -n "$NS" -o wide
  kubectl get events -n "$NS" --sort-by=.lastTimestamp | tail -n 80
  kubectl logs -n "$NS" -l app.kubernetes.io/part-of=switchboard --all-containers --prefix --tail=100
  kubectl describe pods -n "$NS" | tail -n 150
}

trap on_exit EXIT

need_python
command -v helm >/dev/null || fail "helm is not on PATH"

log "the release ct installed in $NS"
release="$(helm list -n "$NS" -q | head -n 1)"
[ -n "$release" ] || fail "no Helm release in namespace $NS"
svc="$(kubectl -n "$NS" get service -l switchboard.dev/endpoint=public -o jsonpath='{.items[0].metadata.name}')"
deploy="$(kubectl -n "$NS" get deployment -l app.kubernetes.io/component=server -o jsonpath='{.items[0].metadata.name}')"
[ -n "$svc" ] && [ -n "$deploy" ] || fail "no public Service or server Deployment in $NS"
kubectl -n "$NS" rollout status "deployment/$deploy" --timeout="${T}s"
echo "OK release $release: Service $svc, Deployment $deploy"

log "relay a signal through the Service"
port="$(kubectl -n "$NS" get "service/$svc" -o jsonpath='{.spec.ports[0].port}')"
port_forward "service/$svc" 18280 "$port"
"$PY" "$HERE/signal_smoke.py" ws://127.0.0.1:18280/ws
stop_port_forwards

log "the HPA brings the new Deployment (no replicas of its own) to minReplicas"
min="$(kubectl -n "$NS" get hpa "$deploy" -o jsonpath='{.spec.minReplicas}')"
at_min() { [ "$(kubectl -n "$NS" get "deployment/$deploy" -o jsonpath='{.status.readyReplicas}')" = "$min" ]; }
wait_until "$T" "$min ready server pods" at_min
echo "OK $min pods"

log "relay a signal across two server pods (through Redis)"
relay_across_pods app.kubernetes.io/component=server

log "/metrics and /status on the internal port only"
pod="$(kubectl -n "$NS" get pods -l app.kubernetes.io/component=server -o name | head -n 1)"
metrics_only_internal "$pod" 18283 18284

log "an upgrade keeps the replica count the HPA chose"
# Stand in for the HPA (without a metrics server it leaves a count within its
# bounds alone): one pod more, then an upgrade.
want=$((min + 1))
kubectl -n "$NS" scale "deployment/$deploy" --replicas="$want"
kubectl -n "$NS" rollout status "deployment/$deploy" --timeout="${T}s"
helm upgrade "$release" "$ROOT/helm/switchboard" -n "$NS" --reuse-values --wait --timeout "${T}s"
n="$(kubectl -n "$NS" get "deployment/$deploy" -o jsonpath='{.spec.replicas}')"
[ "$n" = "$want" ] || fail "the upgrade set the Deployment to $n replicas (the HPA had $want)"
echo "OK $want replicas kept across the upgrade"

log "uninstall"
helm uninstall "$release" -n "$NS" --wait --timeout "${T}s"
log "CHART E2E PASSED"
