provider "aws" {
  region = var.region

  # Every resource that supports tags gets these. The Auto Scaling group is the
  # exception AWS makes (it has its own tag blocks, see modules/asg).
  default_tags {
    tags = local.tags
  }
}
