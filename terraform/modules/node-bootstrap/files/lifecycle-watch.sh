#!/bin/bash
# switchboard-lifecycle.service: drains the server before the Auto Scaling
# group terminates this instance.
# Polls the Auto Scaling target lifecycle state in the instance metadata,
# which turns to Terminated as soon as the group decides to terminate this
# instance, while the load balancer is still deregistering it (and keeping
# its open connections). Then it stops the server (SIGTERM: /ready turns 503,
# clients are told to reconnect elsewhere, the process exits within
# DRAIN_TIMEOUT_SECS) and completes the termination lifecycle hook, which
# lets the termination go on. The marker file tells the liveness watcher
# that the server is down on purpose.
set -u
# shellcheck source=/dev/null
. /etc/switchboard/node.env

imds() {
  local token
  token=$(curl -sf -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' http://169.254.169.254/latest/api/token) || return 1
  curl -sf -H "X-aws-ec2-metadata-token: $token" "http://169.254.169.254/latest/meta-data/$1"
}

while true; do
  if [ "$(imds autoscaling/target-lifecycle-state)" = "Terminated" ]; then
    logger -t switchboard-lifecycle "instance is terminating: draining switchboard"
    touch /run/switchboard-draining
    systemctl stop switchboard.service
    # Bounded: the hook's heartbeat timeout ends the wait anyway.
    for _ in $(seq 60); do
      if aws autoscaling complete-lifecycle-action --region "$REGION" \
        --auto-scaling-group-name "$ASG_NAME" --lifecycle-hook-name "$HOOK_NAME" \
        --instance-id "$INSTANCE_ID" --lifecycle-action-result CONTINUE; then
        exit 0
      fi
      sleep 5
    done
    exit 1
  fi
  sleep 5
done
