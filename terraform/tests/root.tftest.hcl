# The whole stack (root configuration and all modules) against a mocked AWS
# provider: it plans and applies, the modules are wired to each other (the
# metrics the nodes publish are the ones scaling, alarms and dashboard read;
# the refresh rolls back on an alarm that exists), the outputs are what
# operators need, and the root variables reject inconsistent settings at
# plan time with clear errors.

mock_provider "aws" {
  # Data sources are read during plan and the provider validates what flows
  # from them (policy JSON, zone names, AMI id): give them realistic values.
  mock_data "aws_iam_policy_document" {
    defaults = {
      json          = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
      minified_json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
    }
  }

  mock_data "aws_availability_zones" {
    defaults = {
      names    = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
      zone_ids = ["euw1-az1", "euw1-az2", "euw1-az3"]
    }
  }

  mock_data "aws_ami" {
    defaults = {
      id               = "ami-0123456789abcdef0"
      architecture     = "arm64"
      root_device_name = "/dev/xvda"
    }
  }

  mock_data "aws_ec2_instance_type" {
    defaults = {
      supported_architectures = ["arm64"]
    }
  }

  mock_data "aws_partition" {
    defaults = {
      partition  = "aws"
      dns_suffix = "amazonaws.com"
    }
  }

  mock_data "aws_caller_identity" {
    defaults = {
      account_id = "123456789012"
      arn        = "arn:aws:iam::123456789012:user/test"
      user_id    = "AIDATESTTESTTESTTEST"
    }
  }

  mock_data "aws_default_tags" {
    defaults = {
      tags = {
        Project   = "switchboard"
        ManagedBy = "terraform"
      }
    }
  }

  # Resources created by the apply runs: the provider validates the ARNs and
  # ids that flow from them into other resources, so they must look real.
  mock_resource "aws_kms_key" {
    defaults = {
      arn    = "arn:aws:kms:eu-west-1:123456789012:key/01234567-89ab-cdef-0123-456789abcdef"
      key_id = "01234567-89ab-cdef-0123-456789abcdef"
    }
  }

  mock_resource "aws_vpc" {
    defaults = {
      id  = "vpc-0fedcba9876543210"
      arn = "arn:aws:ec2:eu-west-1:123456789012:vpc/vpc-0fedcba9876543210"
    }
  }

  mock_resource "aws_security_group" {
    defaults = {
      id  = "sg-0fedcba9876543210"
      arn = "arn:aws:ec2:eu-west-1:123456789012:security-group/sg-0fedcba9876543210"
    }
  }

  mock_resource "aws_cloudwatch_log_group" {
    defaults = {
      arn = "arn:aws:logs:eu-west-1:123456789012:log-group:/switchboard/server"
    }
  }

  mock_resource "aws_iam_role" {
    defaults = {
      arn = "arn:aws:iam::123456789012:role/switchboard-node-20250101000000000000000001"
    }
  }

  mock_resource "aws_iam_instance_profile" {
    defaults = {
      arn = "arn:aws:iam::123456789012:instance-profile/switchboard-node-20250101000000000000000001"
    }
  }

  mock_resource "aws_lb" {
    defaults = {
      arn        = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/switchboard-alb/0123456789abcdef"
      arn_suffix = "app/switchboard-alb/0123456789abcdef"
      dns_name   = "switchboard-alb-1234567890.eu-west-1.elb.amazonaws.com"
      zone_id    = "Z32O12XQLNTSW2"
    }
  }

  mock_resource "aws_lb_target_group" {
    defaults = {
      arn        = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/switchboard-nodes/0123456789abcdef"
      arn_suffix = "targetgroup/switchboard-nodes/0123456789abcdef"
    }
  }

  mock_resource "aws_lb_listener" {
    defaults = {
      arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/switchboard-alb/0123456789abcdef/0123456789abcdef"
    }
  }

  mock_resource "aws_cloudwatch_metric_alarm" {
    defaults = {
      arn = "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:switchboard-alarm"
    }
  }

  mock_resource "aws_sns_topic" {
    defaults = {
      arn = "arn:aws:sns:eu-west-1:123456789012:switchboard-alarms"
    }
  }

  mock_resource "aws_secretsmanager_secret" {
    defaults = {
      id  = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:switchboard/redis-auth-token-AbCdEf"
      arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:switchboard/redis-auth-token-AbCdEf"
    }
  }

  mock_resource "aws_elasticache_replication_group" {
    defaults = {
      primary_endpoint_address = "master.switchboard-redis.abcdef.euw1.cache.amazonaws.com"
      reader_endpoint_address  = "replica.switchboard-redis.abcdef.euw1.cache.amazonaws.com"
    }
  }

  mock_resource "aws_launch_template" {
    defaults = {
      id             = "lt-0123456789abcdef0"
      arn            = "arn:aws:ec2:eu-west-1:123456789012:launch-template/lt-0123456789abcdef0"
      latest_version = 1
    }
  }
}

