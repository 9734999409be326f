variable "name" {
  description = "Name prefix of the dashboard, the alarms and the alarm topic."
  type        = string
}

variable "region" {
  description = "AWS region of the metrics (dashboard widgets name it)."
  type        = string
}

variable "asg_name" {
  description = "Name of the nodes' Auto Scaling group (dimension AutoScalingGroupName of the node metrics)."
  type        = string
}

variable "alb_arn_suffix" {
  description = "ARN suffix of the load balancer (dimension LoadBalancer)."
  type        = string
}

variable "target_group_arn_suffix" {
  description = "ARN suffix of the nodes' target group (dimension TargetGroup)."
  type        = string
}

variable "redis_cluster_ids" {
  description = "Cache cluster ids of the Redis nodes (dimension CacheClusterId)."
  type        = list(string)
}

variable "metrics_namespace" {
  description = "CloudWatch namespace of the metrics the nodes publish."
  type        = string
  default     = "Switchboard"
}

variable "max_connections" {
  description = "MAX_CONNECTIONS of one node: the connections alarm goes off at connections_alarm_ratio of it."
  type        = number
}

variable "connections_alarm_ratio" {
  description = "Share of max_connections on a single node that sets off the connections alarm."
  type        = number
  default     = 0.8

  validation {
    condition     = var.connections_alarm_ratio > 0 && var.connections_alarm_ratio <= 1
    error_message = "connections_alarm_ratio must be above 0 and at most 1."
  }
}

variable "alb_5xx_threshold" {
  description = "5xx responses (from the load balancer and the nodes together) in 5 minutes that set off the 5xx alarm."
  type        = number
  default     = 10

  validation {
    condition     = var.alb_5xx_threshold >= 1
    error_message = "alb_5xx_threshold must be at least 1."
  }
}

variable "redis_memory_threshold" {
  description = "DatabaseMemoryUsagePercentage of a Redis node that sets off its memory alarm."
  type        = number
  default     = 80

  validation {
    condition     = var.redis_memory_threshold > 0 && var.redis_memory_threshold < 100
    error_message = "redis_memory_threshold must be a percentage between 0 and 100."
  }
}

variable "alarm_topic_arn" {
  description = "Existing SNS topic every alarm notifies (on alarm and on recovery). null: alarm_emails decides."
  type        = string
  default     = null

  validation {
    condition     = var.alarm_topic_arn == null || can(regex("^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:.+$", var.alarm_topic_arn))
    error_message = "alarm_topic_arn must be an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)."
  }
}

variable "alarm_emails" {
  description = "Without alarm_topic_arn: e-mail addresses subscribed to a topic this module creates (each must confirm the subscription). Empty and no alarm_topic_arn: the alarms notify nobody, they only show in the console and on the dashboard."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for e in var.alarm_emails : can(regex("^[^@ ]+@[^@ ]+\\.[^@ ]+$", e))])
    error_message = "alarm_emails must be e-mail addresses."
  }
}

variable "kms_key_arn" {
  description = "KMS key that encrypts the alarm topic this module creates (its policy must let CloudWatch use it)."
  type        = string
}
