locals {
  multi_node = var.num_nodes > 1
  major      = split(".", var.engine_version)[0]
  # Parameter group families are per engine and major version: valkey8, redis7.
  family = "${var.engine}${local.major}"
  # Also the prefix of the member cluster ids (-001, -002, ...), which the
  # monitoring module needs at plan time.
  replication_group_id = "${var.name}-redis"
}

# The auth token: generated here, stored in Secrets Manager, read by the nodes
# at each start. ElastiCache allows 16-128 printable characters without
# / " @ and spaces; hex digits also keep it safe inside a rediss:// URL.
# Two random UUIDs (crypto/rand in Terraform's uuid()) make 64 hex digits,
# 244 random bits. uuid() changes on every run, so the value is taken once,
# when this resource is created, and kept: ignore_changes. Rotate it by
# replacing this resource (see the README, "Rotating the Redis auth token").
# Built in to Terraform: no extra provider to download.
resource "terraform_data" "auth_token" {
  input = replace("${uuid()}${uuid()}", "-", "")

  lifecycle {
    ignore_changes = [input]
  }
}

locals {
  auth_token = sensitive(terraform_data.auth_token.output)
}

resource "aws_secretsmanager_secret" "auth_token" {
  #checkov:skip=CKV2_AWS_57:Secrets Manager rotation would need a Lambda that also changes the replication group's token; rotation is a Terraform apply that replaces terraform_data.auth_token (ElastiCache then accepts both tokens) and rolls the nodes onto the new one, see the README.
  name_prefix             = "${var.name}/redis-auth-token-"
  description             = "Auth token of the ${var.name} Redis replication group"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = 7
}

# Written only after the replication group has taken the token: a node that
# starts in between must still find a token Redis accepts.
resource "aws_secretsmanager_secret_version" "auth_token" {
  secret_id     = aws_secretsmanager_secret.auth_token.id
  secret_string = local.auth_token

  depends_on = [aws_elasticache_replication_group.this]
}

resource "aws_security_group" "this" {
  name_prefix = "${var.name}-redis-"
  description = "Switchboard Redis: port ${var.port} from the nodes only"
  vpc_id      = var.vpc_id

  tags = { Name = "${var.name}-redis" }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "from_clients" {
  security_group_id            = aws_security_group.this.id
  description                  = "Redis from the Switchboard nodes"
  ip_protocol                  = "tcp"
  from_port                    = var.port
  to_port                      = var.port
  referenced_security_group_id = var.client_security_group_id
}

resource "aws_vpc_security_group_egress_rule" "clients_to_redis" {
  security_group_id            = var.client_security_group_id
  description                  = "Switchboard nodes to Redis"
  ip_protocol                  = "tcp"
  from_port                    = var.port
  to_port                      = var.port
  referenced_security_group_id = aws_security_group.this.id
}

resource "aws_elasticache_subnet_group" "this" {
  name        = "${var.name}-redis"
  description = "Private subnets of the ${var.name} Redis replication group"
  subnet_ids  = var.subnet_ids
}

resource "aws_elasticache_parameter_group" "this" {
  name        = "${var.name}-${var.engine}${replace(var.engine_version, ".", "-")}"
  family      = local.family
  description = "Switchboard settings for ${var.engine} ${var.engine_version}"

  # Never close idle client connections: the nodes hold long-lived
  # subscriptions that can be quiet for a long time.
  parameter {
    name  = "timeout"
    value = "0"
  }

  # Detect dead peers (for example after a failover) within about a minute.
  parameter {
    name  = "tcp-keepalive"
    value = "60"
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_cloudwatch_log_group" "slow_log" {
  name              = "/${var.name}/redis/slow-log"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

resource "aws_elasticache_replication_group" "this" {
  replication_group_id = local.replication_group_id
  description          = "Switchboard shared state (${var.name})"

  engine               = var.engine
  engine_version       = var.engine_version
  node_type            = var.node_type
  port                 = var.port
  num_cache_clusters   = var.num_nodes
  parameter_group_name = aws_elasticache_parameter_group.this.name
  subnet_group_name    = aws_elasticache_subnet_group.this.name
  security_group_ids   = [aws_security_group.this.id]

  automatic_failover_enabled = local.multi_node
  multi_az_enabled           = local.multi_node

  at_rest_encryption_enabled = true
  kms_key_id                 = var.kms_key_arn
  transit_encryption_enabled = true
  transit_encryption_mode    = "required"
  auth_token                 = local.auth_token
  # A new token is added beside the old one, so nodes that still use the old
  # one keep working until the instance refresh has replaced them.
  auth_token_update_strategy = "ROTATE"

  snapshot_retention_limit   = var.snapshot_retention_days
  snapshot_window            = var.snapshot_window
  maintenance_window         = var.maintenance_window
  auto_minor_version_upgrade = true
  # false: changes that restart or reconfigure nodes wait for the maintenance
  # window. A token rotation needs true (see the README).
  apply_immediately = var.apply_immediately

  log_delivery_configuration {
    destination      = aws_cloudwatch_log_group.slow_log.name
    destination_type = "cloudwatch-logs"
    log_format       = "json"
    log_type         = "slow-log"
  }

  tags = { Name = "${var.name}-redis" }
}
