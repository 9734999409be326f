variable "name" {
  description = "Name prefix of the Auto Scaling group and its companions."
  type        = string
}

variable "region" {
  description = "AWS region; passed to the server as SERVER_REGION."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets the instances are launched in."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 1
    error_message = "subnet_ids needs at least one subnet (two or more to survive a zone outage)."
  }
}

variable "security_group_id" {
  description = "Security group of the instances (rules to and from the load balancer and Redis are added by those modules)."
  type        = string
}

variable "associate_public_ip" {
  description = "Give instances a public IP. Off by default: they sit in private subnets behind the load balancer and are reached through SSM."
  type        = bool
  default     = false
}

variable "target_group_arn" {
  description = "Target group the instances register with."
  type        = string
}

variable "refresh_rollback_alarms" {
  description = "CloudWatch alarm names that stop and roll back an instance refresh when they go off (the load balancer's unhealthy targets alarm, from the monitoring module). Empty: the refresh watches nothing but EC2 health."
  type        = list(string)
  default     = []
}

variable "install_method" {
  description = "container (Docker, image container_image:server_version) or binary (release tarball)."
  type        = string
  default     = "binary"

  validation {
    condition     = contains(["container", "binary"], var.install_method)
    error_message = "install_method must be \"container\" or \"binary\"."
  }
}

variable "server_version" {
  description = "Server release, for example 1.2.0."
  type        = string
}

variable "container_image" {
  description = "Container image repository (tag = server_version)."
  type        = string
  default     = "ghcr.io/switchboard-dev/switchboard"
}

variable "binary_url" {
  description = "Release tarball URL; null derives the GitHub release URL from server_version and architecture."
  type        = string
  default     = null
}

variable "binary_sha256" {
  description = "Expected SHA-256 of the release tarball; null makes instances read it from the .sha256 file published beside the tarball. A mismatch is never installed."
  type        = string
  default     = null

  validation {
    condition     = var.binary_sha256 == null || can(regex("^[0-9a-f]{64}$", var.binary_sha256))
    error_message = "binary_sha256 must be 64 lowercase hexadecimal characters."
  }
}

variable "ami_id" {
  description = "Image of the instances (Amazon Linux 2023 for architecture). Changing it rolls every instance; set either this or ami_ssm_parameter."
  type        = string
  default     = null

  validation {
    condition     = var.ami_id == null || can(regex("^ami-[0-9a-f]{8,17}$", var.ami_id))
    error_message = "ami_id must look like ami-0123456789abcdef0."
  }

  validation {
    condition     = (var.ami_id == null) != (var.ami_ssm_parameter == null)
    error_message = "Set exactly one of ami_id and ami_ssm_parameter."
  }
}

variable "ami_ssm_parameter" {
  description = "SSM parameter holding the image id, resolved by EC2 at each launch (the launch template keeps the parameter name, so a new value rolls nothing by itself)."
  type        = string
  default     = null

  validation {
    condition     = var.ami_ssm_parameter == null || can(regex("^/[A-Za-z0-9_./-]+$", var.ami_ssm_parameter))
    error_message = "ami_ssm_parameter must be an SSM parameter name starting with /, for example /myteam/switchboard/ami."
  }
}

variable "architecture" {
  description = "arm64 or x86_64."
  type        = string
  default     = "arm64"

  validation {
    condition     = contains(["arm64", "x86_64"], var.architecture)
    error_message = "architecture must be \"arm64\" or \"x86_64\"."
  }
}

variable "instance_type" {
  description = "EC2 instance type."
  type        = string
  default     = "t4g.small"
}

variable "root_volume_size" {
  description = "Root volume size in GiB."
  type        = number
  default     = 20
}

variable "ebs_kms_key_arn" {
  description = "Customer-managed KMS key for the root volume; null uses the AWS-managed aws/ebs key. A customer key's policy must let the AWSServiceRoleForAutoScaling role use it, or launches fail."
  type        = string
  default     = null
}

variable "server_port" {
  description = "Port the server listens on."
  type        = number
  default     = 8080
}

variable "drain_timeout" {
  description = "DRAIN_TIMEOUT_SECS of the server."
  type        = number
  default     = 15
}

variable "ping_interval" {
  description = "PING_INTERVAL_SECS of the server."
  type        = number
  default     = 25
}

variable "server_idle_timeout" {
  description = "IDLE_TIMEOUT_SECS of the server."
  type        = number
  default     = 60
}

variable "max_connections" {
  description = "MAX_CONNECTIONS of the server: WebSocket connections one instance accepts before refusing upgrades with 503."
  type        = number
  default     = 10000
}

variable "log_level" {
  description = "RUST_LOG of the server."
  type        = string
  default     = "info"
}

variable "server_environment" {
  description = "Extra (non-secret) environment variables of the server."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k, v in var.server_environment : can(regex("^[A-Z_][A-Z0-9_]*$", k)) && !strcontains(v, "\n")])
    error_message = "server_environment keys must be upper-case environment variable names and values must be single lines."
  }
}

variable "server_secrets" {
  description = "Secret environment variables: NAME = Secrets Manager secret ARN. Fetched at each start, never in user data."
  type        = map(string)
  default     = {}
}

variable "redis_host" {
  description = "Redis primary endpoint."
  type        = string
}

variable "redis_port" {
  description = "Redis port."
  type        = number
  default     = 6379
}

variable "redis_secret_arn" {
  description = "Secrets Manager secret holding the Redis auth token; the instances may read this secret only."
  type        = string
}

variable "redis_auth_token_version" {
  description = "Version id of the Redis auth token secret; a new one (a rotation) rolls the instances onto the new token."
  type        = string
  default     = ""
}

variable "kms_key_arn" {
  description = "KMS key of the Redis secret and of the log group."
  type        = string
}

variable "min_size" {
  description = "Minimum number of instances."
  type        = number
  default     = 1
}

variable "max_size" {
  description = "Maximum number of instances."
  type        = number
  default     = 5
}

variable "desired_capacity" {
  description = "Initial number of instances."
  type        = number
  default     = 2

  validation {
    condition     = var.desired_capacity >= var.min_size && var.desired_capacity <= var.max_size
    error_message = "desired_capacity must be between min_size and max_size."
  }
}

variable "cpu_target" {
  description = "Target average CPU utilisation in percent."
  type        = number
  default     = 60
}

variable "connections_target" {
  description = "Target average of open WebSocket connections per instance for scaling."
  type        = number
  default     = 5000

  validation {
    condition     = var.connections_target >= 1
    error_message = "connections_target must be a positive number."
  }
}

variable "metrics_namespace" {
  description = "CloudWatch namespace the nodes publish their metrics to (and the instance role may write)."
  type        = string
  default     = "Switchboard"
}

variable "health_check_grace_period" {
  description = "Seconds after launch before health checks count (install and first start)."
  type        = number
  default     = 180
}

variable "log_retention_days" {
  description = "Retention of the server log group."
  type        = number
  default     = 365
}
