output "asg_name" {
  description = "Name of the Auto Scaling group."
  value       = aws_autoscaling_group.this.name
}

output "launch_template_id" {
  description = "ID of the launch template."
  value       = aws_launch_template.this.id
}

output "launch_template_version" {
  description = "Latest launch template version (what the instance refresh rolls to)."
  value       = aws_launch_template.this.latest_version
}

output "log_group_name" {
  description = "CloudWatch log group of the server logs."
  value       = aws_cloudwatch_log_group.server.name
}

output "iam_role_name" {
  description = "Name of the instances' IAM role."
  value       = aws_iam_role.this.name
}

output "iam_role_arn" {
  description = "ARN of the instances' IAM role (for example to let it use a customer-managed KMS key)."
  value       = aws_iam_role.this.arn
}

output "user_data" {
  description = "The rendered user data script, before compression (what runs on first boot)."
  value       = module.bootstrap.user_data
}

output "units" {
  description = "The systemd units the user data installs, by file name."
  value       = module.bootstrap.units
}
