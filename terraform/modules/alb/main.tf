locals {
  # AWS allows 6 characters; "sb-" for names that do not start with 5 usable ones.
  target_group_prefix = "${substr(replace(var.name, "-", ""), 0, min(5, length(replace(var.name, "-", ""))))}-"

  listener_ports = var.enable_https ? [80, 443] : [80]
  ingress = {
    for pair in setproduct(local.listener_ports, var.allowed_ingress_cidrs) :
    "${pair[0]}-${pair[1]}" => { port = pair[0], cidr = pair[1] }
  }
}

resource "aws_security_group" "this" {
  name_prefix = "${var.name}-alb-"
  description = "Switchboard load balancer: listener ports from clients, server port to the nodes"
  vpc_id      = var.vpc_id

  tags = { Name = "${var.name}-alb" }

  lifecycle {
    create_before_destroy = true
  }
}

# The only rules open to the internet: the listener ports (80 only redirects
# to 443 unless enable_https is false).
resource "aws_vpc_security_group_ingress_rule" "listener" {
  for_each = local.ingress

  security_group_id = aws_security_group.this.id
  description       = "Clients to listener port ${each.value.port}"
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
  cidr_ipv4         = each.value.cidr
}

resource "aws_vpc_security_group_egress_rule" "to_targets" {
  security_group_id            = aws_security_group.this.id
  description                  = "Load balancer to the server port of the nodes"
  ip_protocol                  = "tcp"
  from_port                    = var.target_port
  to_port                      = var.target_port
  referenced_security_group_id = var.target_security_group_id
}

resource "aws_vpc_security_group_ingress_rule" "targets_from_alb" {
  security_group_id            = var.target_security_group_id
  description                  = "Server port from the load balancer only"
  ip_protocol                  = "tcp"
  from_port                    = var.target_port
  to_port                      = var.target_port
  referenced_security_group_id = aws_security_group.this.id
}

resource "aws_lb" "this" {
  #checkov:skip=CKV2_AWS_20:Port 80 always redirects to HTTPS (aws_lb_listener.http_redirect) unless the user explicitly sets allow_http_only for a development setup; the scanner sees both listener variants.
  #checkov:skip=CKV2_AWS_76:WAF is optional (waf_web_acl_arn) and its rules are the user's web ACL; the Log4j rule set is also irrelevant to this Rust server.
  name               = "${var.name}-alb"
  load_balancer_type = "application"
  internal           = var.internal
  subnets            = var.subnet_ids
  security_groups    = [aws_security_group.this.id]

  # WebSockets: the server pings every ping_interval seconds, so this only
  # ends connections that are really dead.
  idle_timeout               = var.idle_timeout
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection
  enable_http2               = true
  desync_mitigation_mode     = "defensive"

  dynamic "access_logs" {
    for_each = var.access_logs_bucket == null ? [] : [var.access_logs_bucket]
    content {
      bucket  = access_logs.value
      prefix  = var.access_logs_prefix
      enabled = true
    }
  }

  tags = { Name = "${var.name}-alb" }
}

# Nodes inside the VPC that scrape /metrics (a Prometheus server, say) reach
# the server port directly; the load balancer does not serve /metrics.
resource "aws_vpc_security_group_ingress_rule" "targets_from_scrapers" {
  for_each = toset(var.metrics_source_security_group_ids)

  security_group_id            = var.target_security_group_id
  description                  = "Server port (metrics) from a scraper inside the VPC"
  ip_protocol                  = "tcp"
  from_port                    = var.target_port
  to_port                      = var.target_port
  referenced_security_group_id = each.value
}

resource "aws_lb_target_group" "this" {
  #checkov:skip=CKV_AWS_378:TLS ends at the load balancer; targets are in private subnets and admit only the load balancer's security group. The server has no TLS listener of its own.
  # A generated name (AWS allows a 6-character prefix): a change that
  # replaces the group (port, protocol, VPC) creates the new one first, moves
  # the listener rules and the Auto Scaling group to it, then deletes the old
  # one. A fixed name would collide with itself. The Name tag carries the
  # readable name.
  name_prefix = local.target_group_prefix
  vpc_id      = var.vpc_id
  target_type = "instance"
  protocol    = "HTTP"
  port        = var.target_port

  # Longer than the server's drain: a stopping node tells its clients to
  # reconnect before the load balancer drops what is left.
  deregistration_delay = var.deregistration_delay

  # Keeps a client's reconnects (and its resumed session) on one node.
  stickiness {
    type            = "lb_cookie"
    enabled         = true
    cookie_duration = var.stickiness_duration
  }

  health_check {
    enabled             = true
    protocol            = "HTTP"
    port                = "traffic-port"
    path                = var.health_check_path
    matcher             = "200"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = { Name = "${var.name}-nodes" }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_lb_listener" "https" {
  count = var.enable_https ? 1 : 0

  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = var.ssl_policy
  certificate_arn   = var.certificate_arn

  # Only public_paths reach the nodes (listener rule below); /metrics,
  # /status, /ready and everything else end here.
  default_action {
    type = "fixed-response"
    fixed_response {
      content_type = "text/plain"
      message_body = "not found"
      status_code  = "404"
    }
  }
}

resource "aws_lb_listener" "http_redirect" {
  count = var.enable_https ? 1 : 0

  load_balancer_arn = aws_lb.this.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type = "redirect"
    redirect {
      protocol    = "HTTPS"
      port        = "443"
      status_code = "HTTP_301"
    }
  }
}

# Development only (enable_https = false): plain HTTP and ws:// on port 80.
resource "aws_lb_listener" "http_forward" {
  #checkov:skip=CKV_AWS_2:Created only when the user explicitly disables HTTPS for a development setup (allow_http_only); production uses the HTTPS listener.
  #checkov:skip=CKV_AWS_103:Created only when the user explicitly disables HTTPS for a development setup (allow_http_only); there is no TLS to configure.
  count = var.enable_https ? 0 : 1

  load_balancer_arn = aws_lb.this.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type = "fixed-response"
    fixed_response {
      content_type = "text/plain"
      message_body = "not found"
      status_code  = "404"
    }
  }
}

# The one way in to the nodes: the listener that serves clients (HTTPS, or
# plain HTTP in development) forwards public_paths and nothing else.
resource "aws_lb_listener_rule" "public" {
  listener_arn = var.enable_https ? aws_lb_listener.https[0].arn : aws_lb_listener.http_forward[0].arn
  priority     = 10

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.this.arn
  }

  condition {
    path_pattern {
      values = var.public_paths
    }
  }
}

resource "aws_wafv2_web_acl_association" "this" {
  count = var.waf_web_acl_arn == null ? 0 : 1

  resource_arn = aws_lb.this.arn
  web_acl_arn  = var.waf_web_acl_arn
}
