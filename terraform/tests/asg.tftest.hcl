# Auto Scaling group module against a mocked AWS provider: launch template
# hardening, user data, scaling, rolling refresh, drain hook and the
# instance role.

mock_provider "aws" {
  # Data sources are read during plan; the provider validates the policy JSON
  # and the AMI id that flow from them, so give them realistic values.
  mock_data "aws_iam_policy_document" {
    defaults = {
      json          = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
      minified_json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
    }
  }

  mock_data "aws_ami" {
    defaults = {
      id               = "ami-0123456789abcdef0"
      root_device_name = "/dev/xvda"
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
        Project   = "sb-test"
        ManagedBy = "terraform"
      }
    }
  }

  # Runs that apply create these; the provider validates the ARNs that flow
  # from them into other resources, so the mocked values must look real.
  mock_resource "aws_iam_role" {
    defaults = {
      arn = "arn:aws:iam::123456789012:role/sb-test-node-20250101000000000000000001"
    }
  }

  mock_resource "aws_iam_instance_profile" {
    defaults = {
      arn = "arn:aws:iam::123456789012:instance-profile/sb-test-node-20250101000000000000000001"
    }
  }

  mock_resource "aws_cloudwatch_log_group" {
    defaults = {
      arn = "arn:aws:logs:eu-west-1:123456789012:log-group:/sb-test/server"
    }
  }

  mock_resource "aws_launch_template" {
    defaults = {
      id             = "lt-0123456789abcdef0"
      arn            = "arn:aws:ec2:eu-west-1:123456789012:launch-template/lt-0123456789abcdef0"
      latest_version = 1
    }
  }

  mock_resource "aws_autoscaling_group" {
    defaults = {
      arn = "arn:aws:autoscaling:eu-west-1:123456789012:autoScalingGroup:01234567-89ab-cdef-0123-456789abcdef:autoScalingGroupName/sb-test-nodes"
    }
  }
}

variables {
  name                    = "sb-test"
  region                  = "eu-west-1"
  subnet_ids              = ["subnet-0123456789abcdef1", "subnet-0123456789abcdef2"]
  security_group_id       = "sg-0123456789abcdef0"
  target_group_arn        = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/sb-test-nodes/0123456789abcdef"
  alb_request_count_label = "app/sb-test-alb/0123456789abcdef/targetgroup/sb-test-nodes/0123456789abcdef"
  server_version          = "1.2.3"
  redis_host              = "master.sb-test-redis.abcdef.euw1.cache.amazonaws.com"
  redis_secret_arn        = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:sb-test/redis-auth-token-AbCdEf"
  kms_key_arn             = "arn:aws:kms:eu-west-1:123456789012:key/01234567-89ab-cdef-0123-456789abcdef"
}

run "launch_template_hardening" {
  command = plan

  module {
    source = "./modules/asg"
  }

  assert {
    condition     = aws_launch_template.this.metadata_options[0].http_tokens == "required"
    error_message = "IMDSv2 must be required."
  }

  assert {
    condition     = aws_launch_template.this.metadata_options[0].http_put_response_hop_limit == 1
    error_message = "The metadata hop limit must be 1."
  }

  assert {
    condition     = aws_launch_template.this.block_device_mappings[0].ebs[0].encrypted == "true"
    error_message = "The root volume must be encrypted."
  }

  assert {
    condition     = aws_launch_template.this.block_device_mappings[0].device_name == "/dev/xvda"
    error_message = "The encrypted volume must be the AMI's root device."
  }

  assert {
    condition     = aws_launch_template.this.network_interfaces[0].associate_public_ip_address == "false"
    error_message = "Instances must not get a public IP by default."
  }

  assert {
    condition     = aws_launch_template.this.image_id == "ami-0123456789abcdef0"
    error_message = "The launch template must use the looked-up Amazon Linux image."
  }

  assert {
    condition     = data.aws_ami.al2023.most_recent == true && contains(data.aws_ami.al2023.owners, "amazon")
    error_message = "The image must be the most recent one published by Amazon."
  }
}

run "user_data_binary" {
  command = plan

  module {
    source = "./modules/asg"
  }

  assert {
    condition     = strcontains(base64decode(aws_launch_template.this.user_data), "REDIS_URL=rediss://:%s@%s:%s")
    error_message = "REDIS_URL must use TLS (rediss://) and carry the auth token."
  }

  assert {
    condition     = strcontains(base64decode(aws_launch_template.this.user_data), "--secret-id 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:sb-test/redis-auth-token-AbCdEf'")
    error_message = "The auth token must be read from its Secrets Manager secret."
  }

  assert {
    condition     = strcontains(base64decode(aws_launch_template.this.user_data), "SERVER_REGION=eu-west-1")
    error_message = "The server must get SERVER_REGION."
  }

  assert {
    condition     = strcontains(base64decode(aws_launch_template.this.user_data), "DRAIN_TIMEOUT_SECS=15")
    error_message = "The server must get the drain timeout the load balancer is configured for."
  }

  assert {
    condition     = strcontains(base64decode(aws_launch_template.this.user_data), "/releases/download/v1.2.3/switchboard-1.2.3-aarch64-unknown-linux-musl.tar.gz")
    error_message = "The binary install must download the release for the instance architecture."
  }

  assert {
    condition     = strcontains(base64decode(aws_launch_template.this.user_data), "StandardOutput=journal")
    error_message = "The service must log to journald."
  }

  assert {
    condition     = !strcontains(base64decode(aws_launch_template.this.user_data), "docker run")
    error_message = "The binary install must not run a container."
  }
}

