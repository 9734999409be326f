locals {
  multi_node = var.num_nodes > 1
  major      = split(".", var.engine_version)[0]
  # Parameter group families are per engine and major version: valkey8, redis7.
  family = "${var.engine}${local.major}"
}

# The auth token: generated here, stored in Secrets Manager, read by the nodes
# at start. ElastiCache allows 16-128 printable characters without / " @ and
# spaces; letters and digits also keep it safe inside a rediss:// URL.
resource "random_password" "auth_token" {
  length  = 64
  special = false
}

resource "aws_secretsmanager_secret" "auth_token" {
  #checkov:skip=CKV2_AWS_57:Rotating an ElastiCache auth token needs a rotation Lambda that also updates the replication group (ROTATE strategy); rotate by tainting random_password.auth_token and applying, which rolls the nodes.
  name_prefix             = "${var.name}/redis-auth-token-"
  description             = "Auth token of the ${var.name} Redis replication group"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "auth_token" {
  secret_id     = aws_secretsmanager_secret.auth_token.id
  secret_string = random_password.auth_token.result
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
  replication_group_id = "${var.name}-redis"
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
  auth_token                 = random_password.auth_token.result
  auth_token_update_strategy = "ROTATE"

  snapshot_retention_limit   = var.snapshot_retention_days
  snapshot_window            = var.snapshot_window
  maintenance_window         = var.maintenance_window
  auto_minor_version_upgrade = true
  apply_immediately          = false

  log_delivery_configuration {
    destination      = aws_cloudwatch_log_group.slow_log.name
    destination_type = "cloudwatch-logs"
    log_format       = "json"
    log_type         = "slow-log"
  }

  tags = { Name = "${var.name}-redis" }
}
