#!/bin/bash
# ExecStartPre of switchboard.service (as root, before every start): reads the
# Redis auth token and the server's secrets from Secrets Manager and writes
# them for the service, so a restart picks up a rotated token. The files live
# in /run (memory, never on disk) and only root can read them:
#   secrets.env         systemd EnvironmentFile syntax (binary install)
#   secrets.docker.env  docker --env-file syntax, values verbatim (container)
# A failed read fails the start (systemd retries it) and leaves any previous
# files untouched, rather than starting the server with an empty secret.
set -euo pipefail
# shellcheck source=/dev/null
. /etc/switchboard/node.env

secret() {
  aws secretsmanager get-secret-value --region "$REGION" --secret-id "$1" \
    --query SecretString --output text
}

# systemd reads "NAME=..." with shell-like double quotes: inside them \ " ` $
# must be escaped. Neither format can carry a line break.
systemd_quote() {
  local v=$1
  v=${v//\\/\\\\}
  v=${v//\"/\\\"}
  v=${v//\`/\\\`}
  v=${v//\$/\\\$}
  printf '"%s"' "$v"
}

dir=/run/switchboard-secrets
install -d -m 0700 "$dir"
umask 077
# Plain assignments: with set -e a failed $(secret ...) stops the script here
# (inside a command's arguments its failure would go unnoticed).
token=$(secret "$REDIS_SECRET_ARN")
names=(REDIS_URL)
values=("rediss://:$token@$REDIS_HOST:$REDIS_PORT")
for pair in ${SERVER_SECRETS:-}; do
  names+=("${pair%%=*}")
  value=$(secret "${pair#*=}")
  values+=("$value")
done

: >"$dir/secrets.env.new"
: >"$dir/secrets.docker.env.new"
for i in "${!names[@]}"; do
  case ${values[$i]} in
  *$'\n'*)
    echo "secret ${names[$i]} holds a line break: environment variables cannot carry it; store it on one line" >&2
    exit 1
    ;;
  esac
  printf '%s=%s\n' "${names[$i]}" "$(systemd_quote "${values[$i]}")" >>"$dir/secrets.env.new"
  printf '%s=%s\n' "${names[$i]}" "${values[$i]}" >>"$dir/secrets.docker.env.new"
done
mv "$dir/secrets.env.new" "$dir/secrets.env"
mv "$dir/secrets.docker.env.new" "$dir/secrets.docker.env"
