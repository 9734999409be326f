# ElastiCache module against a mocked AWS provider: encryption, the auth
# token (generated without any provider but aws) in Secrets Manager, failover
# rules, parameters, engine/version checks, apply_immediately and the
# security group.

mock_provider "aws" {
  # Runs that apply create these; the provider validates what flows from them
  # into other resources, so the mocked values must look real.
  mock_resource "aws_security_group" {
    defaults = {
      id  = "sg-0fedcba9876543210"
      arn = "arn:aws:ec2:eu-west-1:123456789012:security-group/sg-0fedcba9876543210"
    }
  }

  mock_resource "aws_secretsmanager_secret" {
    defaults = {
      id  = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:sb-test/redis-auth-token-AbCdEf"
      arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:sb-test/redis-auth-token-AbCdEf"
    }
  }

  mock_resource "aws_cloudwatch_log_group" {
    defaults = {
      arn = "arn:aws:logs:eu-west-1:123456789012:log-group:/sb-test/redis/slow-log"
    }
  }
}

variables {
  name                     = "sb-test"
  vpc_id                   = "vpc-0123456789abcdef0"
  subnet_ids               = ["subnet-0123456789abcdef1", "subnet-0123456789abcdef2"]
  client_security_group_id = "sg-0123456789abcdef0"
  kms_key_arn              = "arn:aws:kms:eu-west-1:123456789012:key/01234567-89ab-cdef-0123-456789abcdef"
}

run "encryption_and_failover" {
  command = plan

  module {
    source = "./modules/elasticache"
  }

  assert {
    condition     = aws_elasticache_replication_group.this.transit_encryption_enabled == true
    error_message = "Transit encryption must be enabled."
  }

  assert {
    condition     = aws_elasticache_replication_group.this.transit_encryption_mode == "required"
    error_message = "Transit encryption must be required, not merely preferred."
  }

  assert {
    # A string in provider 5.x, a bool in 6.x.
    condition     = tostring(aws_elasticache_replication_group.this.at_rest_encryption_enabled) == "true"
    error_message = "At-rest encryption must be enabled."
  }

  assert {
    condition     = aws_elasticache_replication_group.this.kms_key_id == var.kms_key_arn
    error_message = "Data at rest must be encrypted with the stack's KMS key."
  }

  assert {
    condition = (
      aws_elasticache_replication_group.this.num_cache_clusters == 2
      && aws_elasticache_replication_group.this.automatic_failover_enabled == true
      && aws_elasticache_replication_group.this.multi_az_enabled == true
    )
    error_message = "Two nodes by default, with automatic failover and Multi-AZ."
  }

  assert {
    condition     = aws_elasticache_replication_group.this.snapshot_retention_limit >= 1
    error_message = "Snapshots must be retained."
  }

  assert {
    condition     = aws_elasticache_replication_group.this.engine == "valkey" && aws_elasticache_parameter_group.this.family == "valkey8"
    error_message = "Valkey 8 with its parameter group family by default."
  }

  assert {
    condition     = anytrue([for p in aws_elasticache_parameter_group.this.parameter : p.name == "timeout" && p.value == "0"])
    error_message = "The parameter group must set timeout 0."
  }

  assert {
    condition     = anytrue([for p in aws_elasticache_parameter_group.this.parameter : p.name == "tcp-keepalive" && p.value == "60"])
    error_message = "The parameter group must set tcp-keepalive 60."
  }

  assert {
    condition     = aws_secretsmanager_secret.auth_token.kms_key_id == var.kms_key_arn
    error_message = "The auth token secret must be encrypted with the stack's KMS key."
  }

  assert {
    condition     = aws_elasticache_replication_group.this.apply_immediately == false
    error_message = "By default changes wait for the maintenance window."
  }

  assert {
    condition     = output.member_clusters == ["sb-test-redis-001", "sb-test-redis-002"]
    error_message = "The member cluster ids (CloudWatch dimension) must be known at plan time: <group id>-001, -002."
  }
}

