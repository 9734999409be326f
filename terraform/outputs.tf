output "alb_dns_name" {
  description = "DNS name of the load balancer. Point your domain_name at it (CNAME, or a Route 53 alias using alb_zone_id)."
  value       = module.alb.dns_name
}

output "alb_zone_id" {
  description = "Route 53 hosted zone ID of the load balancer, for an alias record."
  value       = module.alb.zone_id
}

output "websocket_url" {
  description = "URL clients connect to."
  value       = "${local.https ? "wss" : "ws"}://${local.public_host}/ws"
}

output "health_url" {
  description = "Liveness endpoint through the load balancer (the only path besides /ws it forwards by default)."
  value       = "${local.https ? "https" : "http"}://${local.public_host}/health"
}

output "redis_endpoint" {
  description = "Primary endpoint of the Redis replication group (TLS, port in redis_port)."
  value       = module.elasticache.primary_endpoint
}

output "redis_port" {
  description = "Port of the Redis replication group."
  value       = module.elasticache.port
}

output "redis_auth_token_secret_arn" {
  description = "Secrets Manager secret holding the Redis auth token."
  value       = module.elasticache.auth_token_secret_arn
}

output "asg_name" {
  description = "Name of the Auto Scaling group of the nodes."
  value       = module.asg.asg_name
}

output "log_group_name" {
  description = "CloudWatch log group of the server logs."
  value       = module.asg.log_group_name
}

output "vpc_id" {
  description = "VPC the stack runs in (created or given)."
  value       = local.vpc_id
}

output "node_security_group_id" {
  description = "Security group of the nodes."
  value       = aws_security_group.nodes.id
}

output "target_group_arn" {
  description = "ARN of the nodes' target group (attach more listeners or rules to it)."
  value       = module.alb.target_group_arn
}

output "alb_security_group_id" {
  description = "Security group of the load balancer."
  value       = module.alb.security_group_id
}

output "redis_security_group_id" {
  description = "Security group of the Redis replication group."
  value       = module.elasticache.security_group_id
}

output "instance_role_name" {
  description = "IAM role of the nodes (attach extra policies to it, or name it in a KMS key policy)."
  value       = module.asg.iam_role_name
}

output "instance_role_arn" {
  description = "ARN of the nodes' IAM role."
  value       = module.asg.iam_role_arn
}

output "dashboard_url" {
  description = "CloudWatch dashboard of the stack."
  value       = module.monitoring.dashboard_url
}

output "alarm_topic_arn" {
  description = "SNS topic the alarms notify (null when they notify nobody)."
  value       = module.monitoring.alarm_topic_arn
}

output "alarm_names" {
  description = "Names of the CloudWatch alarms."
  value       = module.monitoring.alarm_names
}
