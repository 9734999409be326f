# Copy to terraform.tfvars (or pass with -var-file) and adjust.

# Required
region          = "eu-west-1"
server_version  = "1.0.0"
certificate_arn = "arn:aws:acm:eu-west-1:123456789012:certificate/00000000-0000-0000-0000-000000000000"

# The node image, pinned: changing it rolls every node. The current Amazon
# Linux 2023 image for arm64:
#   aws ssm get-parameter --name /aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64 \
#     --query Parameter.Value --output text
ami_id = "ami-0123456789abcdef0"

# Who hears about alarms (each address confirms a subscription e-mail), or
# alarm_topic_arn for an existing SNS topic.
# alarm_emails = ["oncall@example.com"]

# The name clients use; create a CNAME or alias record to the alb_dns_name output.
domain_name = "signal.example.com"

# Optional: run in an existing VPC instead of creating one.
# vpc_id             = "vpc-0123456789abcdef0"
# public_subnet_ids  = ["subnet-0123456789abcdef1", "subnet-0123456789abcdef2"]
# private_subnet_ids = ["subnet-0123456789abcdef3", "subnet-0123456789abcdef4"]

# Install from the container image instead of the release binary.
# install_method = "container"

# Capacity and sizing (defaults shown).
# instance_type    = "t4g.small"
# architecture     = "arm64"
# min_size         = 1
# max_size         = 5
# desired_capacity = 2
# max_connections    = 10000  # per node (MAX_CONNECTIONS)
# connections_target = 5000   # average per node the group scales to
# redis_node_type  = "cache.t4g.small"
# redis_nodes      = 2

# Load balancer access logs to an existing bucket that allows ELB log delivery.
# access_logs_bucket = "my-alb-logs"

# Development without TLS (never for real traffic):
# allow_http_only     = true
# certificate_arn     = null
# deletion_protection = false

tags = {
  Environment = "production"
  Owner       = "platform-team"
}