run "auth_token_and_security_group" {
  # The token and the security group id are known once the mocks apply.
  command = apply

  module {
    source = "./modules/elasticache"
  }

  assert {
    condition     = can(regex("^[0-9a-f]{64}$", nonsensitive(terraform_data.auth_token.output)))
    error_message = "The auth token must be 64 hex digits: long, and safe inside a rediss:// URL."
  }

  assert {
    condition     = aws_elasticache_replication_group.this.auth_token == terraform_data.auth_token.output && aws_elasticache_replication_group.this.auth_token_update_strategy == "ROTATE"
    error_message = "Redis must use the generated auth token, and a new one must be added beside the old one (ROTATE)."
  }

  assert {
    condition     = aws_secretsmanager_secret_version.auth_token.secret_string == terraform_data.auth_token.output
    error_message = "The generated auth token must be stored in Secrets Manager."
  }

  assert {
    condition     = contains(aws_elasticache_replication_group.this.security_group_ids, aws_security_group.this.id)
    error_message = "Redis must use its own security group."
  }

  assert {
    condition = (
      aws_vpc_security_group_ingress_rule.from_clients.security_group_id == aws_security_group.this.id
      && aws_vpc_security_group_ingress_rule.from_clients.referenced_security_group_id == var.client_security_group_id
      && aws_vpc_security_group_ingress_rule.from_clients.cidr_ipv4 == null
      && aws_vpc_security_group_ingress_rule.from_clients.from_port == 6379
      && aws_vpc_security_group_ingress_rule.from_clients.to_port == 6379
    )
    error_message = "Redis must admit port 6379 from the instances' security group only."
  }
}

run "single_node_has_no_failover" {
  command = plan

  module {
    source = "./modules/elasticache"
  }

  variables {
    num_nodes = 1
  }

  assert {
    condition     = aws_elasticache_replication_group.this.automatic_failover_enabled == false && aws_elasticache_replication_group.this.multi_az_enabled == false
    error_message = "A single node cannot fail over."
  }
}

run "redis_engine" {
  command = plan

  module {
    source = "./modules/elasticache"
  }

  variables {
    engine         = "redis"
    engine_version = "7.1"
  }

  assert {
    condition     = aws_elasticache_parameter_group.this.family == "redis7"
    error_message = "Redis 7 uses the redis7 parameter group family."
  }
}

run "token_survives_the_next_plan" {
  # uuid() yields a new value on every run; the token must not follow it, or
  # every apply would rotate it. Planned after the apply above: a token
  # planned for replacement would be unknown here and fail the assertion.
  command = plan

  module {
    source = "./modules/elasticache"
  }

  assert {
    condition     = nonsensitive(terraform_data.auth_token.output == aws_secretsmanager_secret_version.auth_token.secret_string) && length(nonsensitive(terraform_data.auth_token.output)) == 64
    error_message = "The next plan must keep the auth token (no replacement, no new secret version)."
  }
}

run "apply_immediately_for_rotations" {
  command = plan

  module {
    source = "./modules/elasticache"
  }

  variables {
    apply_immediately = true
  }

  assert {
    condition     = aws_elasticache_replication_group.this.apply_immediately == true
    error_message = "apply_immediately must reach the replication group."
  }
}

run "rejects_a_version_the_engine_does_not_have" {
  command = plan

  module {
    source = "./modules/elasticache"
  }

  variables {
    engine         = "redis"
    engine_version = "8.0"
  }

  expect_failures = [var.engine_version]
}

run "rejects_valkey_6" {
  command = plan

  module {
    source = "./modules/elasticache"
  }

  variables {
    engine_version = "6.2"
  }

  expect_failures = [var.engine_version]
}

run "rejects_zero_snapshot_retention" {
  command = plan

  module {
    source = "./modules/elasticache"
  }

  variables {
    snapshot_retention_days = 0
  }

  expect_failures = [var.snapshot_retention_days]
}
