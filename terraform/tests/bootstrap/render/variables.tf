variable "install_method" {
  description = "container or binary."
  type        = string
}

variable "binary_sha256" {
  description = "Pinned checksum, or null to use the published .sha256."
  type        = string
  default     = null
}
