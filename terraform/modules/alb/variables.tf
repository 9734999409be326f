variable "name" {
  description = "Name prefix of the load balancer, its target group and security group."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the load balancer and the targets."
  type        = string
}

variable "subnet_ids" {
  description = "Public subnets (at least two, in different zones) the load balancer is placed in."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "subnet_ids needs at least two subnets in different availability zones."
  }
}

variable "internal" {
  description = "Create an internal load balancer instead of an internet-facing one."
  type        = bool
  default     = false
}

variable "target_security_group_id" {
  description = "Security group of the targets: this module opens target_port on it to the load balancer only."
  type        = string
}

variable "target_port" {
  description = "Port the server listens on, on each target."
  type        = number
  default     = 8080
}

variable "health_check_path" {
  description = "Path of the target health check. The server's readiness endpoint answers 503 while draining or when Redis is unreachable."
  type        = string
  default     = "/ready"

  validation {
    condition     = startswith(var.health_check_path, "/")
    error_message = "health_check_path must start with a slash, for example /ready."
  }
}

variable "enable_https" {
  description = "Serve HTTPS on 443 with certificate_arn and redirect port 80 to it. false serves plain HTTP on port 80 (development only)."
  type        = bool
  default     = true
}

variable "certificate_arn" {
  description = "ACM certificate ARN of the HTTPS listener."
  type        = string
  default     = null

  validation {
    condition     = !var.enable_https || var.certificate_arn != null
    error_message = "certificate_arn is required when enable_https is true."
  }
}

variable "ssl_policy" {
  description = "TLS policy of the HTTPS listener."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"
}

variable "allowed_ingress_cidrs" {
  description = "IPv4 CIDR blocks allowed to reach the listener ports."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "stickiness_duration" {
  description = "Lifetime in seconds of the lb_cookie stickiness cookie."
  type        = number
  default     = 7200

  validation {
    condition     = var.stickiness_duration >= 1 && var.stickiness_duration <= 604800
    error_message = "stickiness_duration must be between 1 and 604800 seconds."
  }
}

variable "drain_timeout" {
  description = "The server's DRAIN_TIMEOUT_SECS, used to check deregistration_delay."
  type        = number
  default     = 15
}

variable "deregistration_delay" {
  description = "Seconds existing connections to a deregistered target are kept. At least drain_timeout."
  type        = number
  default     = 30

  validation {
    condition     = var.deregistration_delay >= var.drain_timeout && var.deregistration_delay <= 3600
    error_message = "deregistration_delay must be at least drain_timeout (the server's DRAIN_TIMEOUT_SECS) and at most 3600 seconds."
  }
}

variable "ping_interval" {
  description = "The server's PING_INTERVAL_SECS, used to check idle_timeout."
  type        = number
  default     = 25
}

variable "idle_timeout" {
  description = "Idle timeout of the load balancer in seconds; well above ping_interval so open WebSockets are never cut."
  type        = number
  default     = 300

  validation {
    condition     = var.idle_timeout >= 2 * var.ping_interval && var.idle_timeout <= 4000
    error_message = "idle_timeout must be at least twice ping_interval (the server's WebSocket ping interval) and at most 4000 seconds."
  }
}

variable "deletion_protection" {
  description = "Protect the load balancer from deletion."
  type        = bool
  default     = true
}

variable "access_logs_bucket" {
  description = "Existing S3 bucket for access logs; null disables them."
  type        = string
  default     = null
}

variable "access_logs_prefix" {
  description = "Key prefix of the access logs."
  type        = string
  default     = "switchboard-alb"
}

variable "waf_web_acl_arn" {
  description = "Regional WAFv2 web ACL to associate; null associates none."
  type        = string
  default     = null
}

variable "public_paths" {
  description = "Request paths the load balancer forwards to the nodes (ALB path patterns, * and ? wildcards). Everything else gets a 404 from the load balancer: /metrics, /status and /ready are for inside the VPC."
  type        = list(string)
  default     = ["/ws", "/health"]

  validation {
    condition     = length(var.public_paths) >= 1 && length(var.public_paths) <= 5 && alltrue([for p in var.public_paths : startswith(p, "/") && length(p) <= 128])
    error_message = "public_paths must hold 1 to 5 path patterns (the limit of one ALB rule condition), each starting with / and at most 128 characters."
  }

  validation {
    condition     = contains(var.public_paths, "/ws")
    error_message = "public_paths must contain /ws: it is the WebSocket endpoint clients connect to."
  }
}

variable "metrics_source_security_group_ids" {
  description = "Security groups inside the VPC (for example a Prometheus server's) allowed to reach the server port of the nodes directly, to scrape /metrics."
  type        = list(string)
  default     = []
}
