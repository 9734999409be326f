# Load balancer module against a mocked AWS provider, asserting planned and
# applied values: stickiness, the readiness health check, which paths reach
# the nodes (and that nothing else does), drain-friendly timeouts, listeners
# and security group rules.

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
      arn        = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/sbtes-20250101/0123456789abcdef"
      arn_suffix = "targetgroup/sbtes-20250101/0123456789abcdef"
    }
  }

  mock_resource "aws_lb_listener" {
    defaults = {
      arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/sb-test-alb/0123456789abcdef/0123456789abcdef"
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
    condition = (
      aws_lb_target_group.this.stickiness[0].type == "lb_cookie"
      && aws_lb_target_group.this.stickiness[0].enabled == true
      && aws_lb_target_group.this.stickiness[0].cookie_duration == 7200
    )
    error_message = "Reconnects must stick to their node: lb_cookie stickiness, enabled, 7200 s by default."
  }

  assert {
    condition     = aws_lb_target_group.this.health_check[0].path == "/ready" && aws_lb_target_group.this.health_check[0].matcher == "200"
    error_message = "The load balancer routes on readiness: /ready, 200 only (503 while draining or without Redis takes a node out of rotation)."
  }

  assert {
    condition     = tonumber(aws_lb_target_group.this.deregistration_delay) >= var.drain_timeout
    error_message = "Deregistration delay must not be shorter than the server's drain timeout."
  }

  assert {
    condition     = aws_lb_target_group.this.port == 8080 && aws_lb_target_group.this.protocol == "HTTP"
    error_message = "Targets are the server's HTTP port 8080."
  }

  # Defect: a fixed name made every replacement (new port) fail with a name
  # conflict. A generated name lets the new group exist beside the old one.
  assert {
    condition     = aws_lb_target_group.this.name_prefix == "sbtes-" && length(aws_lb_target_group.this.name_prefix) <= 6
    error_message = "The target group must have a generated name (name_prefix of at most 6 characters), so a replacement can be created before the old group is destroyed."
  }
}

run "only_public_paths_reach_the_nodes" {
  # Listener ARNs (which the rule names) exist once the mock applies.
  command = apply

  module {
    source = "./modules/alb"
  }

  assert {
    condition = (
      aws_lb_listener.https[0].default_action[0].type == "fixed-response"
      && aws_lb_listener.https[0].default_action[0].fixed_response[0].status_code == "404"
    )
    error_message = "Requests for any other path (/metrics, /status, /ready) must end at the load balancer with a 404."
  }

  assert {
    condition     = aws_lb_listener_rule.public.listener_arn == aws_lb_listener.https[0].arn
    error_message = "The forwarding rule must sit on the HTTPS listener."
  }

  assert {
    condition     = toset(flatten([for c in aws_lb_listener_rule.public.condition : c.path_pattern[0].values])) == toset(["/ws", "/health"])
    error_message = "Only /ws and /health are forwarded by default."
  }

  assert {
    condition = (
      aws_lb_listener_rule.public.action[0].type == "forward"
      && aws_lb_listener_rule.public.action[0].target_group_arn == aws_lb_target_group.this.arn
    )
    error_message = "The public paths must be forwarded to the nodes' target group."
  }

  assert {
    condition     = aws_lb_listener.http_redirect[0].default_action[0].redirect[0].protocol == "HTTPS"
    error_message = "Port 80 must redirect to HTTPS."
  }

  assert {
    condition     = length(aws_lb_listener.http_forward) == 0
    error_message = "No plain HTTP forwarding listener unless HTTPS is disabled."
  }

  assert {
    condition     = length(aws_vpc_security_group_ingress_rule.listener) == 2 && alltrue([for r in aws_vpc_security_group_ingress_rule.listener : contains([80, 443], r.from_port) && r.from_port == r.to_port && r.ip_protocol == "tcp"])
    error_message = "Only the two listener ports are open to clients."
  }

  assert {
    condition = (
      aws_vpc_security_group_ingress_rule.targets_from_alb.security_group_id == var.target_security_group_id
      && aws_vpc_security_group_ingress_rule.targets_from_alb.referenced_security_group_id == aws_security_group.this.id
      && aws_vpc_security_group_ingress_rule.targets_from_alb.cidr_ipv4 == null
    )
    error_message = "The targets must admit the server port from the load balancer's security group only."
  }

  assert {
    condition     = length(aws_vpc_security_group_ingress_rule.targets_from_scrapers) == 0
    error_message = "Without metrics_source_security_group_ids nothing else reaches the server port."
  }
}

run "metrics_scrapers_inside_the_vpc" {
  command = apply

  module {
    source = "./modules/alb"
  }

  variables {
    metrics_source_security_group_ids = ["sg-0aaaaaaaaaaaaaaaa"]
  }

  assert {
    condition = (
      aws_vpc_security_group_ingress_rule.targets_from_scrapers["sg-0aaaaaaaaaaaaaaaa"].security_group_id == var.target_security_group_id
      && aws_vpc_security_group_ingress_rule.targets_from_scrapers["sg-0aaaaaaaaaaaaaaaa"].from_port == 8080
      && aws_vpc_security_group_ingress_rule.targets_from_scrapers["sg-0aaaaaaaaaaaaaaaa"].cidr_ipv4 == null
    )
    error_message = "A scraper's security group must reach the server port (and /metrics) directly, by security group, not by CIDR."
  }
}

run "http_only_for_development" {
  command = apply

  module {
    source = "./modules/alb"
  }

  variables {
    enable_https    = false
    certificate_arn = null
    public_paths    = ["/ws"]
  }

  assert {
    condition     = length(aws_lb_listener.https) == 0 && length(aws_lb_listener.http_redirect) == 0
    error_message = "Without HTTPS there is neither an HTTPS listener nor a redirect."
  }

  assert {
    condition = (
      aws_lb_listener_rule.public.listener_arn == aws_lb_listener.http_forward[0].arn
      && aws_lb_listener.http_forward[0].default_action[0].type == "fixed-response"
      && toset(flatten([for c in aws_lb_listener_rule.public.condition : c.path_pattern[0].values])) == toset(["/ws"])
    )
    error_message = "Without HTTPS, port 80 forwards public_paths only."
  }
}

run "public_paths_must_include_the_websocket" {
  command = plan

  module {
    source = "./modules/alb"
  }

  variables {
    public_paths = ["/health"]
  }

  expect_failures = [var.public_paths]
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
