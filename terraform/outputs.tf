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
  description = "Liveness endpoint through the load balancer."
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
