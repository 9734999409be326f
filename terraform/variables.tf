# ---------------------------------------------------------------------------
# General
# ---------------------------------------------------------------------------

variable "name" {
  description = "Name prefix for every resource (load balancer, Auto Scaling group, Redis, ...). Lowercase letters, digits and hyphens."
  type        = string
  default     = "switchboard"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,18}[a-z0-9]$", var.name))
    error_message = "name must be 3-20 characters of lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen (it becomes part of load balancer and ElastiCache names, which are length-limited)."
  }
}

variable "region" {
  description = "AWS region to deploy into, for example eu-west-1. Also passed to the server as SERVER_REGION."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region))
    error_message = "region must be an AWS region code such as us-east-1 or eu-west-1."
  }
}

variable "tags" {
  description = "Extra tags added to every resource, on top of Project, Name and ManagedBy."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------------------
# Network: bring your own VPC, or leave vpc_id null to create one
# ---------------------------------------------------------------------------

variable "vpc_id" {
  description = "ID of an existing VPC to deploy into. Leave null to let the network module create a VPC with public and private subnets and NAT gateways."
  type        = string
  default     = null

  validation {
    condition     = var.vpc_id == null || can(regex("^vpc-[0-9a-f]{8,17}$", var.vpc_id))
    error_message = "vpc_id must look like vpc-0123456789abcdef0, or be null to create a new VPC."
  }
}

variable "public_subnet_ids" {
  description = "With vpc_id: at least two public subnets (in different availability zones) for the load balancer."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for s in var.public_subnet_ids : can(regex("^subnet-[0-9a-f]{8,17}$", s))])
    error_message = "public_subnet_ids must contain subnet IDs such as subnet-0123456789abcdef0."
  }

  validation {
    condition     = var.vpc_id == null || length(var.public_subnet_ids) >= 2
    error_message = "When vpc_id is set, give at least two public_subnet_ids in different availability zones (an Application Load Balancer needs two)."
  }
}

variable "private_subnet_ids" {
  description = "With vpc_id: at least two private subnets with outbound internet access (NAT) for the instances and Redis."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for s in var.private_subnet_ids : can(regex("^subnet-[0-9a-f]{8,17}$", s))])
    error_message = "private_subnet_ids must contain subnet IDs such as subnet-0123456789abcdef0."
  }

  validation {
    condition     = var.vpc_id == null || length(var.private_subnet_ids) >= 2
    error_message = "When vpc_id is set, give at least two private_subnet_ids in different availability zones (instances and Redis replicas are spread over them)."
  }
}

variable "vpc_cidr" {
  description = "Without vpc_id: CIDR block of the VPC the network module creates."
  type        = string
  default     = "10.60.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && tonumber(split("/", var.vpc_cidr)[1]) <= 20
    error_message = "vpc_cidr must be a valid IPv4 CIDR block of size /20 or larger (for example 10.60.0.0/16)."
  }
}

variable "az_count" {
  description = "Without vpc_id: number of availability zones to spread subnets over."
  type        = number
  default     = 2

  validation {
    condition     = var.az_count >= 2 && var.az_count <= 4
    error_message = "az_count must be between 2 and 4."
  }
}

variable "single_nat_gateway" {
  description = "Without vpc_id: one NAT gateway for all zones (cheaper, but a zone outage cuts egress for all) instead of one per zone."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------------------
# Load balancer
# ---------------------------------------------------------------------------

variable "certificate_arn" {
  description = "ARN of the ACM certificate for the HTTPS listener (it must cover domain_name). Required unless allow_http_only is true."
  type        = string
  default     = null

  validation {
    condition     = var.certificate_arn == null || can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/.+$", var.certificate_arn))
    error_message = "certificate_arn must be an ACM certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/ID)."
  }

  validation {
    condition     = var.allow_http_only || var.certificate_arn != null
    error_message = "Set certificate_arn to an ACM certificate for the HTTPS listener. For a throwaway development setup without TLS, set allow_http_only = true instead."
  }
}

variable "allow_http_only" {
  description = "Development only: serve plain HTTP/WebSocket (ws://) on port 80 without a certificate. Never use this for real traffic."
  type        = bool
  default     = false
}

variable "domain_name" {
  description = "DNS name clients use (a CNAME/alias to the load balancer that you create). Only used to build the websocket_url output; null uses the load balancer's own DNS name."
  type        = string
  default     = null
}

variable "ssl_policy" {
  description = "TLS policy of the HTTPS listener."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"
}

variable "allowed_ingress_cidrs" {
  description = "IPv4 CIDR blocks allowed to reach the load balancer listeners. Everyone by default: it is a public signaling endpoint."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = length(var.allowed_ingress_cidrs) > 0 && alltrue([for c in var.allowed_ingress_cidrs : can(cidrhost(c, 0))])
    error_message = "allowed_ingress_cidrs must be a non-empty list of valid IPv4 CIDR blocks."
  }
}

