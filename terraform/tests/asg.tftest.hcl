# Auto Scaling group module against a mocked AWS provider, asserting planned
# and applied values: the pinned image and the plan-time architecture checks,
# health checks that survive a Redis outage, scaling on connections, the
# units the user data installs, and the instance role. The user data itself
# is executed in a sandbox by tests/bootstrap/.

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
  target_group_arn        = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/sbtes-20250101/0123456789abcdef"
  refresh_rollback_alarms = ["sb-test-unhealthy-targets"]
  server_version          = "1.2.3"
  ami_id                  = "ami-0123456789abcdef0"
  redis_host              = "master.sb-test-redis.abcdef.euw1.cache.amazonaws.com"
  redis_secret_arn        = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:sb-test/redis-auth-token-AbCdEf"
  kms_key_arn             = "arn:aws:kms:eu-west-1:123456789012:key/01234567-89ab-cdef-0123-456789abcdef"
}

run "launch_template_pins_the_image" {
  command = plan

  module {
    source = "./modules/asg"
  }

  assert {
    condition     = aws_launch_template.this.image_id == "ami-0123456789abcdef0"
    error_message = "The launch template must use the given ami_id, nothing looked up at plan time."
  }

  assert {
    condition     = aws_launch_template.this.block_device_mappings[0].device_name == "/dev/xvda" && aws_launch_template.this.block_device_mappings[0].ebs[0].encrypted == "true"
    error_message = "The encrypted volume must be the image's root device."
  }

  assert {
    condition = (
      aws_launch_template.this.metadata_options[0].http_tokens == "required"
      && aws_launch_template.this.metadata_options[0].http_put_response_hop_limit == 1
      && aws_launch_template.this.network_interfaces[0].associate_public_ip_address == "false"
    )
    error_message = "IMDSv2 only, hop limit 1, no public IP."
  }

  assert {
    condition     = aws_launch_template.this.network_interfaces[0].security_groups == toset([var.security_group_id])
    error_message = "Every node must be in the nodes' security group (and only that one)."
  }
}

run "image_from_an_ssm_parameter" {
  command = plan

  module {
    source = "./modules/asg"
  }

  variables {
    ami_id            = null
    ami_ssm_parameter = "/sb-test/ami"
  }

  assert {
    condition     = aws_launch_template.this.image_id == "resolve:ssm:/sb-test/ami" && aws_launch_template.this.block_device_mappings[0].device_name == "/dev/xvda"
    error_message = "With ami_ssm_parameter the launch template names the parameter (EC2 resolves it at launch), so a new value does not change the template."
  }

  assert {
    condition     = length(data.aws_ami.node) == 0
    error_message = "No image lookup without ami_id."
  }
}

run "rejects_both_image_inputs" {
  command = plan

  module {
    source = "./modules/asg"
  }

  variables {
    ami_ssm_parameter = "/sb-test/ami"
  }

  expect_failures = [var.ami_id]
}

run "rejects_an_instance_type_of_the_other_architecture" {
  command = plan

  module {
    source = "./modules/asg"
  }

  variables {
    instance_type = "t3.small"
  }

  override_data {
    target = data.aws_ec2_instance_type.node
    values = {
      supported_architectures = ["x86_64", "i386"]
    }
  }

  expect_failures = [data.aws_ec2_instance_type.node]
}

run "rejects_an_image_of_the_other_architecture" {
  command = plan

  module {
    source = "./modules/asg"
  }

  override_data {
    target = data.aws_ami.node[0]
    values = {
      architecture     = "x86_64"
      root_device_name = "/dev/xvda"
    }
  }

  expect_failures = [data.aws_ami.node[0]]
}

run "redis_outage_replaces_nothing" {
  command = plan

  module {
    source = "./modules/asg"
  }

  # The load balancer's /ready check turns 503 in a Redis outage. With ELB
  # health checks the group would terminate every node for it.
  assert {
    condition     = aws_autoscaling_group.this.health_check_type == "EC2"
    error_message = "The group must not replace nodes on the load balancer's readiness check; liveness comes from the node's own /health watcher."
  }

  assert {
    condition     = strcontains(output.units["switchboard-liveness.service"], "ExecStart=/usr/local/libexec/switchboard/liveness-watch") && strcontains(output.user_data, "LIVENESS_FAILURES='6'")
    error_message = "Every node must run the liveness watcher (6 failed /health probes in a row report it unhealthy)."
  }

  assert {
    condition     = contains(aws_autoscaling_group.this.target_group_arns, var.target_group_arn)
    error_message = "Instances must register with the target group (routing stays on /ready)."
  }

  assert {
    condition = (
      aws_autoscaling_group.this.instance_refresh[0].strategy == "Rolling"
      && aws_autoscaling_group.this.instance_refresh[0].preferences[0].auto_rollback == true
      && aws_autoscaling_group.this.instance_refresh[0].preferences[0].alarm_specification[0].alarms == var.refresh_rollback_alarms
    )
    error_message = "A refresh must roll back when the unhealthy targets alarm goes off: the group's own health check no longer sees /ready."
  }
}