variables {
  region          = "eu-west-1"
  server_version  = "1.2.3"
  ami_id          = "ami-0123456789abcdef0"
  certificate_arn = "arn:aws:acm:eu-west-1:123456789012:certificate/01234567-89ab-cdef-0123-456789abcdef"
}

run "full_stack" {
  command = apply

  assert {
    condition     = startswith(output.websocket_url, "wss://") && endswith(output.websocket_url, "/ws")
    error_message = "Clients connect over wss:// to /ws."
  }

  assert {
    condition     = output.asg_name == "switchboard-nodes"
    error_message = "The Auto Scaling group name output must be set."
  }

  assert {
    condition     = output.redis_endpoint == "master.switchboard-redis.abcdef.euw1.cache.amazonaws.com"
    error_message = "redis_endpoint must be the replication group's primary endpoint."
  }

  assert {
    condition     = output.alb_dns_name == "switchboard-alb-1234567890.eu-west-1.elb.amazonaws.com"
    error_message = "alb_dns_name must be the load balancer's DNS name."
  }

  assert {
    condition     = output.websocket_url == "wss://switchboard-alb-1234567890.eu-west-1.elb.amazonaws.com/ws"
    error_message = "Without domain_name, websocket_url uses the load balancer's DNS name."
  }

  assert {
    condition     = output.vpc_id == "vpc-0fedcba9876543210"
    error_message = "Without vpc_id the created VPC is used."
  }

  assert {
    condition     = aws_kms_key.this.enable_key_rotation == true
    error_message = "The stack's KMS key must rotate."
  }

  assert {
    condition     = aws_security_group.nodes.vpc_id == output.vpc_id
    error_message = "The nodes' security group must be in the stack's VPC."
  }

  assert {
    condition = (
      output.target_group_arn == module.alb.target_group_arn
      && output.alb_security_group_id == module.alb.security_group_id
      && output.redis_security_group_id == module.elasticache.security_group_id
      && output.instance_role_name == module.asg.iam_role_name
      && startswith(output.instance_role_arn, "arn:aws:iam::")
      && strcontains(output.dashboard_url, "#dashboards/dashboard/switchboard")
    )
    error_message = "The stack must output its target group, security groups, instance role and dashboard."
  }
}

