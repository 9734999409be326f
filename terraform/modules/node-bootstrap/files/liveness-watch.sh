#!/bin/bash
# switchboard-liveness.service: replaces this instance when the server stops
# answering its liveness endpoint.
# The load balancer routes on /ready, which answers 503 while Redis is
# unreachable: on its own that must never cost an instance (a Redis failover
# or outage would recycle the whole fleet). /health answers 200 as long as
# the process serves requests, Redis or not. After LIVENESS_FAILURES failed
# probes in a row, LIVENESS_INTERVAL seconds apart, the process is wedged or
# cannot start (systemd restarts a crashed one by itself): this watcher
# reports the instance unhealthy, and the Auto Scaling group replaces it
# through the drain lifecycle hook. While the instance is draining for
# termination the server is down on purpose, and nothing is reported.
set -u
# shellcheck source=/dev/null
. /etc/switchboard/node.env

failures=0
while true; do
  if [ -e /run/switchboard-draining ]; then
    exit 0
  fi
  if curl -sf --max-time 5 -o /dev/null "http://127.0.0.1:$PORT/health"; then
    failures=0
  else
    failures=$((failures + 1))
    logger -t switchboard-liveness "GET /health failed ($failures of $LIVENESS_FAILURES in a row)"
  fi
  if [ "$failures" -ge "$LIVENESS_FAILURES" ]; then
    logger -t switchboard-liveness "switchboard does not answer /health: reporting this instance unhealthy, the Auto Scaling group will replace it"
    # Within the group's health check grace period (a slow first boot) the
    # report is ignored; the watcher then keeps probing and reports again.
    if aws autoscaling set-instance-health --region "$REGION" --instance-id "$INSTANCE_ID" \
      --health-status Unhealthy --should-respect-grace-period; then
      failures=0
    fi
  fi
  sleep "$LIVENESS_INTERVAL"
done
