output "dashboard_name" {
  description = "Name of the CloudWatch dashboard."
  value       = aws_cloudwatch_dashboard.this.dashboard_name
}

output "dashboard_url" {
  description = "Console URL of the CloudWatch dashboard."
  value       = "https://${var.region}.console.aws.amazon.com/cloudwatch/home?region=${var.region}#dashboards/dashboard/${aws_cloudwatch_dashboard.this.dashboard_name}"
}

output "alarm_topic_arn" {
  description = "SNS topic the alarms notify: alarm_topic_arn, the topic created for alarm_emails, or null."
  value       = length(local.alarm_actions) > 0 ? local.alarm_actions[0] : null
}

output "alarm_names" {
  description = "Names of every alarm."
  value = concat(
    [
      aws_cloudwatch_metric_alarm.unhealthy_targets.alarm_name,
      aws_cloudwatch_metric_alarm.http_5xx.alarm_name,
      aws_cloudwatch_metric_alarm.redis_unreachable.alarm_name,
      aws_cloudwatch_metric_alarm.connections_near_max.alarm_name,
    ],
    aws_cloudwatch_metric_alarm.redis_memory[*].alarm_name,
    aws_cloudwatch_metric_alarm.redis_evictions[*].alarm_name,
  )
}

output "unhealthy_targets_alarm_name" {
  description = "Name of the unhealthy targets alarm (an instance refresh rolls back when it goes off)."
  value       = aws_cloudwatch_metric_alarm.unhealthy_targets.alarm_name
}
