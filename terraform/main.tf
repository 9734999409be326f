locals {
  tags = merge(var.tags, {
    Project   = var.name
    ManagedBy = "terraform"
  })

  create_network     = var.vpc_id == null
  vpc_id             = local.create_network ? module.network[0].vpc_id : var.vpc_id
  public_subnet_ids  = local.create_network ? module.network[0].public_subnet_ids : var.public_subnet_ids
  private_subnet_ids = local.create_network ? module.network[0].private_subnet_ids : var.private_subnet_ids

  https       = !var.allow_http_only
  public_host = coalesce(var.domain_name, module.alb.dns_name)

  # Named here, not read from module.asg: the monitoring module needs it, and
  # the group needs the monitoring module's alarm (instance refresh rollback).
  asg_name          = "${var.name}-nodes"
  metrics_namespace = "Switchboard"
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

module "network" {
  source = "./modules/network"
  count  = local.create_network ? 1 : 0

  name               = var.name
  cidr_block         = var.vpc_cidr
  az_count           = var.az_count
  single_nat_gateway = var.single_nat_gateway
  flow_log_retention = var.log_retention_days
  kms_key_arn        = aws_kms_key.this.arn
}

# One customer-managed key for everything this stack encrypts with KMS: the
# Redis auth token secret, Redis at rest, the CloudWatch log groups and the
# alarm topic.
resource "aws_kms_key" "this" {
  description             = "${var.name}: Redis auth token, Redis at rest, log groups, alarm topic"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.this.key_id
}

data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_111:This is a KMS key policy: its "*" resource means this key only, and the account-root statement is the standard delegation of key access to IAM.
  #checkov:skip=CKV_AWS_356:This is a KMS key policy: its "*" resource means this key only.
  #checkov:skip=CKV_AWS_109:This is a KMS key policy: the account-root statement delegates key management to the account's IAM policies, as AWS's default key policy does; without it the key becomes unmanageable.
  # The account administers the key through IAM, as with AWS-managed defaults.
  statement {
    sid       = "AccountAdministration"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }

  # CloudWatch Logs encrypts this stack's log groups with the key.
  statement {
    sid = "CloudWatchLogs"
    actions = [
      "kms:Encrypt*",
      "kms:Decrypt*",
      "kms:ReEncrypt*",
      "kms:GenerateDataKey*",
      "kms:Describe*",
    ]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${var.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${data.aws_partition.current.partition}:logs:${var.region}:${data.aws_caller_identity.current.account_id}:log-group:/${var.name}/*"]
    }
  }

  # CloudWatch alarms publish to the alarm topic, which this key encrypts.
  statement {
    sid       = "CloudWatchAlarmsToTopic"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

# The nodes' security group lives here because three modules add rules to it:
# the load balancer (ingress on the server port), Redis (egress to 6379) and the
# Auto Scaling group (egress to AWS APIs over HTTPS).
resource "aws_security_group" "nodes" {
  #checkov:skip=CKV2_AWS_5:Attached to every node by the launch template in modules/asg (network_interfaces, asserted by tests/asg.tftest.hcl); checkov loses the link when module.asg also takes an output of module.monitoring.
  name_prefix = "${var.name}-nodes-"
  description = "Switchboard nodes: traffic from the load balancer only"
  vpc_id      = local.vpc_id

  tags = { Name = "${var.name}-nodes" }

  lifecycle {
    create_before_destroy = true
  }
}

module "alb" {
  source = "./modules/alb"

  name                     = var.name
  vpc_id                   = local.vpc_id
  subnet_ids               = local.public_subnet_ids
  target_security_group_id = aws_security_group.nodes.id
  target_port              = var.server_port
  enable_https             = local.https
  certificate_arn          = var.certificate_arn
  ssl_policy               = var.ssl_policy
  allowed_ingress_cidrs    = var.allowed_ingress_cidrs
  public_paths             = var.public_paths
  stickiness_duration      = var.stickiness_duration
  deregistration_delay     = var.deregistration_delay
  drain_timeout            = var.drain_timeout
  idle_timeout             = var.idle_timeout
  ping_interval            = var.ping_interval
  deletion_protection      = var.deletion_protection
  access_logs_bucket       = var.access_logs_bucket
  access_logs_prefix       = var.access_logs_prefix
  waf_web_acl_arn          = var.waf_web_acl_arn

  metrics_source_security_group_ids = var.metrics_source_security_group_ids
}

module "elasticache" {
  source = "./modules/elasticache"

  name                     = var.name
  vpc_id                   = local.vpc_id
  subnet_ids               = local.private_subnet_ids
  client_security_group_id = aws_security_group.nodes.id
  engine                   = var.redis_engine
  engine_version           = var.redis_engine_version
  node_type                = var.redis_node_type
  num_nodes                = var.redis_nodes
  snapshot_retention_days  = var.redis_snapshot_retention_days
  kms_key_arn              = aws_kms_key.this.arn
  log_retention_days       = var.log_retention_days
  apply_immediately        = var.redis_apply_immediately
}

module "monitoring" {
  source = "./modules/monitoring"

  name                    = var.name
  region                  = var.region
  asg_name                = local.asg_name
  alb_arn_suffix          = module.alb.arn_suffix
  target_group_arn_suffix = module.alb.target_group_arn_suffix
  redis_cluster_ids       = module.elasticache.member_clusters
  metrics_namespace       = local.metrics_namespace
  max_connections         = var.max_connections
  alarm_topic_arn         = var.alarm_topic_arn
  alarm_emails            = var.alarm_emails
  kms_key_arn             = aws_kms_key.this.arn
}

module "asg" {
  source = "./modules/asg"

  name                    = var.name
  region                  = var.region
  subnet_ids              = local.private_subnet_ids
  security_group_id       = aws_security_group.nodes.id
  target_group_arn        = module.alb.target_group_arn
  refresh_rollback_alarms = [module.monitoring.unhealthy_targets_alarm_name]

  install_method    = var.install_method
  server_version    = var.server_version
  container_image   = var.container_image
  binary_url        = var.binary_url
  binary_sha256     = var.binary_sha256
  ami_id            = var.ami_id
  ami_ssm_parameter = var.ami_ssm_parameter
  architecture      = var.architecture
  instance_type     = var.instance_type
  root_volume_size  = var.root_volume_size

  server_port         = var.server_port
  drain_timeout       = var.drain_timeout
  ping_interval       = var.ping_interval
  server_idle_timeout = var.server_idle_timeout
  max_connections     = var.max_connections
  log_level           = var.log_level
  server_environment  = var.server_environment
  server_secrets      = var.server_secrets

  redis_host               = module.elasticache.primary_endpoint
  redis_port               = module.elasticache.port
  redis_secret_arn         = module.elasticache.auth_token_secret_arn
  redis_auth_token_version = module.elasticache.auth_token_version
  kms_key_arn              = aws_kms_key.this.arn

  min_size           = var.min_size
  max_size           = var.max_size
  desired_capacity   = var.desired_capacity
  cpu_target         = var.cpu_target
  connections_target = var.connections_target
  metrics_namespace  = local.metrics_namespace
  log_retention_days = var.log_retention_days
}