variable "stickiness_duration" {
  description = "Lifetime in seconds of the load balancer cookie that keeps a client's reconnects on the same node."
  type        = number
  default     = 7200

  validation {
    condition     = var.stickiness_duration >= 1 && var.stickiness_duration <= 604800
    error_message = "stickiness_duration must be between 1 and 604800 seconds (7 days), the range AWS allows for lb_cookie stickiness."
  }
}

variable "deregistration_delay" {
  description = "Seconds the load balancer keeps existing connections to a node being removed. Must be at least drain_timeout so clients are told to reconnect before the load balancer cuts them."
  type        = number
  default     = 30

  validation {
    condition     = var.deregistration_delay >= var.drain_timeout && var.deregistration_delay <= 3600
    error_message = "deregistration_delay must be at least drain_timeout (the server's DRAIN_TIMEOUT_SECS) and at most 3600; raise it or lower drain_timeout."
  }
}

variable "idle_timeout" {
  description = "Load balancer idle timeout in seconds. WebSockets stay open for hours, with a server ping every ping_interval seconds, so this must be well above that interval."
  type        = number
  default     = 300

  validation {
    condition     = var.idle_timeout >= 2 * var.ping_interval && var.idle_timeout > var.server_idle_timeout && var.idle_timeout <= 4000
    error_message = "idle_timeout must be at least twice ping_interval, above server_idle_timeout (so the server, not the load balancer, closes dead connections) and at most 4000 seconds."
  }
}

variable "deletion_protection" {
  description = "Protect the load balancer from deletion. Set false before `terraform destroy`."
  type        = bool
  default     = true
}

variable "access_logs_bucket" {
  description = "Name of an existing S3 bucket (with the ELB log delivery bucket policy) for load balancer access logs. null disables access logs."
  type        = string
  default     = null
}

variable "access_logs_prefix" {
  description = "Key prefix for load balancer access logs in access_logs_bucket."
  type        = string
  default     = "switchboard-alb"
}

variable "public_paths" {
  description = "Paths the load balancer forwards to the nodes: the WebSocket and the liveness check. Everything else (/metrics, /status, /ready, the status page) gets a 404 from the load balancer and is reachable from inside the VPC only."
  type        = list(string)
  default     = ["/ws", "/health"]

  validation {
    condition     = contains(var.public_paths, "/ws") && length(var.public_paths) <= 5 && alltrue([for p in var.public_paths : startswith(p, "/")])
    error_message = "public_paths must contain /ws, hold at most 5 paths (one load balancer rule condition) and every path must start with /."
  }
}

variable "metrics_source_security_group_ids" {
  description = "Security groups inside the VPC (a Prometheus server's, say) allowed to reach the nodes' server port directly to scrape /metrics."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for s in var.metrics_source_security_group_ids : can(regex("^sg-[0-9a-f]{8,17}$", s))])
    error_message = "metrics_source_security_group_ids must contain security group ids such as sg-0123456789abcdef0."
  }
}

variable "waf_web_acl_arn" {
  description = "ARN of an existing regional WAFv2 web ACL to attach to the load balancer. null attaches none."
  type        = string
  default     = null
}

# ---------------------------------------------------------------------------
# Server and instances
# ---------------------------------------------------------------------------

