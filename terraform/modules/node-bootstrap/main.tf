# Renders the user data of a Switchboard node: a bash script for Amazon
# Linux 2023 that installs the server and its helpers as systemd units. No
# resources and no provider: the asg module puts the result in its launch
# template, and the tests render it the same way and run it in a sandbox.
locals {
  # systemd's EnvironmentFile parser treats \ " ` $ specially inside double
  # quotes; docker's --env-file takes everything after "=" verbatim.
  env_systemd = join("", [
    for k in sort(keys(var.environment)) :
    format("%s=\"%s\"\n", k, replace(replace(replace(replace(var.environment[k], "\\", "\\\\"), "\"", "\\\""), "`", "\\`"), "$", "\\$"))
  ])
  env_docker = join("", [for k in sort(keys(var.environment)) : "${k}=${var.environment[k]}\n"])

  # Read by the helper scripts (sourced by bash, parsed by the publisher);
  # INSTANCE_ID is appended on the instance. No secret in here.
  node_env = join("", [for k, v in {
    REGION            = var.region
    PORT              = tostring(var.port)
    ASG_NAME          = var.asg_name
    HOOK_NAME         = var.hook_name
    REDIS_HOST        = var.redis_host
    REDIS_PORT        = tostring(var.redis_port)
    REDIS_SECRET_ARN  = var.redis_secret_arn
    SERVER_SECRETS    = join(" ", [for name in sort(keys(var.server_secrets)) : "${name}=${var.server_secrets[name]}"])
    METRICS_NAMESPACE = var.metrics_namespace
    LIVENESS_INTERVAL = tostring(var.liveness_interval)
    LIVENESS_FAILURES = tostring(var.liveness_failures)
  } : "${k}='${v}'\n"])

  units = {
    "switchboard.service" = var.install_method == "container" ? templatefile("${path.module}/templates/switchboard-container.service.tftpl", {
      image        = var.image
      stop_timeout = var.stop_timeout
      }) : templatefile("${path.module}/templates/switchboard-binary.service.tftpl", {
      stop_timeout = var.stop_timeout
    })
    "switchboard-lifecycle.service" = file("${path.module}/files/switchboard-lifecycle.service")
    "switchboard-liveness.service"  = file("${path.module}/files/switchboard-liveness.service")
    "switchboard-metrics.service"   = file("${path.module}/files/switchboard-metrics.service")
    "switchboard-metrics.timer"     = file("${path.module}/files/switchboard-metrics.timer")
  }

  user_data = templatefile("${path.module}/templates/user-data.sh.tftpl", {
    install_method     = var.install_method
    image              = var.image
    binary_url         = var.binary_url
    binary_sha256      = var.binary_sha256 == null ? "" : var.binary_sha256
    env_systemd        = local.env_systemd
    env_docker         = local.env_docker
    node_env           = local.node_env
    units              = local.units
    log_group          = var.log_group
    auth_token_version = var.auth_token_version
    secrets_env        = file("${path.module}/files/secrets-env.sh")
    lifecycle_watch    = file("${path.module}/files/lifecycle-watch.sh")
    liveness_watch     = file("${path.module}/files/liveness-watch.sh")
    publish_metrics    = file("${path.module}/files/publish-metrics.py")
    rsyslog_conf       = file("${path.module}/files/30-switchboard.conf")
  })
}
