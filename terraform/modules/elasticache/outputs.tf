output "primary_endpoint" {
  description = "Primary endpoint address (TLS)."
  value       = aws_elasticache_replication_group.this.primary_endpoint_address
}

output "reader_endpoint" {
  description = "Reader endpoint address (TLS)."
  value       = aws_elasticache_replication_group.this.reader_endpoint_address
}

output "port" {
  description = "Redis port."
  value       = var.port
}

output "auth_token_secret_arn" {
  description = "ARN of the Secrets Manager secret holding the auth token."
  value       = aws_secretsmanager_secret.auth_token.arn
}

output "security_group_id" {
  description = "Security group of the replication group."
  value       = aws_security_group.this.id
}

output "replication_group_id" {
  description = "ID of the replication group."
  value       = aws_elasticache_replication_group.this.id
}

output "auth_token_version" {
  description = "Version id of the auth token secret (not secret). It changes when the token is rotated, and only once the replication group accepts the new token: the nodes' launch template includes it, so a rotation rolls them."
  value       = aws_secretsmanager_secret_version.auth_token.version_id
}

output "member_clusters" {
  description = "Cache cluster ids of the replication group's nodes (CloudWatch dimension CacheClusterId), in order: <replication group id>-001, -002, ..."
  value       = [for i in range(var.num_nodes) : format("%s-%03d", local.replication_group_id, i + 1)]
}
