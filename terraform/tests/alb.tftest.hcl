# Load balancer module against a mocked AWS provider: stickiness, readiness
# health check, drain-friendly timeouts, listeners and security group rules.

mock_provider "aws" {
  # Runs that apply create these; the provider validates the ARNs that flow
  # from them into other resources, so the mocked values must look real.
  mock_resource "aws_lb" {
    defaults = {
      arn        = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/sb-test-alb/0123456789abcdef"
      arn_suffix = "app/sb-test-alb/0123456789abcdef"
      dns_name   = "sb-test-alb-1234567890.eu-west-1.elb.amazonaws.com"
      zone_id    = "Z32O12XQLNTSW2"
    }
  }

  mock_resource "aws_lb_target_group" {
    defaults = {
      arn        = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/sb-test-nodes/0123456789abcdef"
      arn_suffix = "targetgroup/sb-test-nodes/0123456789abcdef"
    }
  }

  mock_resource "aws_security_group" {
    defaults = {
      id  = "sg-0fedcba9876543210"
      arn = "arn:aws:ec2:eu-west-1:123456789012:security-group/sg-0fedcba9876543210"
    }
  }
}

variables {
  name                     = "sb-test"
  vpc_id                   = "vpc-0123456789abcdef0"
  subnet_ids               = ["subnet-0123456789abcdef1", "subnet-0123456789abcdef2"]
  target_security_group_id = "sg-0123456789abcdef0"
  certificate_arn          = "arn:aws:acm:eu-west-1:123456789012:certificate/01234567-89ab-cdef-0123-456789abcdef"
}

run "target_group_defaults" {
  command = plan

  module {
    source = "./modules/alb"
  }

  assert {
    condition     = aws_lb_target_group.this.stickiness[0].type == "lb_cookie"
    error_message = "Stickiness must use the load balancer cookie (lb_cookie)."
  }

  assert {
    condition     = aws_lb_target_group.this.stickiness[0].enabled == true
    error_message = "Stickiness must be enabled."
  }

  assert {
    condition     = aws_lb_target_group.this.stickiness[0].cookie_duration == 7200
    error_message = "Stickiness cookie must default to 7200 seconds."
  }

  assert {
    condition     = aws_lb_target_group.this.health_check[0].path == "/ready"
    error_message = "Health check must use the readiness endpoint /ready."
  }

  assert {
    condition     = aws_lb_target_group.this.health_check[0].matcher == "200"
    error_message = "Health check must expect 200, so a draining node (503) leaves rotation."
  }

  assert {
    condition     = tonumber(aws_lb_target_group.this.deregistration_delay) >= var.drain_timeout
    error_message = "Deregistration delay must not be shorter than the server's drain timeout."
  }

  assert {
    condition     = aws_lb_target_group.this.port == 8080 && aws_lb_target_group.this.protocol == "HTTP"
    error_message = "Targets are the server's HTTP port 8080."
  }
}

run "load_balancer_defaults" {
  command = plan

  module {
    source = "./modules/alb"
  }

  assert {
    condition     = aws_lb.this.idle_timeout >= 2 * var.ping_interval
    error_message = "Idle timeout must be well above the server's ping interval."
  }

  assert {
    condition     = aws_lb.this.drop_invalid_header_fields == true
    error_message = "The load balancer must drop invalid header fields."
  }

  assert {
    condition     = aws_lb.this.enable_deletion_protection == true
    error_message = "Deletion protection must be on by default."
  }

  assert {
    condition     = aws_lb_listener.https[0].protocol == "HTTPS" && aws_lb_listener.https[0].port == 443
    error_message = "There must be an HTTPS listener on 443."
  }

  assert {
    condition     = aws_lb_listener.https[0].certificate_arn == var.certificate_arn
    error_message = "The HTTPS listener must use the certificate variable."
  }

  assert {
    condition     = aws_lb_listener.http_redirect[0].default_action[0].redirect[0].protocol == "HTTPS"
    error_message = "Port 80 must redirect to HTTPS."
  }

  assert {
    condition     = length(aws_lb_listener.http_forward) == 0
    error_message = "No plain HTTP forwarding listener unless HTTPS is disabled."
  }
}

run "security_group_rules" {
  # Rules reference the security group's id, which the mock sets on apply.
  command = apply

  module {
    source = "./modules/alb"
  }

  assert {
    condition     = length(aws_vpc_security_group_ingress_rule.listener) == 2
    error_message = "Only the two listener ports are open to clients."
  }

  assert {
    condition = alltrue([
      for r in aws_vpc_security_group_ingress_rule.listener :
      contains([80, 443], r.from_port) && r.from_port == r.to_port && r.ip_protocol == "tcp"
    ])
    error_message = "Client ingress must be limited to TCP 80 and 443."
  }

  assert {
    condition = (
      aws_vpc_security_group_egress_rule.to_targets.referenced_security_group_id == var.target_security_group_id
      && aws_vpc_security_group_egress_rule.to_targets.from_port == 8080
      && aws_vpc_security_group_egress_rule.to_targets.cidr_ipv4 == null
    )
    error_message = "The load balancer may only send to the targets' security group on the server port."
  }

  assert {
    condition = (
      aws_vpc_security_group_ingress_rule.targets_from_alb.security_group_id == var.target_security_group_id
      && aws_vpc_security_group_ingress_rule.targets_from_alb.referenced_security_group_id == aws_security_group.this.id
      && aws_vpc_security_group_ingress_rule.targets_from_alb.cidr_ipv4 == null
    )
    error_message = "The targets must admit the server port from the load balancer's security group only."
  }
}

run "http_only_for_development" {
  command = plan

  module {
    source = "./modules/alb"
  }

  variables {
    enable_https    = false
    certificate_arn = null
  }

  assert {
    condition     = length(aws_lb_listener.https) == 0 && length(aws_lb_listener.http_redirect) == 0
    error_message = "Without HTTPS there is neither an HTTPS listener nor a redirect."
  }

  assert {
    condition     = aws_lb_listener.http_forward[0].default_action[0].type == "forward"
    error_message = "Without HTTPS, port 80 forwards to the targets."
  }
}

run "https_requires_certificate" {
  command = plan

  module {
    source = "./modules/alb"
  }

  variables {
    certificate_arn = null
  }

  expect_failures = [var.certificate_arn]
}

run "rejects_deregistration_delay_below_drain" {
  command = plan

  module {
    source = "./modules/alb"
  }

  variables {
    drain_timeout        = 30
    deregistration_delay = 20
  }

  expect_failures = [var.deregistration_delay]
}

run "rejects_idle_timeout_near_ping_interval" {
  command = plan

  module {
    source = "./modules/alb"
  }

  variables {
    idle_timeout = 30
  }

  expect_failures = [var.idle_timeout]
}