run "modules_are_wired_together" {
  command = apply

  # What the nodes publish is what scaling and the alarms read.
  assert {
    condition = (
      strcontains(module.asg.user_data, "ASG_NAME='${output.asg_name}'")
      && strcontains(module.asg.user_data, "METRICS_NAMESPACE='Switchboard'")
      && module.monitoring.alarm_names[2] == "switchboard-redis-unreachable"
    )
    error_message = "The nodes must publish under the group name and namespace the monitoring reads."
  }

  assert {
    condition     = module.asg.units["switchboard.service"] != "" && strcontains(module.asg.user_data, "REDIS_HOST='master.switchboard-redis.abcdef.euw1.cache.amazonaws.com'")
    error_message = "The nodes must connect to the replication group's primary endpoint."
  }

  assert {
    condition     = contains(module.monitoring.alarm_names, "switchboard-unhealthy-targets") && contains(module.monitoring.alarm_names, "switchboard-redis-memory-switchboard-redis-002")
    error_message = "Alarms must cover the target group and every Redis node."
  }

  assert {
    condition     = strcontains(module.asg.user_data, "# Redis auth token version: ${module.elasticache.auth_token_version}")
    error_message = "The user data must change with the auth token's secret version, so a rotation rolls the nodes."
  }

  assert {
    condition     = strcontains(module.asg.user_data, "MAX_CONNECTIONS=\"10000\"")
    error_message = "The server must get the max_connections the connections alarm is computed from."
  }
}

run "domain_name_in_url" {
  command = apply

  variables {
    domain_name = "signal.example.com"
  }

  assert {
    condition     = output.websocket_url == "wss://signal.example.com/ws"
    error_message = "websocket_url must use domain_name when it is set."
  }
}

run "http_only_for_development" {
  command = apply

  variables {
    allow_http_only = true
    certificate_arn = null
    domain_name     = "dev.example.com"
  }

  assert {
    condition     = output.websocket_url == "ws://dev.example.com/ws"
    error_message = "An HTTP-only setup serves ws://."
  }
}

run "existing_vpc" {
  command = plan

  variables {
    vpc_id             = "vpc-0123456789abcdef0"
    public_subnet_ids  = ["subnet-0123456789abcdef1", "subnet-0123456789abcdef2"]
    private_subnet_ids = ["subnet-0123456789abcdef3", "subnet-0123456789abcdef4"]
  }

  assert {
    condition     = output.vpc_id == "vpc-0123456789abcdef0"
    error_message = "A given VPC is used as is."
  }

  assert {
    condition     = aws_security_group.nodes.vpc_id == "vpc-0123456789abcdef0"
    error_message = "The nodes' security group must be in the given VPC."
  }
}

run "existing_vpc_needs_subnets" {
  command = plan

  variables {
    vpc_id = "vpc-0123456789abcdef0"
  }

  expect_failures = [var.public_subnet_ids, var.private_subnet_ids]
}

run "certificate_required" {
  command = plan

  variables {
    certificate_arn = null
  }

  expect_failures = [var.certificate_arn]
}

run "rejects_deregistration_delay_below_drain_timeout" {
  command = plan

  variables {
    drain_timeout        = 60
    deregistration_delay = 30
  }

  expect_failures = [var.deregistration_delay]
}

run "rejects_idle_timeout_below_ping_interval" {
  command = plan

  variables {
    idle_timeout = 40
  }

  expect_failures = [var.idle_timeout]
}

run "rejects_desired_capacity_out_of_range" {
  command = plan

  variables {
    desired_capacity = 6
  }

  expect_failures = [var.desired_capacity]
}

run "rejects_two_image_inputs" {
  command = plan

  variables {
    ami_ssm_parameter = "/switchboard/ami"
  }

  expect_failures = [var.ami_id]
}

run "rejects_no_image" {
  command = plan

  variables {
    ami_id = null
  }

  expect_failures = [var.ami_id]
}

run "rejects_connections_target_at_max" {
  command = plan

  variables {
    max_connections    = 1000
    connections_target = 1000
  }

  expect_failures = [var.connections_target]
}

run "rejects_redis_8" {
  command = plan

  variables {
    redis_engine         = "redis"
    redis_engine_version = "8.0"
  }

  expect_failures = [var.redis_engine_version]
}

run "rejects_max_connections_in_server_environment" {
  command = plan

  variables {
    server_environment = { MAX_CONNECTIONS = "5" }
  }

  expect_failures = [var.server_environment]
}