variable "install_method" {
  description = "How instances install the server: \"container\" runs the container image with Docker, \"binary\" downloads the static release binary."
  type        = string
  default     = "binary"

  validation {
    condition     = contains(["container", "binary"], var.install_method)
    error_message = "install_method must be \"container\" or \"binary\"."
  }
}

variable "server_version" {
  description = "Server release to run, for example 1.2.0. Selects the release binary (install_method = binary) or the image tag (install_method = container). Changing it rolls the instances."
  type        = string

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+([-+][0-9A-Za-z.-]+)?$", var.server_version))
    error_message = "server_version must be a release version such as 1.2.0 (no leading v)."
  }
}

variable "container_image" {
  description = "Container image repository used with install_method = container; the tag is server_version."
  type        = string
  default     = "ghcr.io/switchboard-dev/switchboard"
}

variable "binary_url" {
  description = "Override for the release tarball URL used with install_method = binary. null uses the GitHub release of server_version for the instance architecture."
  type        = string
  default     = null

  validation {
    condition     = var.binary_url == null || can(regex("^https://", var.binary_url))
    error_message = "binary_url must be an https:// URL."
  }
}

variable "binary_sha256" {
  description = "Expected SHA-256 of the release tarball. null: instances read it from the .sha256 file the release publishes beside the tarball (binary_url + \".sha256\"). Either way a download that does not match is never installed."
  type        = string
  default     = null

  validation {
    condition     = var.binary_sha256 == null || can(regex("^[0-9a-f]{64}$", var.binary_sha256))
    error_message = "binary_sha256 must be 64 lowercase hexadecimal characters."
  }
}

variable "ami_id" {
  description = "Image of the nodes: an Amazon Linux 2023 AMI id for architecture. Pinned on purpose: changing it rolls every node (and reconnects every client), so it changes only when you change it. Find the current one with `aws ssm get-parameter --name /aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64 --query Parameter.Value --output text` (x86_64 at the end for Intel/AMD). Set this or ami_ssm_parameter."
  type        = string
  default     = null

  validation {
    condition     = var.ami_id == null || can(regex("^ami-[0-9a-f]{8,17}$", var.ami_id))
    error_message = "ami_id must look like ami-0123456789abcdef0."
  }

  validation {
    condition     = (var.ami_id == null) != (var.ami_ssm_parameter == null)
    error_message = "Set exactly one of ami_id (a pinned image id) and ami_ssm_parameter (an SSM parameter that holds one)."
  }
}

variable "ami_ssm_parameter" {
  description = "Instead of ami_id: the name of an SSM parameter holding the image id, resolved by EC2 at each launch. Use a parameter you control and start an instance refresh after changing it; AWS's public /aws/service/ami-amazon-linux-latest/... parameters change under you, so new nodes would run newer images than old ones."
  type        = string
  default     = null

  validation {
    condition     = var.ami_ssm_parameter == null || can(regex("^/[A-Za-z0-9_./-]+$", var.ami_ssm_parameter))
    error_message = "ami_ssm_parameter must be an SSM parameter name starting with /, for example /myteam/switchboard/ami."
  }
}

variable "architecture" {
  description = "CPU architecture of the instances: arm64 (Graviton) or x86_64. Must match instance_type and the image (checked at plan time)."
  type        = string
  default     = "arm64"

  validation {
    condition     = contains(["arm64", "x86_64"], var.architecture)
    error_message = "architecture must be \"arm64\" or \"x86_64\"."
  }
}

variable "instance_type" {
  description = "EC2 instance type of the nodes (its architecture must match architecture)."
  type        = string
  default     = "t4g.small"
}

variable "root_volume_size" {
  description = "Root EBS volume size in GiB (always gp3 and encrypted)."
  type        = number
  default     = 20

  validation {
    condition     = var.root_volume_size >= 8 && var.root_volume_size <= 1024
    error_message = "root_volume_size must be between 8 and 1024 GiB (Amazon Linux needs at least 8)."
  }
}

