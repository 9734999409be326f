terraform {
  # 1.9 for validation blocks that compare two variables; tests need >= 1.7.
  required_version = ">= 1.9.0"

  required_providers {
    # 5.100 is the last 5.x release and what offline test machines carry in
    # their provider mirror; the configuration avoids everything 6.0 removed
    # or renamed, so 6.x works as well. No other provider is needed: the
    # Redis auth token is generated with Terraform's built-in terraform_data.
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.100.0, < 7.0.0"
    }
  }
}
