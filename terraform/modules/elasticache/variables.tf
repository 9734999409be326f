variable "name" {
  description = "Name prefix of the replication group and its companions."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the replication group."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets of the cache subnet group (one per zone used)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 1
    error_message = "subnet_ids needs at least one subnet (two or more for Multi-AZ)."
  }
}

variable "client_security_group_id" {
  description = "Security group of the clients (the nodes): the only source admitted to Redis."
  type        = string
}

variable "engine" {
  description = "valkey or redis."
  type        = string
  default     = "valkey"

  validation {
    condition     = contains(["valkey", "redis"], var.engine)
    error_message = "engine must be \"valkey\" or \"redis\"."
  }
}

variable "engine_version" {
  description = "Engine version, major.minor, 7.0 or later."
  type        = string
  default     = "8.0"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+$", var.engine_version)) && contains(lookup({ valkey = ["7", "8"], redis = ["7"] }, var.engine, []), split(".", var.engine_version)[0])
    error_message = "engine_version must be major.minor of a major version ElastiCache offers with a parameter group family for the engine: valkey 7.2, 8.0 or 8.1 (families valkey7, valkey8), or redis 7.0 or 7.1 (family redis7)."
  }
}

variable "node_type" {
  description = "ElastiCache node type."
  type        = string
  default     = "cache.t4g.small"
}

variable "num_nodes" {
  description = "Number of nodes (primary plus replicas). More than one enables automatic failover and Multi-AZ."
  type        = number
  default     = 2

  validation {
    condition     = var.num_nodes >= 1 && var.num_nodes <= 6
    error_message = "num_nodes must be between 1 and 6."
  }
}

variable "port" {
  description = "Redis port."
  type        = number
  default     = 6379
}

variable "snapshot_retention_days" {
  description = "Days of automatic snapshots to keep."
  type        = number
  default     = 7

  validation {
    condition     = var.snapshot_retention_days >= 1 && var.snapshot_retention_days <= 35
    error_message = "snapshot_retention_days must be between 1 and 35 (0 would turn backups off)."
  }
}

variable "snapshot_window" {
  description = "Daily UTC window for snapshots."
  type        = string
  default     = "03:00-04:00"
}

variable "maintenance_window" {
  description = "Weekly UTC maintenance window; must not overlap snapshot_window."
  type        = string
  default     = "sun:04:30-sun:05:30"
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key for data at rest, the auth token secret and the slow-log group."
  type        = string
}

variable "log_retention_days" {
  description = "Retention of the slow-log group."
  type        = number
  default     = 365
}

variable "apply_immediately" {
  description = "Apply changes to the replication group now instead of in the next maintenance window. Needed for an auth token rotation; engine or node type changes applied now restart nodes during the day."
  type        = bool
  default     = false
}