variable "server_port" {
  description = "Port the server listens on inside the VPC (PORT)."
  type        = number
  default     = 8080

  validation {
    condition     = var.server_port >= 1024 && var.server_port <= 65535
    error_message = "server_port must be between 1024 and 65535 (the server does not run as root)."
  }
}

variable "drain_timeout" {
  description = "Seconds a stopping server waits for clients to leave before exiting (DRAIN_TIMEOUT_SECS)."
  type        = number
  default     = 15

  validation {
    condition     = var.drain_timeout >= 1 && var.drain_timeout <= 600
    error_message = "drain_timeout must be between 1 and 600 seconds."
  }
}

variable "ping_interval" {
  description = "Seconds between the server's WebSocket pings (PING_INTERVAL_SECS)."
  type        = number
  default     = 25

  validation {
    condition     = var.ping_interval >= 5 && var.ping_interval <= 600
    error_message = "ping_interval must be between 5 and 600 seconds."
  }
}

variable "server_idle_timeout" {
  description = "Seconds of silence after which the server closes a connection (IDLE_TIMEOUT_SECS)."
  type        = number
  default     = 60

  validation {
    condition     = var.server_idle_timeout > var.ping_interval
    error_message = "server_idle_timeout must be greater than ping_interval, or healthy clients are disconnected between two pings."
  }
}

variable "log_level" {
  description = "RUST_LOG filter of the server."
  type        = string
  default     = "info"
}

variable "server_environment" {
  description = "Extra environment variables for the server (for example JWT_ISSUER). They end up in the launch template user data in plain text: no secrets here."
  type        = map(string)
  default     = {}

  validation {
    condition = length(setintersection(keys(var.server_environment), [
      "PORT", "HOST", "REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD", "SERVER_ID", "SERVER_REGION", "DRAIN_TIMEOUT_SECS", "PING_INTERVAL_SECS", "IDLE_TIMEOUT_SECS", "MAX_CONNECTIONS", "LOG_FORMAT",
    ])) == 0
    error_message = "server_environment must not set PORT, HOST, REDIS_*, SERVER_ID, SERVER_REGION, DRAIN_TIMEOUT_SECS, PING_INTERVAL_SECS, IDLE_TIMEOUT_SECS, MAX_CONNECTIONS or LOG_FORMAT: use the dedicated variables, they keep the load balancer, scaling and logging settings consistent."
  }
}

variable "server_secrets" {
  description = "Secret environment variables of the server, as NAME = ARN of a Secrets Manager secret holding the plain value (for example JWT_SECRET). Instances read them at each start; they never appear in user data. Secrets encrypted with a customer-managed KMS key also need that key's policy to allow the instance role."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k, v in var.server_secrets : can(regex("^[A-Z_][A-Z0-9_]*$", k)) && can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+$", v))])
    error_message = "server_secrets must map upper-case environment variable names to Secrets Manager secret ARNs (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME)."
  }

  validation {
    condition     = !contains(keys(var.server_secrets), "REDIS_URL") && length(setintersection(keys(var.server_secrets), keys(var.server_environment))) == 0
    error_message = "server_secrets must not set REDIS_URL (built from the Redis auth token) nor a name that server_environment also sets."
  }
}

variable "min_size" {
  description = "Minimum number of nodes."
  type        = number
  default     = 1

  validation {
    condition     = var.min_size >= 1
    error_message = "min_size must be at least 1."
  }
}

variable "max_size" {
  description = "Maximum number of nodes."
  type        = number
  default     = 5

  validation {
    condition     = var.max_size >= var.min_size && var.max_size <= 100
    error_message = "max_size must be at least min_size and at most 100."
  }
}

variable "desired_capacity" {
  description = "Number of nodes at creation; afterwards the scaling policies own it."
  type        = number
  default     = 2

  validation {
    condition     = var.desired_capacity >= var.min_size && var.desired_capacity <= var.max_size
    error_message = "desired_capacity must be between min_size and max_size."
  }
}

variable "cpu_target" {
  description = "Target average CPU utilisation (percent) for scaling."
  type        = number
  default     = 60

  validation {
    condition     = var.cpu_target >= 10 && var.cpu_target <= 90
    error_message = "cpu_target must be between 10 and 90 percent."
  }
}

