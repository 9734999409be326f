variable "install_method" {
  description = "container (Docker, image `image`) or binary (release tarball from binary_url)."
  type        = string

  validation {
    condition     = contains(["container", "binary"], var.install_method)
    error_message = "install_method must be \"container\" or \"binary\"."
  }
}

variable "image" {
  description = "Container image with its tag, for install_method = container."
  type        = string
}

variable "binary_url" {
  description = "URL of the release tarball, for install_method = binary. Without binary_sha256 its checksum is read from binary_url + \".sha256\" (the release publishes one per tarball)."
  type        = string
}

variable "binary_sha256" {
  description = "Expected SHA-256 of the tarball; null reads it from binary_url + \".sha256\". Either way a tarball that does not match is never installed."
  type        = string
  default     = null

  validation {
    condition     = var.binary_sha256 == null || can(regex("^[0-9a-f]{64}$", var.binary_sha256))
    error_message = "binary_sha256 must be 64 lowercase hexadecimal characters."
  }
}

variable "environment" {
  description = "Non-secret environment variables of the server (single-line values)."
  type        = map(string)

  validation {
    condition     = alltrue([for k, v in var.environment : can(regex("^[A-Za-z_][A-Za-z0-9_]*$", k)) && !strcontains(v, "\n")])
    error_message = "environment keys must be environment variable names and values must be single lines."
  }
}

variable "server_secrets" {
  description = "Secret environment variables: NAME = Secrets Manager secret ARN, read at each start."
  type        = map(string)
  default     = {}
}

variable "region" {
  description = "AWS region of the Secrets Manager, Auto Scaling and CloudWatch calls."
  type        = string
}

variable "port" {
  description = "Port the server listens on (probed on 127.0.0.1 by the liveness watcher and the metrics publisher)."
  type        = number
}

variable "redis_host" {
  description = "Redis primary endpoint."
  type        = string
}

variable "redis_port" {
  description = "Redis port."
  type        = number
}

variable "redis_secret_arn" {
  description = "Secrets Manager secret holding the Redis auth token."
  type        = string
}

variable "auth_token_version" {
  description = "Version id of the auth token secret. Written into the user data so that a rotated token makes a new launch template version, which rolls the nodes."
  type        = string
  default     = ""
}

variable "stop_timeout" {
  description = "Seconds systemd (or docker stop) gives the server to drain before killing it."
  type        = number
}

variable "asg_name" {
  description = "Name of the Auto Scaling group (drain hook, health reports, metric dimension)."
  type        = string
}

variable "hook_name" {
  description = "Name of the termination lifecycle hook the drain watcher completes."
  type        = string
}

variable "log_group" {
  description = "CloudWatch log group of the server logs."
  type        = string
}

variable "metrics_namespace" {
  description = "CloudWatch namespace the metrics publisher writes to."
  type        = string
  default     = "Switchboard"
}

variable "liveness_interval" {
  description = "Seconds between two liveness probes (GET /health on the node)."
  type        = number
  default     = 10
}

variable "liveness_failures" {
  description = "Failed liveness probes in a row after which the instance reports itself unhealthy."
  type        = number
  default     = 6
}
