variable "name" {
  description = "Name prefix for the network resources."
  type        = string
}

variable "cidr_block" {
  description = "IPv4 CIDR block of the VPC, /20 or larger."
  type        = string

  validation {
    condition     = can(cidrhost(var.cidr_block, 0)) && tonumber(split("/", var.cidr_block)[1]) <= 20
    error_message = "cidr_block must be a valid IPv4 CIDR block of size /20 or larger."
  }
}

variable "az_count" {
  description = "Number of availability zones to use."
  type        = number
  default     = 2

  validation {
    condition     = var.az_count >= 2 && var.az_count <= 4
    error_message = "az_count must be between 2 and 4."
  }
}

variable "single_nat_gateway" {
  description = "Use one NAT gateway for all zones instead of one per zone."
  type        = bool
  default     = false
}

variable "flow_log_retention" {
  description = "Retention in days of the VPC flow log group."
  type        = number
  default     = 365
}

variable "kms_key_arn" {
  description = "KMS key ARN that encrypts the flow log group."
  type        = string
}