variable "max_connections" {
  description = "WebSocket connections one node accepts (MAX_CONNECTIONS); more are refused with 503 and go to other nodes. The connections alarm goes off at 80% of it."
  type        = number
  default     = 10000

  validation {
    condition     = var.max_connections >= 1
    error_message = "max_connections must be a positive number."
  }
}

variable "connections_target" {
  description = "Target average of open WebSocket connections per node: the group scales out above it and in below it (besides the CPU target)."
  type        = number
  default     = 5000

  validation {
    condition     = var.connections_target >= 1 && var.connections_target < var.max_connections
    error_message = "connections_target must be positive and below max_connections, or nodes refuse connections before the group scales out."
  }
}

variable "log_retention_days" {
  description = "Retention of the CloudWatch log groups (server logs, VPC flow logs, Redis slow log)."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of the values CloudWatch Logs accepts: 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288 or 3653."
  }
}

# ---------------------------------------------------------------------------
# Redis (ElastiCache)
# ---------------------------------------------------------------------------

variable "redis_engine" {
  description = "ElastiCache engine: valkey (cheaper, Redis-compatible) or redis."
  type        = string
  default     = "valkey"

  validation {
    condition     = contains(["valkey", "redis"], var.redis_engine)
    error_message = "redis_engine must be \"valkey\" or \"redis\"."
  }
}

variable "redis_engine_version" {
  description = "Engine version, major.minor (for example 8.0 for valkey, 7.1 for redis)."
  type        = string
  default     = "8.0"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+$", var.redis_engine_version)) && contains(lookup({ valkey = ["7", "8"], redis = ["7"] }, var.redis_engine, []), split(".", var.redis_engine_version)[0])
    error_message = "redis_engine_version must be a version of redis_engine that ElastiCache offers: valkey 7.2, 8.0 or 8.1, or redis 7.0 or 7.1 (the major version picks the parameter group family, valkey7, valkey8 or redis7)."
  }
}

variable "redis_apply_immediately" {
  description = "Apply changes to the Redis replication group right away instead of in its maintenance window. Needed for an auth token rotation (see the README); node type or engine changes applied now restart Redis nodes at once."
  type        = bool
  default     = false
}

variable "redis_node_type" {
  description = "ElastiCache node type."
  type        = string
  default     = "cache.t4g.small"

  validation {
    condition     = startswith(var.redis_node_type, "cache.")
    error_message = "redis_node_type must be an ElastiCache node type such as cache.t4g.small."
  }
}

variable "redis_nodes" {
  description = "Number of Redis nodes (one primary plus replicas). More than one enables automatic failover and Multi-AZ."
  type        = number
  default     = 2

  validation {
    condition     = var.redis_nodes >= 1 && var.redis_nodes <= 6
    error_message = "redis_nodes must be between 1 and 6."
  }
}

variable "redis_snapshot_retention_days" {
  description = "Days of automatic Redis snapshots to keep."
  type        = number
  default     = 7

  validation {
    condition     = var.redis_snapshot_retention_days >= 1 && var.redis_snapshot_retention_days <= 35
    error_message = "redis_snapshot_retention_days must be between 1 and 35."
  }
}

# ---------------------------------------------------------------------------
# Monitoring
# ---------------------------------------------------------------------------

variable "alarm_topic_arn" {
  description = "Existing SNS topic that every alarm notifies (when it goes off and when it recovers). null: see alarm_emails."
  type        = string
  default     = null

  validation {
    condition     = var.alarm_topic_arn == null || can(regex("^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:.+$", var.alarm_topic_arn))
    error_message = "alarm_topic_arn must be an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)."
  }
}

variable "alarm_emails" {
  description = "Without alarm_topic_arn: e-mail addresses to notify; a topic (encrypted with the stack's key) is created and each address must confirm its subscription. With neither, the alarms only show in the console and on the dashboard."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for e in var.alarm_emails : can(regex("^[^@ ]+@[^@ ]+\\.[^@ ]+$", e))])
    error_message = "alarm_emails must be e-mail addresses."
  }
}
