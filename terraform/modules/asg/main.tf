data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}

# Provider default_tags do not reach instances and volumes launched by the
# group, so they are repeated below in tag blocks and tag_specifications.
data "aws_default_tags" "current" {}

# The image is an input, never "the latest": a new image id makes a new
# launch template version, which rolls every node (and reconnects every
# client), so it changes only when someone changes ami_id. With an SSM
# parameter the launch template names the parameter and EC2 resolves it at
# each launch: the template never changes by itself.
data "aws_ami" "node" {
  count = var.ami_id == null ? 0 : 1

  filter {
    name   = "image-id"
    values = [var.ami_id]
  }

  lifecycle {
    postcondition {
      condition     = self.architecture == var.architecture
      error_message = "ami_id ${var.ami_id} is an ${self.architecture} image, but architecture is ${var.architecture}: pick an image for ${var.architecture} or change architecture (and instance_type) to match."
    }
  }
}

# Catches an instance type of the other architecture at plan time (EC2 would
# refuse the launch only when the Auto Scaling group tries it).
data "aws_ec2_instance_type" "node" {
  instance_type = var.instance_type

  lifecycle {
    postcondition {
      condition     = contains(self.supported_architectures, var.architecture)
      error_message = "instance_type ${var.instance_type} runs ${join(" or ", self.supported_architectures)}, not ${var.architecture}: use a Graviton type (t4g, m7g, ...) for arm64 or an Intel/AMD type (t3, m7i, ...) for x86_64, or change architecture."
    }
  }
}

locals {
  asg_name  = "${var.name}-nodes"
  hook_name = "${var.name}-drain"
  # The server gets this long to drain before systemd kills it.
  stop_timeout = var.drain_timeout + 10

  release_arch = var.architecture == "arm64" ? "aarch64" : "x86_64"
  binary_url = coalesce(
    var.binary_url,
    "https://github.com/switchboard-dev/switchboard/releases/download/v${var.server_version}/switchboard-${var.server_version}-${local.release_arch}-unknown-linux-musl.tar.gz",
  )

  # Non-secret server settings. REDIS_URL (with the auth token) is assembled on
  # the instance from Secrets Manager and never appears in user data.
  environment = merge(var.server_environment, {
    PORT               = tostring(var.server_port)
    HOST               = "0.0.0.0"
    SERVER_REGION      = var.region
    LOG_FORMAT         = "json"
    RUST_LOG           = var.log_level
    DRAIN_TIMEOUT_SECS = tostring(var.drain_timeout)
    PING_INTERVAL_SECS = tostring(var.ping_interval)
    IDLE_TIMEOUT_SECS  = tostring(var.server_idle_timeout)
    MAX_CONNECTIONS    = tostring(var.max_connections)
    # Behind the ALB every socket comes from a load balancer address, so a
    # per-address bound on sockets not yet upgraded would refuse real
    # clients in a reconnect storm: bound them in total only.
    MAX_PENDING_PER_IP = "1024"
  })

  image_id         = var.ami_id != null ? var.ami_id : "resolve:ssm:${var.ami_ssm_parameter}"
  root_device_name = var.ami_id != null ? data.aws_ami.node[0].root_device_name : "/dev/xvda"

  instance_tags = merge(data.aws_default_tags.current.tags, { Name = "${var.name}-node" })
}

module "bootstrap" {
  source = "../node-bootstrap"

  install_method     = var.install_method
  image              = "${var.container_image}:${var.server_version}"
  binary_url         = local.binary_url
  binary_sha256      = var.binary_sha256
  environment        = local.environment
  server_secrets     = var.server_secrets
  region             = var.region
  port               = var.server_port
  redis_host         = var.redis_host
  redis_port         = var.redis_port
  redis_secret_arn   = var.redis_secret_arn
  auth_token_version = var.redis_auth_token_version
  stop_timeout       = local.stop_timeout
  asg_name           = local.asg_name
  hook_name          = local.hook_name
  log_group          = aws_cloudwatch_log_group.server.name
  metrics_namespace  = var.metrics_namespace
}