run "user_data_container" {
  command = plan

  module {
    source = "./modules/asg"
  }

  variables {
    install_method = "container"
    architecture   = "x86_64"
    instance_type  = "t3.small"
  }

  assert {
    condition     = strcontains(base64decode(aws_launch_template.this.user_data), "ghcr.io/switchboard-dev/switchboard:1.2.3")
    error_message = "The container install must run the image tagged with server_version."
  }

  assert {
    condition     = strcontains(base64decode(aws_launch_template.this.user_data), "--log-driver journald")
    error_message = "The container must log to journald."
  }
}

run "server_secrets_stay_out_of_user_data" {
  command = apply

  module {
    source = "./modules/asg"
  }

  variables {
    server_secrets = {
      JWT_SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:sb-test/jwt-AbCdEf"
    }
  }

  assert {
    condition     = strcontains(base64decode(aws_launch_template.this.user_data), "printf '%s=%s\\n' 'JWT_SECRET' \"$(secret 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:sb-test/jwt-AbCdEf')\"")
    error_message = "Secret environment variables must be fetched from Secrets Manager at start."
  }

  assert {
    condition = anytrue([
      for s in data.aws_iam_policy_document.node.statement :
      contains(s.actions, "secretsmanager:GetSecretValue") && contains(s.resources, "arn:aws:secretsmanager:eu-west-1:123456789012:secret:sb-test/jwt-AbCdEf")
    ])
    error_message = "The instances may read the secrets given in server_secrets."
  }
}

run "group_scaling_and_refresh" {
  command = plan

  module {
    source = "./modules/asg"
  }

  assert {
    condition = (
      aws_autoscaling_group.this.min_size == 1
      && aws_autoscaling_group.this.max_size == 5
      && aws_autoscaling_group.this.desired_capacity == 2
    )
    error_message = "min/max/desired must default to 1/5/2."
  }

  assert {
    condition     = aws_autoscaling_group.this.health_check_type == "ELB"
    error_message = "The group must use the load balancer's health checks."
  }

  assert {
    condition     = aws_autoscaling_group.this.instance_refresh[0].strategy == "Rolling"
    error_message = "New launch template versions must roll out through an instance refresh."
  }

  assert {
    condition     = contains(aws_autoscaling_group.this.target_group_arns, var.target_group_arn)
    error_message = "Instances must register with the target group."
  }

  assert {
    condition     = aws_autoscaling_lifecycle_hook.drain.lifecycle_transition == "autoscaling:EC2_INSTANCE_TERMINATING"
    error_message = "A terminating lifecycle hook must let instances drain."
  }

  assert {
    condition     = aws_autoscaling_lifecycle_hook.drain.heartbeat_timeout > var.drain_timeout
    error_message = "The drain hook must wait longer than the server's drain timeout."
  }

  assert {
    condition     = aws_autoscaling_policy.cpu.target_tracking_configuration[0].predefined_metric_specification[0].predefined_metric_type == "ASGAverageCPUUtilization"
    error_message = "There must be a CPU target tracking policy."
  }

  assert {
    condition     = aws_autoscaling_policy.requests.target_tracking_configuration[0].predefined_metric_specification[0].predefined_metric_type == "ALBRequestCountPerTarget"
    error_message = "There must be an ALB request count target tracking policy."
  }

  assert {
    condition     = aws_autoscaling_policy.requests.target_tracking_configuration[0].predefined_metric_specification[0].resource_label == var.alb_request_count_label
    error_message = "The request count policy must watch this load balancer's target group."
  }
}

run "instance_role_least_privilege" {
  # The policy refers to the log group's ARN, known once the mock applies it.
  command = apply

  module {
    source = "./modules/asg"
  }

  assert {
    condition     = alltrue([for s in data.aws_iam_policy_document.node.statement : !contains(s.resources, "*")])
    error_message = "The instance policy must not grant anything on all resources."
  }

  assert {
    condition = anytrue([
      for s in data.aws_iam_policy_document.node.statement :
      contains(s.actions, "secretsmanager:GetSecretValue") && length(s.resources) == 1 && contains(s.resources, var.redis_secret_arn)
    ])
    error_message = "The instances may read their Redis secret, and only that one."
  }

  assert {
    condition     = aws_iam_role_policy_attachment.ssm.policy_arn == "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
    error_message = "Instances must be reachable through SSM Session Manager."
  }
}

run "rejects_desired_above_max" {
  command = plan

  module {
    source = "./modules/asg"
  }

  variables {
    desired_capacity = 9
  }

  expect_failures = [var.desired_capacity]
}