run "scaling_on_connections_and_cpu" {
  command = apply

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
    condition = (
      aws_autoscaling_policy.connections.target_tracking_configuration[0].customized_metric_specification[0].namespace == "Switchboard"
      && aws_autoscaling_policy.connections.target_tracking_configuration[0].customized_metric_specification[0].metric_name == "Connections"
      && aws_autoscaling_policy.connections.target_tracking_configuration[0].customized_metric_specification[0].statistic == "Average"
      && aws_autoscaling_policy.connections.target_tracking_configuration[0].target_value == 5000
    )
    error_message = "The group must track the average WebSocket connections per node (Switchboard/Connections), 5000 by default."
  }

  assert {
    condition = anytrue([
      for d in aws_autoscaling_policy.connections.target_tracking_configuration[0].customized_metric_specification[0].metric_dimension :
      d.name == "AutoScalingGroupName" && d.value == aws_autoscaling_group.this.name
    ])
    error_message = "The connections policy must read this group's metric (dimension AutoScalingGroupName)."
  }

  assert {
    condition     = strcontains(output.user_data, "ASG_NAME='${aws_autoscaling_group.this.name}'") && strcontains(output.user_data, "METRICS_NAMESPACE='Switchboard'")
    error_message = "The nodes must publish under the namespace and group name the policy reads."
  }

  assert {
    condition     = aws_autoscaling_policy.cpu.target_tracking_configuration[0].predefined_metric_specification[0].predefined_metric_type == "ASGAverageCPUUtilization"
    error_message = "There must be a CPU target tracking policy besides the connections one."
  }

  assert {
    condition     = aws_autoscaling_lifecycle_hook.drain.lifecycle_transition == "autoscaling:EC2_INSTANCE_TERMINATING" && aws_autoscaling_lifecycle_hook.drain.heartbeat_timeout > var.drain_timeout
    error_message = "A terminating lifecycle hook must give nodes longer than the drain timeout."
  }
}

run "unit_contents_binary" {
  command = plan

  module {
    source = "./modules/asg"
  }

  # Defect 1: without the "-" systemd fails ExecStartPre on first boot, before
  # the script that writes the file has run.
  assert {
    condition     = strcontains(output.units["switchboard.service"], "\nEnvironmentFile=-/run/switchboard-secrets/secrets.env\n")
    error_message = "The secrets file is written by ExecStartPre: switchboard.service must read it with a '-' prefix."
  }

  assert {
    condition     = strcontains(output.units["switchboard.service"], "\nExecStartPre=+/usr/local/libexec/switchboard/secrets-env\n") && strcontains(output.units["switchboard.service"], "\nDynamicUser=yes\n")
    error_message = "Secrets are read as root before every start; the server runs as a dynamic user."
  }

  assert {
    condition     = strcontains(output.units["switchboard.service"], "\nTimeoutStopSec=25\n") && strcontains(output.units["switchboard.service"], "\nStartLimitIntervalSec=0\n")
    error_message = "systemd must give the server its drain timeout plus 10 s to stop, and keep retrying a failed start."
  }

  assert {
    condition     = strcontains(output.user_data, "/releases/download/v1.2.3/switchboard-1.2.3-aarch64-unknown-linux-musl.tar.gz.sha256")
    error_message = "Without binary_sha256 the install must verify against the .sha256 the release publishes, for the instance architecture."
  }

  assert {
    condition     = length(aws_launch_template.this.user_data) <= 21848
    error_message = "The compressed user data must fit the 16 KiB EC2 accepts (21848 characters of base64)."
  }
}

run "unit_contents_container" {
  command = plan

  module {
    source = "./modules/asg"
  }

  variables {
    install_method = "container"
  }

  assert {
    condition     = strcontains(output.units["switchboard.service"], "ghcr.io/switchboard-dev/switchboard:1.2.3") && strcontains(output.units["switchboard.service"], "--env-file /run/switchboard-secrets/secrets.docker.env")
    error_message = "The container unit must run the image tagged server_version with the secrets docker reads at ExecStart."
  }

  assert {
    condition     = !strcontains(output.units["switchboard.service"], "EnvironmentFile=") && strcontains(output.units["switchboard.service"], "--log-driver journald")
    error_message = "The container unit passes the environment through docker and logs to journald."
  }
}

run "instance_role_least_privilege" {
  # The policy refers to the log group's ARN, known once the mock applies it.
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
    condition     = alltrue([for s in data.aws_iam_policy_document.node.statement : !contains(s.resources, "*")])
    error_message = "The instance policy must not grant anything on all resources."
  }

  assert {
    condition = anytrue([
      for s in data.aws_iam_policy_document.node.statement :
      contains(s.actions, "secretsmanager:GetSecretValue") && length(s.resources) == 1 && contains(s.resources, var.redis_secret_arn)
    ])
    error_message = "The instances may read their Redis secret, and only that one, in that statement."
  }

  assert {
    condition = anytrue([
      for s in data.aws_iam_policy_document.node.statement :
      contains(s.actions, "secretsmanager:GetSecretValue") && contains(s.resources, var.server_secrets.JWT_SECRET)
    ])
    error_message = "The instances may read the secrets given in server_secrets."
  }

  assert {
    condition = anytrue([
      for s in data.aws_iam_policy_document.node.statement :
      contains(s.actions, "autoscaling:SetInstanceHealth") && alltrue([for r in s.resources : endswith(r, ":autoScalingGroupName/sb-test-nodes")])
    ])
    error_message = "The liveness watcher may report health to its own group only."
  }

  assert {
    condition = anytrue([
      for s in data.aws_iam_policy_document.metrics.statement :
      s.actions == toset(["cloudwatch:PutMetricData"]) && anytrue([for c in s.condition : c.variable == "cloudwatch:namespace" && c.values == tolist(["Switchboard"])])
    ])
    error_message = "The nodes may publish metrics to their namespace only."
  }

  assert {
    condition     = aws_iam_role_policy_attachment.ssm.policy_arn == "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
    error_message = "Instances must be reachable through SSM Session Manager."
  }

  assert {
    condition     = strcontains(output.user_data, "SERVER_SECRETS='JWT_SECRET=arn:aws:secretsmanager:eu-west-1:123456789012:secret:sb-test/jwt-AbCdEf'")
    error_message = "Secrets reach the user data as ARNs only (SERVER_SECRETS), read at start."
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