resource "aws_cloudwatch_log_group" "server" {
  name              = "/${var.name}/server"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

# Outbound HTTPS only: AWS APIs (Secrets Manager, SSM, CloudWatch Logs, Auto
# Scaling), package repositories and the release download or image registry.
# Redis egress is added by the elasticache module; nothing is open inbound
# except the server port from the load balancer (alb module).
resource "aws_vpc_security_group_egress_rule" "https" {
  security_group_id = var.security_group_id
  description       = "HTTPS to AWS APIs, package repositories and the release download"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_launch_template" "this" {
  name_prefix            = "${var.name}-node-"
  description            = "Switchboard ${var.server_version} (${var.install_method})"
  image_id               = local.image_id
  instance_type          = var.instance_type
  update_default_version = true
  ebs_optimized          = true
  # Compressed (cloud-init unpacks it): the script with its helpers is larger
  # than the 16 KiB EC2 allows for user data as it is.
  user_data = base64gzip(module.bootstrap.user_data)

  iam_instance_profile {
    arn = aws_iam_instance_profile.this.arn
  }

  # No SSH key and no public address: operators use SSM Session Manager.
  network_interfaces {
    associate_public_ip_address = var.associate_public_ip
    security_groups             = [var.security_group_id]
    delete_on_termination       = true
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  block_device_mappings {
    device_name = local.root_device_name

    ebs {
      volume_type           = "gp3"
      volume_size           = var.root_volume_size
      encrypted             = true
      kms_key_id            = var.ebs_kms_key_arn
      delete_on_termination = true
    }
  }

  monitoring {
    enabled = true
  }

  tag_specifications {
    resource_type = "instance"
    tags          = local.instance_tags
  }

  tag_specifications {
    resource_type = "volume"
    tags          = local.instance_tags
  }

  tag_specifications {
    resource_type = "network-interface"
    tags          = local.instance_tags
  }

  tags = { Name = "${var.name}-node" }

  lifecycle {
    precondition {
      condition     = length(base64gzip(module.bootstrap.user_data)) <= 21848
      error_message = "The compressed user data is larger than the 16 KiB EC2 accepts: shorten server_environment or server_secrets."
    }
  }
}

resource "aws_autoscaling_group" "this" {
  name                = local.asg_name
  vpc_zone_identifier = var.subnet_ids
  min_size            = var.min_size
  max_size            = var.max_size
  desired_capacity    = var.desired_capacity
  target_group_arns   = [var.target_group_arn]

  # Route on readiness, replace on liveness. The load balancer takes a node
  # out of rotation while its /ready fails (draining, Redis unreachable), but
  # that must not make the group terminate it: a Redis failover or outage
  # would recycle the whole fleet. So the group replaces on EC2 status checks
  # and on the node's own liveness report (switchboard-liveness.service:
  # /health failing for a minute), not on the load balancer's view.
  health_check_type         = "EC2"
  health_check_grace_period = var.health_check_grace_period
  default_instance_warmup   = 120
  wait_for_capacity_timeout = "15m"
  termination_policies      = ["OldestLaunchTemplate", "OldestInstance"]
  metrics_granularity       = "1Minute"
  enabled_metrics = [
    "GroupDesiredCapacity",
    "GroupInServiceInstances",
    "GroupPendingInstances",
    "GroupTerminatingInstances",
    "GroupTotalInstances",
  ]

  launch_template {
    id      = aws_launch_template.this.id
    version = aws_launch_template.this.latest_version
  }

  # A new launch template version (new server_version, settings, image or
  # Redis token) rolls the group: new instances first, old ones drained and
  # removed after the warmup. The group's own health checks do not look at
  # /ready (see above), so the refresh watches the load balancer through
  # alarms instead: unhealthy targets during the refresh stop it and roll it
  # back.
  instance_refresh {
    strategy = "Rolling"
    preferences {
      min_healthy_percentage = 100
      max_healthy_percentage = 200
      # Longer than the alarm needs to go off (3 minutes of unhealthy
      # targets), so a version whose nodes never turn ready is rolled back
      # before the old nodes are gone.
      instance_warmup = 300
      auto_rollback   = true

      dynamic "alarm_specification" {
        for_each = length(var.refresh_rollback_alarms) > 0 ? [1] : []
        content {
          alarms = var.refresh_rollback_alarms
        }
      }
    }
  }

  dynamic "tag" {
    for_each = local.instance_tags
    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }

  lifecycle {
    # The scaling policies own the capacity after creation.
    ignore_changes = [desired_capacity]
  }
}

# Terminating instances wait here until the on-instance watcher (see the user
# data) has stopped the server, which drains its clients, and completes the
# action. The heartbeat is a bound in case the watcher is gone.
resource "aws_autoscaling_lifecycle_hook" "drain" {
  name                   = local.hook_name
  autoscaling_group_name = aws_autoscaling_group.this.name
  lifecycle_transition   = "autoscaling:EC2_INSTANCE_TERMINATING"
  heartbeat_timeout      = local.stop_timeout + 60
  default_result         = "CONTINUE"
}

resource "aws_autoscaling_policy" "cpu" {
  name                   = "${var.name}-cpu"
  autoscaling_group_name = aws_autoscaling_group.this.name
  policy_type            = "TargetTrackingScaling"

  target_tracking_configuration {
    predefined_metric_specification {
      predefined_metric_type = "ASGAverageCPUUtilization"
    }
    target_value = var.cpu_target
  }
}

# The real load of a signaling node is its open WebSocket connections (each
# costs memory and fan-out work even when idle), published by every node as
# Switchboard/Connections (switchboard-metrics.timer). The group average is
# kept near connections_target; the CPU policy above catches message-heavy
# load. Whichever asks for more capacity wins.
resource "aws_autoscaling_policy" "connections" {
  name                   = "${var.name}-connections"
  autoscaling_group_name = aws_autoscaling_group.this.name
  policy_type            = "TargetTrackingScaling"

  target_tracking_configuration {
    customized_metric_specification {
      namespace   = var.metrics_namespace
      metric_name = "Connections"
      statistic   = "Average"
      unit        = "Count"

      metric_dimension {
        name  = "AutoScalingGroupName"
        value = local.asg_name
      }
    }
    target_value = var.connections_target
  }
}

# ---------------------------------------------------------------------------
# Instance role: least privilege
# ---------------------------------------------------------------------------

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "this" {
  name_prefix        = "${var.name}-node-"
  description        = "Switchboard nodes: read their secrets, write logs and metrics, SSM access, complete the drain hook, report their health"
  assume_role_policy = data.aws_iam_policy_document.assume.json
}

# Session Manager instead of SSH.
resource "aws_iam_role_policy_attachment" "ssm" {
  role       = aws_iam_role.this.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

data "aws_iam_policy_document" "node" {
  statement {
    sid       = "ReadRedisAuthToken"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [var.redis_secret_arn]
  }

  statement {
    sid       = "DecryptRedisAuthToken"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${var.region}.amazonaws.com"]
    }
  }

  dynamic "statement" {
    for_each = length(var.server_secrets) > 0 ? [values(var.server_secrets)] : []
    content {
      sid       = "ReadServerSecrets"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = statement.value
    }
  }

  statement {
    sid = "WriteServerLogs"
    actions = [
      "logs:CreateLogStream",
      "logs:PutLogEvents",
      "logs:DescribeLogStreams",
    ]
    resources = [aws_cloudwatch_log_group.server.arn, "${aws_cloudwatch_log_group.server.arn}:*"]
  }

  statement {
    sid     = "CompleteDrainHookAndReportHealth"
    actions = ["autoscaling:CompleteLifecycleAction", "autoscaling:SetInstanceHealth"]
    # By name: the group's ARN contains a generated id.
    resources = ["arn:${data.aws_partition.current.partition}:autoscaling:${var.region}:${data.aws_caller_identity.current.account_id}:autoScalingGroup:*:autoScalingGroupName/${local.asg_name}"]
  }
}

# PutMetricData has no resource-level permissions: "*" restricted to the
# stack's own namespace.
data "aws_iam_policy_document" "metrics" {
  #checkov:skip=CKV_AWS_356:cloudwatch:PutMetricData supports no resource ARNs; the statement is limited to the stack's namespace by the cloudwatch:namespace condition.
  statement {
    sid       = "PublishMetrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = [var.metrics_namespace]
    }
  }
}

resource "aws_iam_role_policy" "metrics" {
  name   = "switchboard-metrics"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.metrics.json
}

resource "aws_iam_role_policy" "node" {
  name   = "switchboard-node"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.node.json
}

resource "aws_iam_instance_profile" "this" {
  name_prefix = "${var.name}-node-"
  role        = aws_iam_role.this.name
}
